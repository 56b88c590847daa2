"""``medsight evaluate MODEL --data SPEC --out DIR``: validate a model on a data set.

The command dispatches on the package's task through :data:`EVALUATORS` (task kind ->
``"module:function"``, loaded lazily), so each kind of model keeps its evaluation logic in its
own module.  An evaluator is called as
``f(package, dataset, out, split=..., by=..., n_resamples=..., seed=...)`` and returns the
report as plain data.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from medsight.core.errors import InvalidInputError

__all__ = ["EVALUATORS", "evaluate", "evaluator_for", "register"]

#: task kind -> "module:function" of its evaluator
EVALUATORS: dict[str, str] = {
    "classification": "medsight.evaluation.classification_eval:evaluate_classifier",
    "segmentation": "medsight.evaluation.segmentation:evaluate_segmenter",
}

_KIND = {
    "binary": "classification",
    "multiclass": "classification",
    "ordinal": "classification",
    "multilabel": "classification",
    "segmentation": "segmentation",
}


def evaluator_for(task: str) -> Callable[..., dict[str, Any]]:
    """The evaluator function for a ModelSpec task value.

    Examples
    --------
    >>> evaluator_for("ordinal").__name__
    'evaluate_classifier'
    """
    kind = _KIND.get(task, task)
    if kind not in EVALUATORS:
        raise InvalidInputError(f"task {task!r}", "has no evaluator in this medsight version")
    module, attr = EVALUATORS[kind].split(":")
    return getattr(importlib.import_module(module), attr)


#: where a training run folder keeps its package: classification runs, segmentation runs
RUN_PACKAGE_FOLDERS = ("model", "package")


def _open_package(path: Path) -> Any:
    """A ModelPackage folder, or a training run folder of either family."""
    from medsight.models.package import ModelPackage

    if not (path / "model.json").exists():
        found = [path / sub for sub in RUN_PACKAGE_FOLDERS if (path / sub / "model.json").exists()]
        if not found:
            looked = " or ".join(f"{sub}/model.json" for sub in RUN_PACKAGE_FOLDERS)
            raise InvalidInputError(
                path,
                f"not a model package or a training run folder (no model.json, {looked})",
                hint="pass the package folder, or the --out folder of medsight train",
            )
        path = found[0]  # a training run folder
    return ModelPackage.load(path)


def evaluate(
    model: Annotated[Path, typer.Argument(help="ModelPackage folder (or a training run folder).")],
    data: Annotated[str, typer.Option("--data", help="Data set spec, e.g. medmnist:PATH.npz.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json/html and plots.")],
    split: Annotated[
        str | None,
        typer.Option(
            "--split", help="train, val, test or all (default: test if present, else all)."
        ),
    ] = None,
    by: Annotated[
        list[str] | None, typer.Option("--by", help="Attribute column for subgroups (repeatable).")
    ] = None,
    splits: Annotated[
        Path | None, typer.Option("--splits", help="splits.json naming the test cases.")
    ] = None,
    n_resamples: Annotated[int, typer.Option("--n-resamples", min=10)] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    tta: Annotated[
        bool | None,
        typer.Option(
            "--tta/--no-tta",
            help="Segmentation: mirror test-time augmentation (default on); not for classifiers.",
        ),
    ] = None,
) -> None:
    """Evaluate a model with bootstrap CIs, calibration and subgroups; write JSON + HTML."""
    from medsight.data import load_dataset

    pkg = _open_package(model)
    dataset = load_dataset(data)
    if splits is not None:
        from medsight.data import Splits

        dataset = Splits.load(splits).apply(dataset)
    options: dict[str, Any] = {}
    if tta is not None:
        if _KIND.get(pkg.spec.task.value) != "segmentation":
            raise InvalidInputError(
                f"model {model}", "--tta/--no-tta applies to segmentation models only"
            )
        options["tta"] = tta
    report = evaluator_for(pkg.spec.task.value)(
        pkg,
        dataset,
        out,
        split=split,
        by=list(by or []),
        n_resamples=n_resamples,
        seed=seed,
        **options,
    )
    head = [m for m in report.get("metrics", [])][:4]
    typer.echo(
        f"{report.get('split')} ({report.get('n_cases')} cases): "
        + ", ".join(f"{m['name']} {m['value']:.3f}" for m in head)
    )
    typer.echo(f"wrote {Path(out) / 'report.html'} and report.json")


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    app.command("evaluate")(evaluate)
