"""The segmentation family's runner: data -> splits -> plan -> preprocessed -> trained package.

One call, :func:`run_segmentation`, drives every stage; ``medsight train segment`` and the
benchmarks both use it.  Each stage writes a file into the run folder and is reused when that
file is there *and* was made from the same inputs, so a run can be inspected, edited (e.g. the
plan) and resumed:

``splits.json``
    the seeded hold-out (or the ``splits`` given); reused as is.
``plan.json``
    nnU-Net's planning rules (:mod:`medsight.training.plan`); edit it to override the plan.
``preprocessed.npz`` + ``preprocessed.json``
    every case prepared as the plan says; ``preprocessed.json`` records the plan and the
    splits it was made from, and a changed plan or split makes the stage run again (an
    out-of-date file is never trained on).
``checkpoint_latest.pt``, ``checkpoint_config.json``
    training resumes from the checkpoint only with the same settings and plan.
``package/``
    the ModelPackage (weights, ``model.json`` whose preprocessing is the plan's, the OOD
    reference, the model card).

With ``folds=K`` (``--folds K``) the same stages feed a K-fold cross-validation ensemble
instead of one hold-out run: ``splits/``, ``members/<k>/`` and one ensemble ``package/``
(:mod:`medsight.training.seg_folds`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medsight.core.errors import InvalidInputError, UnreadableFileError
from medsight.io.atomic import write_text_atomic
from medsight.models.seg_plan import PLAN_FILE, SEG_ARCHES, SegmentationPlan
from medsight.models.spec import LabelSpec
from medsight.training.segmentation import PREPROCESSED_FILE, SegTrainConfig

__all__ = ["PREPROCESSED_INFO_FILE", "SPLITS_FILE", "SegmentationRun", "run_segmentation"]

SPLITS_FILE = "splits.json"
PREPROCESSED_INFO_FILE = "preprocessed.json"


class SegmentationRun(BaseModel):
    """Everything that defines one segmentation run (``medsight train segment``'s options)."""

    model_config = ConfigDict(extra="forbid")

    data: str  # data set spec, e.g. msd:PATH
    out: Path  # the run folder
    splits: Path | None = None  # splits.json to use (default: a seeded hold-out)
    plan: Path | None = None  # a plan.json to use instead of planning
    labels: list[LabelSpec] | None = None  # coded labels with colours
    modality: str | None = None  # when the data does not say
    arch: str | None = None  # a key of SEG_ARCHES; default: the plan's network (DynUNet)
    train: SegTrainConfig = Field(default_factory=SegTrainConfig)
    name: str = "segmentation"
    label_meanings: dict[str, str] = Field(default_factory=dict)
    max_voxels: int | None = Field(None, ge=1)  # planner: cap on the patch's voxels
    max_filters: int | None = Field(None, ge=1)  # planner: cap on the widest layer
    quantize: bool = False  # preprocessed images as uint8 (8-bit sources)
    max_cases: int | None = Field(None, ge=2)  # the first N cases by id (smoke runs)
    #: K >= 2: a K-fold cross-validation ensemble (:mod:`medsight.training.seg_folds`)
    folds: int | None = Field(None, ge=2)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str | None) -> str | None:
        if arch is not None and arch not in SEG_ARCHES:
            raise ValueError(f"arch {arch!r} is not one of {', '.join(SEG_ARCHES)}")
        return arch


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _splits_stage(run: SegmentationRun, dataset: Any, log: Callable[[str], None]) -> Any:
    from medsight.data import SplitConfig, Splits, make_splits

    path = run.out / SPLITS_FILE
    if run.splits is not None:
        parts = Splits.load(run.splits)
    elif path.is_file():
        parts = Splits.load(path)
        log(f"using {path}")
    else:
        parts = make_splits(dataset, SplitConfig(seed=run.train.seed))
    parts.save(path)
    return parts


def _plan_stage(run: SegmentationRun, dataset: Any, log: Callable[[str], None]) -> Any:
    from medsight.training.plan import plan_for_network, plan_from_dataset

    path = run.plan or run.out / PLAN_FILE
    if path.is_file():
        plan = SegmentationPlan.load(path)
        if run.arch is not None and SEG_ARCHES[run.arch].lower() != plan.network.lower():
            raise InvalidInputError(
                path,
                f"has network {plan.network}, not --arch {run.arch}",
                hint="edit its network and patch_size, or delete it to re-plan",
            )
        plan.check_patch_size(path)
        log(f"using {path}: network {plan.network}")
        if path != run.out / PLAN_FILE:
            plan.save(run.out / PLAN_FILE)
        return plan
    plan = plan_from_dataset(
        dataset, modality=run.modality, max_voxels=run.max_voxels, max_filters=run.max_filters
    )
    if run.arch is not None:
        plan = plan_for_network(plan, run.arch)
    plan.save(path)
    log(f"wrote {path}: network {plan.network}, patch {plan.patch_size}, batch {plan.batch_size}")
    return plan


def _preprocess_stage(
    run: SegmentationRun,
    dataset: Any,
    plan: SegmentationPlan,
    log: Callable[[str], None],
    splits_file: Path | None = None,
) -> Path:
    """``preprocessed.npz``, made again when the plan or the splits it came from changed
    (``splits_file``, default the run's ``splits.json``)."""
    from medsight.training.segmentation import preprocess_dataset

    path = run.out / PREPROCESSED_FILE
    info_path = run.out / PREPROCESSED_INFO_FILE
    splits_text = (splits_file or run.out / SPLITS_FILE).read_text(encoding="utf-8")
    made_from = {
        "plan_sha256": _digest(plan.model_dump_json()),
        "splits_sha256": _digest(splits_text),
        "data": run.data,
        "max_cases": run.max_cases,
        "quantize": run.quantize,
    }
    if path.is_file():
        if not info_path.is_file():  # written before medsight recorded its inputs
            log(f"using {path} (made before medsight recorded what it was made from)")
            return path
        try:
            before = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UnreadableFileError(info_path, f"cannot read it ({exc})") from None
        changed = [k for k, v in made_from.items() if before.get(k) != v]
        if not changed:
            log(f"using {path}")
            return path
        log(f"{path} was made from another {', '.join(changed)}: preprocessing again")
    n = len(dataset)

    def progress(i: int) -> None:
        if (i + 1) % max(1, n // 10) == 0 or i + 1 == n:
            log(f"preprocessed {i + 1}/{n} cases")

    preprocess_dataset(dataset, plan, path, quantize=run.quantize, progress=progress)
    write_text_atomic(info_path, json.dumps(made_from, indent=2) + "\n")
    return path


def _load_data(run: SegmentationRun) -> Any:
    """The run's data set (its first ``max_cases`` cases by id when set)."""
    from medsight.data import load_dataset

    run.out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(run.data)
    if run.max_cases is not None:
        dataset = dataset.with_cases(sorted(dataset, key=lambda c: c.case_id)[: run.max_cases])
    return dataset


def run_segmentation(run: SegmentationRun, log: Callable[[str], None] = print) -> Any:
    """Run (or resume) every stage of a segmentation run; return its :class:`ModelPackage`.

    With ``run.folds`` set, a K-fold ensemble
    (:func:`medsight.training.seg_folds.run_segmentation_folds`).

    Raises
    ------
    InvalidInputError
        A plan that does not fit ``arch`` or whose patch its network rejects, a checkpoint
        trained with other settings, cases without masks, regions (``run.train.regions``)
        that are not nested or name labels the data does not have, regions with ``folds``.
    """
    from medsight.models.package import ModelPackage
    from medsight.models.roles import roles_from_channel_names
    from medsight.training.segmentation import load_preprocessed, train_segmentation

    if run.folds is not None:
        if run.train.regions:
            raise InvalidInputError(
                "--regions",
                "region-based training is not available with --folds: the K-fold ensemble "
                "averages softmax probabilities, not a region network's sigmoid outputs",
                hint="train one region-based model without --folds",
            )
        from medsight.training.seg_folds import run_segmentation_folds

        return run_segmentation_folds(run, log)
    dataset = _load_data(run)
    dataset = _splits_stage(run, dataset, log).apply(dataset)
    plan = _plan_stage(run, dataset, log)
    if run.train.regions:  # before preprocessing: wrong regions fail at once
        from medsight.models.seg_regions import check_regions

        check_regions(run.train.regions, plan.label_names)
    pre = _preprocess_stage(run, dataset, plan, log)
    result = train_segmentation(
        load_preprocessed(pre),
        plan,
        run.train,
        run.out,
        name=run.name,
        labels=run.labels,
        log=log,
        meanings=run.label_meanings,
        dataset_info=_dataset_info(dataset),
        roles=roles_from_channel_names(dataset.channel_names),
    )
    dice = ", ".join(f"{k} {v:.3f}" for k, v in result.val_dice.items())
    log(f"wrote {result.package}; validation Dice {dice}")
    return ModelPackage.load(result.package)


def _dataset_info(dataset: Any) -> dict[str, str] | None:
    info = {
        k: str(getattr(dataset, k))
        for k in ("name", "source", "license")
        if getattr(dataset, k, None)
    }
    if "name" in info:
        info["dataset"] = info.pop("name")
    return info or None
