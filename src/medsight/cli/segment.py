"""``medsight train segment --data SPEC --out DIR``: self-configuring segmentation training.

A thin layer over the segmentation family's runner,
:func:`medsight.training.seg_runner.run_segmentation`: each stage writes a file into ``DIR``
(``splits.json`` -> ``plan.json``, edit it to override the plan -> ``preprocessed.npz`` ->
``checkpoint_latest.pt`` -> ``package/``) and is reused when it was made from the same inputs,
so a run can be inspected, edited and resumed.  ``--folds K`` trains a K-fold
cross-validation ensemble into the same folder (``splits/``, ``members/<k>/``, ``package/``,
see :mod:`medsight.training.seg_folds`).  ``--regions "1,2,3;2,3;3"`` trains one sigmoid output
per region of nested labels (:mod:`medsight.models.seg_regions`).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["SegArch", "segment"]


class SegArch(StrEnum):
    """``--arch``: the segmentation network (``dynunet`` is the planner's default)."""

    DYNUNET = "dynunet"
    UNET = "unet"
    SEGRESNET = "segresnet"
    UNETR = "unetr"
    SWINUNETR = "swinunetr"


def parse_time_budget(text: str) -> float | str | None:
    """``--time-budget`` as SegTrainConfig's ``time_budget_s``.

    Examples
    --------
    >>> parse_time_budget("auto"), parse_time_budget("None"), parse_time_budget("90")
    ('auto', None, 90.0)
    >>> parse_time_budget("45m"), parse_time_budget("1.5h"), parse_time_budget("30s")
    (2700.0, 5400.0, 30.0)
    """
    from medsight.core.errors import InvalidInputError

    value = text.strip().lower()
    if value in ("auto", "none"):
        return None if value == "none" else "auto"
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(value[-1:])
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InvalidInputError(
            "--time-budget", f"{text!r} is not a duration", hint="e.g. 3600, 45m, 2h, auto or none"
        )
    return seconds


def segment(
    data: Annotated[str, typer.Option("--data", help="Data set spec, e.g. msd:PATH.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder (plan, data, package).")],
    splits: Annotated[
        Path | None, typer.Option("--splits", help="splits.json (default: a seeded hold-out).")
    ] = None,
    plan: Annotated[
        Path | None, typer.Option("--plan", help="Use this plan.json instead of planning.")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="JSON list of LabelSpec (index, name, code, color)."),
    ] = None,
    modality: Annotated[
        str | None, typer.Option("--modality", help="CT, MR, US ... when the data lacks it.")
    ] = None,
    arch: Annotated[
        SegArch | None,
        typer.Option(
            "--arch",
            help="Network (default dynunet); the planned patch is rounded up to a size it "
            "accepts (UNETR: multiples of 16, SwinUNETR: 32). Sets plan.json's network.",
        ),
    ] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1)] = 25_000,
    time_budget: Annotated[
        str,
        typer.Option(
            "--time-budget",
            help="Wall-clock time for training: seconds or with a unit (90s, 45m, 2h); 'auto': "
            "50 minutes on a CPU (the whole run finishes within the hour), no limit on a GPU; "
            "'none': train all --max-steps. The steps are planned from the measured speed of "
            "the first steps and the progress lines show the ETA.",
        ),
    ] = "auto",
    val_every: Annotated[int, typer.Option("--val-every", min=1)] = 250,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:i].")] = "auto",
    name: Annotated[str, typer.Option("--name", help="Package name.")] = "segmentation",
    folds: Annotated[
        int | None,
        typer.Option(
            "--folds",
            min=2,
            help="Train a K-fold cross-validation ensemble (nnU-Net's recipe): train and "
            "validation pooled into K patient-grouped folds, one member per fold, written as "
            "ONE package averaging the members' probabilities; post-processing and metrics "
            "from the out-of-fold predictions. --time-budget is for the whole ensemble.",
        ),
    ] = None,
    regions: Annotated[
        str | None,
        typer.Option(
            "--regions",
            help="Region-based training for nested labels (nnU-Net's recipe, e.g. BraTS): "
            "regions of label values separated by ';', values by ',', from the largest to "
            "the smallest, each containing the next and adding one label, e.g. '1,2,3;2,3;3' "
            "(whole tumour, tumour core, enhancing tumour). One sigmoid output per region "
            "(Dice + BCE); the package turns them back into the label map (each region at "
            "p > 0.5, painted largest first with the label it adds). Not with --folds.",
        ),
    ] = None,
    label_meaning: Annotated[
        list[str] | None,
        typer.Option(
            "--label-meaning",
            help="NAME=MEANING, repeatable: what a label means clinically (anatomy, normal, "
            "benign, indeterminate, actionable[:routine|urgent|stat]), e.g. "
            "'lesion=actionable:routine'; overrides --labels. Labels without a meaning are "
            "shown on the worklist as of unknown significance.",
        ),
    ] = None,
) -> None:
    """Plan, preprocess and train a segmentation network (2D or 3D); write a ModelPackage."""
    import json

    from medsight.core.errors import InvalidInputError
    from medsight.core.significance import parse_label_meanings
    from medsight.models.seg_regions import parse_regions
    from medsight.models.spec import LabelSpec
    from medsight.training.seg_runner import SegmentationRun, run_segmentation
    from medsight.training.segmentation import SegTrainConfig

    label_specs = None
    if labels is not None:
        try:
            label_specs = [LabelSpec.model_validate(x) for x in json.loads(labels.read_text())]
        except (OSError, ValueError) as exc:
            raise InvalidInputError(labels, f"is not a JSON list of labels ({exc})") from None
    run = SegmentationRun(
        data=data,
        out=out,
        splits=splits,
        plan=plan,
        labels=label_specs,
        modality=modality,
        arch=arch.value if arch is not None else None,
        train=SegTrainConfig(
            max_steps=max_steps,
            time_budget_s=parse_time_budget(time_budget),
            val_every=val_every,
            seed=seed,
            device=device,
            regions=parse_regions(regions) if regions is not None else None,
        ),
        name=name,
        label_meanings=parse_label_meanings(label_meaning or []),
        folds=folds,
    )
    run_segmentation(run, log=typer.echo)
