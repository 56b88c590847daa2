"""``medsight train segment --data SPEC --out DIR``: self-configuring segmentation training.

Each stage writes a file into ``DIR`` and is skipped when that file is already there, so a run
can be inspected, edited and resumed: ``splits.json`` -> ``plan.json`` (edit it to override the
plan) -> ``preprocessed.npz`` -> ``checkpoint_latest.pt`` -> ``package/``.
The logic lives in :mod:`medsight.training.plan` and :mod:`medsight.training.segmentation`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["SegArch", "register", "segment"]


class SegArch(StrEnum):
    """``--arch``: the segmentation network (``dynunet`` is the planner's default)."""

    DYNUNET = "dynunet"
    UNET = "unet"
    SEGRESNET = "segresnet"
    UNETR = "unetr"
    SWINUNETR = "swinunetr"


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
        float | None, typer.Option("--time-budget", help="Wall-clock seconds for training.")
    ] = None,
    val_every: Annotated[int, typer.Option("--val-every", min=1)] = 250,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:i].")] = "auto",
    name: Annotated[str, typer.Option("--name", help="Package name.")] = "segmentation",
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
    from medsight.data import SplitConfig, Splits, load_dataset, make_splits
    from medsight.models.seg_plan import PLAN_FILE, SEG_ARCHES, SegmentationPlan
    from medsight.models.spec import LabelSpec
    from medsight.training.plan import plan_for_network, plan_from_dataset
    from medsight.training.segmentation import (
        PREPROCESSED_FILE,
        SegTrainConfig,
        load_preprocessed,
        preprocess_dataset,
        train_segmentation,
    )

    meanings = parse_label_meanings(label_meaning or [])
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(data)
    split_file = out / "splits.json"
    if splits is not None:
        parts = Splits.load(splits)
    elif split_file.is_file():
        parts = Splits.load(split_file)
    else:
        parts = make_splits(dataset, SplitConfig(seed=seed))
    parts.save(split_file)
    dataset = parts.apply(dataset)
    plan_file = plan or out / PLAN_FILE
    if plan_file.is_file():
        the_plan = SegmentationPlan.load(plan_file)
        if arch is not None and SEG_ARCHES[arch].lower() != the_plan.network.lower():
            raise InvalidInputError(
                plan_file,
                f"has network {the_plan.network}, not --arch {arch.value}",
                hint="edit its network and patch_size, or delete it to re-plan",
            )
        the_plan.check_patch_size(plan_file)
        typer.echo(f"using {plan_file}: network {the_plan.network}")
    else:
        the_plan = plan_from_dataset(dataset, modality=modality)
        if arch is not None:
            the_plan = plan_for_network(the_plan, arch.value)
        the_plan.save(plan_file)
        typer.echo(
            f"wrote {plan_file}: network {the_plan.network}, patch {the_plan.patch_size}, "
            f"batch {the_plan.batch_size}"
        )
    pre = out / PREPROCESSED_FILE
    if not pre.is_file():
        preprocess_dataset(dataset, the_plan, pre)
    label_specs = None
    if labels is not None:
        label_specs = [LabelSpec.model_validate(x) for x in json.loads(labels.read_text())]
    cfg = SegTrainConfig(
        max_steps=max_steps,
        time_budget_s=time_budget,
        val_every=val_every,
        seed=seed,
        device=device,
    )
    res = train_segmentation(
        load_preprocessed(pre),
        the_plan,
        cfg,
        out,
        name=name,
        labels=label_specs,
        log=typer.echo,
        meanings=meanings,
    )
    dice = ", ".join(f"{k} {v:.3f}" for k, v in res.val_dice.items())
    typer.echo(f"wrote {res.package}; validation Dice {dice}")


def register(train_app: typer.Typer) -> None:
    """Add the ``segment`` command to the ``train`` sub-app (once)."""
    if not any(c.name == "segment" for c in train_app.registered_commands):
        train_app.command("segment")(segment)
