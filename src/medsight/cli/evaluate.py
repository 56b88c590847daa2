"""``medsight evaluate MODEL --data SPEC --out DIR``: validate a model on a data set.

The package's task names its family in :mod:`medsight.families`, whose evaluator runs
(``evaluate(package, dataset, out, split=..., by=..., n_resamples=..., seed=..., **options)``
returning the report as plain data).  Options a family does not take (``--tta`` for a
classifier) are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from medsight.core.errors import InvalidInputError
from medsight.families import all_families, family_for

__all__ = ["evaluate", "evaluator_for", "open_package", "register"]


def evaluator_for(task: str) -> Callable[..., dict[str, Any]]:
    """The evaluator function of the family serving a ModelSpec task value.

    Examples
    --------
    >>> evaluator_for("ordinal").__name__
    'evaluate_classifier'
    """
    return family_for(task).load("evaluate")  # type: ignore[no-any-return]


def open_package(path: Path) -> Any:
    """A ModelPackage folder, or a training run folder of any family (its package inside)."""
    from medsight.models.package import ModelPackage

    if not (path / "model.json").exists():
        subs = dict.fromkeys(sub for fam in all_families() for sub in fam.run_folders)
        found = [path / sub for sub in subs if (path / sub / "model.json").exists()]
        if not found:
            looked = " or ".join(f"{sub}/model.json" for sub in subs)
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
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="torch, onnx or onnx-int8 (every family but risk, int8 for classifiers and "
            "segmentation; after medsight export). "
            "Default: the package's measured default, else torch.",
        ),
    ] = None,
) -> None:
    """Evaluate a model with bootstrap CIs, calibration and subgroups; write JSON + HTML."""
    from medsight.data import load_dataset

    pkg = open_package(model)
    family = family_for(pkg.spec.task)
    dataset = load_dataset(data)
    if splits is not None:
        from medsight.data import Splits

        dataset = Splits.load(splits).apply(dataset)
    options: dict[str, Any] = {} if tta is None else {"tta": tta}
    family.check_options(options, f"model {model}")
    from medsight.inference.onnx_backend import export_support, use_backend

    if backend not in (None, "torch") and not export_support(pkg.spec.task)[0]:
        raise InvalidInputError(
            "--backend", f"{backend} does not run {pkg.spec.task.value} models", hint="use torch"
        )
    with use_backend(backend):  # the family's Predictor / Segmenter picks it up
        report = family.load("evaluate")(
            pkg,
            dataset,
            out,
            split=split,
            by=list(by or []),
            n_resamples=n_resamples,
            seed=seed,
            **options,
        )
    for line in report.get("warnings") or []:  # e.g. a calibration that cannot rank cases
        typer.echo(line, err=True)
    head = [m for m in report.get("metrics", [])][:4]
    typer.echo(
        f"{report.get('split')} ({report.get('n_cases')} cases): "
        + ", ".join(f"{m['name']} {m['value']:.3f}" for m in head)
    )
    for line in _subgroup_lines(report):
        typer.echo(line)
    if backend is not None:
        typer.echo(f"backend: {backend}")
    typer.echo(f"wrote {Path(out) / 'report.html'} and report.json")


def _subgroup_lines(report: dict[str, Any]) -> list[str]:
    """Subgroup results as text: classification (per attribute) or per ``attr=value`` means,
    each CI or why it cannot be estimated (:mod:`medsight.evaluation.estimability`)."""
    subgroups = report.get("subgroups") or {}
    if all(isinstance(v, dict) and "groups" in v for v in subgroups.values()):
        from medsight.evaluation.classification_report import subgroup_lines

        return subgroup_lines(subgroups)
    lines = []
    for key, v in subgroups.items():
        ci = v.get("ci_note") if v.get("estimable") is False else None
        if ci is None and v.get("ci_low") is not None:
            ci = f"{v['ci_low']:.3f} to {v['ci_high']:.3f}"
        lines.append(f"subgroup {key} (n={v.get('n')}): {v.get('value', 0.0):.3f} ({ci or '-'})")
    return lines


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    app.command("evaluate")(evaluate)
