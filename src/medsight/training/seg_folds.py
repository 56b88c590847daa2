"""K-fold cross-validation ensembles for segmentation (nnU-Net's recipe), as ONE ModelPackage.

``medsight train segment ... --folds K`` (``SegmentationRun.folds``) pools the training and
validation cases, splits them into K patient-grouped folds with
:func:`medsight.data.make_splits` (k-fold; the test part stays untouched: cases that are test
cases in ``--splits`` or in the data set's layout stay test cases, otherwise a seeded test part
is held out first, as for a single run) and trains one member per fold with
:func:`medsight.training.segmentation.train_segmentation`, validated on the fold it held out.
Every member shares the run's one ``plan.json`` and ``preprocessed.npz``, so they all expect
the same preprocessed input.

The run folder (the layout of the classification ensembles, :mod:`medsight.training.ensemble`)::

    plan.json, preprocessed.npz   shared by every member
    splits/kfold.json             the K folds (and the untouched test part)
    splits/fold_<k>.json          the split member k trained on (fold k is its validation)
    members/<k>/                  member k's own run folder (checkpoints, package/) and
                                  oof.npz: its predictions on the fold it held out
    package/                      the ensemble ModelPackage

A killed run resumes: a member whose ``oof.npz`` is there is finished and kept as it is
(nothing in its folder is written again); an unfinished member resumes from its own
checkpoint; the folds are read back from ``splits/kfold.json`` (another ``--folds`` in the
same folder is refused).

The package's network is :class:`medsight.models.ensemble.EnsembleNet` over the members (all
temperatures 1): it returns the log of the members' mean softmax probabilities, so the
:class:`~medsight.inference.segment.Segmenter` runs it unchanged (its softmax gives the mean
back).  Within one sliding window the Segmenter's probabilities are exactly the members' mean;
where windows overlap, their Gaussian blending averages the ensemble's log-probabilities (as it
averages any network's logits) instead of averaging each member's blended probabilities, a
difference confined to the overlaps.  Mirror TTA averages the ensemble's probabilities.

Post-processing (largest connected component per label) is chosen on the pooled out-of-fold
predictions, each case predicted by the member that did not train on it, and the package's
validation metrics are the out-of-fold Dice per label (``split="val_oof"``, before
post-processing, as a single run reports its validation Dice).  The OOD gate is the last
member's reference (fitted by its trainer on its training cases) on that member's bottleneck.

The time budget (``time_budget_s``; ``"auto"`` is
:data:`~medsight.training.segmentation.CPU_TIME_BUDGET_S` on a CPU) is for the whole
ensemble: the time left is divided by the members left before each member starts, so what
one member's validation and packaging cost comes out of the later members' training.

Examples
--------
>>> from medsight.training.seg_runner import SegmentationRun
>>> SegmentationRun(data="msd:PATH", out="run", folds=5).folds
5
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsight.core import Split
from medsight.core.errors import InvalidInputError, UnreadableFileError
from medsight.data import Splits
from medsight.io.atomic import atomic_path
from medsight.models.seg_plan import PLAN_FILE, SegmentationPlan
from medsight.training.seg_runner import (
    SegmentationRun,
    _dataset_info,
    _load_data,
    _plan_stage,
    _preprocess_stage,
)
from medsight.training.segmentation import (
    Preprocessed,
    SegTrainConfig,
    _choose_postprocessing,
    _duration,
    _mean_dice,
    _validate,
    load_preprocessed,
    resolve_time_budget,
    train_segmentation,
)

if TYPE_CHECKING:
    from medsight.models.package import ModelPackage

__all__ = ["OOF_FILE", "load_oof", "run_segmentation_folds"]

#: a member's out-of-fold predictions; its presence marks the member finished
OOF_FILE = "oof.npz"
#: no member trains for less than this share of the whole budget
_MIN_SHARE = 0.05


def _fold_splits(run: SegmentationRun, dataset: Any, k: int, log: Callable[[str], None]) -> Splits:
    """``splits/kfold.json`` (made once, then read back) and one ``fold_<i>.json`` per member."""
    from medsight.data import SplitConfig, SplitScheme, make_splits

    folder = run.out / "splits"
    path = folder / "kfold.json"
    if run.splits is not None:
        dataset = Splits.load(run.splits).apply(dataset)
    if path.is_file():
        kfold = Splits.load(path)
        if len(kfold.folds) != k:
            raise InvalidInputError(
                path,
                f"holds {len(kfold.folds)} folds, not --folds {k}",
                hint="use a new --out for another number of folds",
            )
        log(f"using {path}")
    else:
        has_test = any(c.split is Split.TEST for c in dataset)
        config = SplitConfig(
            scheme=SplitScheme.KFOLD,
            k=k,
            seed=run.train.seed,
            test_fraction=0.0 if has_test else SplitConfig().test_fraction,
        )
        kfold = make_splits(dataset, config)
    pooled = set(kfold.folds[0].train) | set(kfold.folds[0].val)
    groups = {str(c.patient_id) for c in dataset if c.case_id in pooled}
    if k > len(groups):
        raise InvalidInputError(
            "--folds",
            f"{k} folds, but the training and validation cases of {run.data} come from only "
            f"{len(groups)} patient groups (a patient's cases stay in one fold)",
            hint=f"use --folds {len(groups)} or fewer",
        )
    kfold.save_folds(folder)
    kfold.save(path)
    return kfold


def _member_data(data: Preprocessed, kfold: Splits, k: int) -> Preprocessed:
    """The shared preprocessed cases with member ``k``'s parts (fold ``k`` is validation)."""
    parts = kfold.assignment(k)
    return data.model_copy(update={"splits": [parts[c].value for c in data.case_ids]})


def load_oof(member_dir: str | Path) -> tuple[list[str], list[np.ndarray], dict[str, Any]]:
    """A member's ``oof.npz``: held-out case ids, their predicted masks, and its record."""
    path = Path(member_dir) / OOF_FILE
    try:
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            preds = [z[f"pred_{i}"] for i in range(len(meta["case_ids"]))]
    except (OSError, KeyError, ValueError) as exc:
        raise UnreadableFileError(path, f"not a member's out-of-fold predictions ({exc})") from None
    return list(meta["case_ids"]), preds, meta


def _write_oof(
    member_dir: Path, data: Preprocessed, idx: list[int], preds: list[Any], **meta: Any
) -> None:
    arrays = {f"pred_{j}": p.astype(np.int16) for j, p in enumerate(preds)}
    record = {"case_ids": [data.case_ids[i] for i in idx], **meta}
    arrays["meta"] = np.frombuffer(json.dumps(record).encode(), dtype=np.uint8)
    with atomic_path(member_dir / OOF_FILE) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def run_segmentation_folds(
    run: SegmentationRun, log: Callable[[str], None] = print
) -> ModelPackage:
    """Train (or resume) a ``run.folds``-fold ensemble; return its one :class:`ModelPackage`.

    Raises
    ------
    InvalidInputError
        More folds than patient groups, an empty fold, a run folder made with another number
        of folds, or anything a single run refuses.
    """
    from medsight.models.device import select_device
    from medsight.models.package import ModelPackage
    from medsight.models.roles import roles_from_channel_names

    k_folds = int(run.folds or 0)
    if k_folds < 2:
        raise InvalidInputError("--folds", f"{k_folds}: an ensemble needs at least 2 folds")
    dataset = _load_data(run)
    kfold = _fold_splits(run, dataset, k_folds, log)
    dataset = kfold.apply(dataset)
    plan = _plan_stage(run, dataset, log)
    data = load_preprocessed(
        _preprocess_stage(run, dataset, plan, log, splits_file=run.out / "splits" / "kfold.json")
    )
    device = select_device(run.train.device)
    total = resolve_time_budget(run.train.time_budget_s, device.type)
    if total:
        log(
            f"time budget {_duration(total)} for the whole {k_folds}-fold ensemble: "
            f"{_duration(total / k_folds)} per member, divided again before each member "
            "(the time left over the members left)"
        )
    dirs = [run.out / "members" / str(k) for k in range(k_folds)]
    spent = sum(load_oof(d)[2]["seconds"] for d in dirs if (d / OOF_FILE).is_file())
    session: list[float] = []
    info = _dataset_info(dataset)
    roles = roles_from_channel_names(dataset.channel_names)
    for k, member_dir in enumerate(dirs):
        tag = f"member {k + 1}/{k_folds}"
        if (member_dir / OOF_FILE).is_file():
            log(f"{tag}: finished, kept ({member_dir})")
            continue
        left = k_folds - k
        budget = None
        if total:
            budget = max((total - spent) / left, total * _MIN_SHARE)
        each = np.mean(session) if session else budget
        eta = f"; ensemble ETA {_duration(each * left)}" if each else ""
        member = _member_data(data, kfold, k)
        n_train, n_val = len(member.part("train")), len(member.part("val"))
        log(
            f"{tag} (fold {k}: {n_train} training, {n_val} held-out cases"
            + (f", {_duration(budget)} of the time budget" if budget else "")
            + f"){eta}"
        )
        start = time.monotonic()
        cfg: SegTrainConfig = run.train.model_copy(
            update={"seed": run.train.seed + k, "time_budget_s": budget}
        )
        result = train_segmentation(
            member,
            plan,
            cfg,
            member_dir,
            name=f"{run.name}-fold{k}",
            labels=run.labels,
            log=lambda line, tag=tag: log(f"{tag}: {line}"),
            meanings=run.label_meanings,
            dataset_info=info,
            roles=roles,
        )
        net = ModelPackage.load(result.package).build_network().to(device)
        val_idx = member.part("val")
        preds = _validate(net, member, val_idx, plan, device)
        seconds = time.monotonic() - start
        _write_oof(
            member_dir,
            member,
            val_idx,
            preds,
            fold=k,
            seconds=seconds,
            n_train=n_train,
            val_dice=result.val_dice,
            steps=result.steps,
            best_step=result.best_step,
        )
        spent += seconds
        session.append(seconds)
        log(f"{tag}: done in {_duration(seconds)}")
    training = {
        "time_budget_s": total,
        "device": device.type,
        "budget_division": "the time left, divided over the members left before each member",
    }
    pkg = _write_package(run, plan, data, kfold, dirs, training)
    dice = ", ".join(f"{m.name.removeprefix('dice_')} {m.value:.3f}" for m in pkg.spec.metrics)
    log(f"wrote {pkg.path}; out-of-fold Dice {dice}")
    return pkg


def _write_package(
    run: SegmentationRun,
    plan: SegmentationPlan,
    data: Preprocessed,
    kfold: Splits,
    dirs: list[Path],
    training: dict[str, Any],
) -> ModelPackage:
    """The ensemble package: every member's weights, rules and metrics from out-of-fold."""
    from medsight.models.dynunet import register_segmentation_networks
    from medsight.models.ood import OOD_FILE
    from medsight.models.package import ModelPackage
    from medsight.models.registry import build_network
    from medsight.models.spec import (
        ArchitectureSpec,
        EnsembleMember,
        EnsembleSpec,
        MetricValue,
        ModelSpec,
    )

    register_segmentation_networks()
    members = [ModelPackage.load(d / "package") for d in dirs]
    oof = [load_oof(d) for d in dirs]
    where = {c: i for i, c in enumerate(data.case_ids)}
    ids = [c for ids, _, _ in oof for c in ids]
    if len(ids) != len(set(ids)):
        raise InvalidInputError(run.out / "members", "a case is out-of-fold in two members")
    preds = [p for _, ps, _ in oof for p in ps]
    refs = [data.labels[where[c]] for c in ids]
    n_cls = plan.n_classes
    dice = _mean_dice(preds, refs, n_cls)
    rules = _choose_postprocessing(preds, refs, n_cls)
    arch = ArchitectureSpec(
        name="ensemble",
        args={
            "members": [m.spec.architecture.model_dump(mode="json") for m in members],
            "temperatures": [1.0] * len(members),
        },
    )
    net = build_network(arch)
    for k, member in enumerate(members):
        net.members[k].load_state_dict(member.state_dict(), strict=True)  # type: ignore[index]
    state = {
        key: (
            v.detach().cpu().half() if key.startswith("members.") and v.is_floating_point() else v
        )
        for key, v in net.state_dict().items()
    }
    ref = members[-1].spec
    fitted_on = f"pooled out-of-fold predictions of the members (n={len(ids)})"
    ensemble = EnsembleSpec(
        method="folds",
        members=[
            EnsembleMember(index=k, seed=m.spec.seed, fold=k, temperature=1.0, n_val=len(o[0]))
            for k, (m, o) in enumerate(zip(members, oof, strict=True))
        ],
        threshold_fitted_on=fitted_on,
        explanations=(
            f"OOD gate: member {len(members) - 1}'s Mahalanobis reference on its bottleneck "
            "features"
        ),
    )
    names = plan.label_names
    metrics = [
        MetricValue(name=f"dice_{names[c + 1]}", value=float(d), split="val_oof", n=len(ids))
        for c, d in enumerate(dice)
    ]
    n_test = len(kfold.test)
    td = ref.training_data
    if td is not None:
        td = td.model_copy(
            update={
                "n_cases": {"train_val_pooled": len(ids), "folds": len(members), "test": n_test}
            }
        )
    note = (
        f" This is a {len(members)}-fold ensemble (K-fold cross-validation, nnU-Net's recipe): "
        f"{len(members)} members, each trained on {len(members) - 1} folds, their softmax "
        f"probabilities averaged; the post-processing and the validation metrics come from the "
        f"{fitted_on}, each case predicted by the member that did not train on it."
    )
    folds = [
        {
            "fold": k,
            "run": f"members/{k}",
            "n_train": o[2]["n_train"],
            "n_val": len(o[0]),
            "val_dice": o[2]["val_dice"],
            "steps": o[2]["steps"],
            "best_step": o[2]["best_step"],
            "seconds": round(o[2]["seconds"], 1),
        }
        for k, o in enumerate(oof)
    ]
    per_member = ("best_step", "steps", "training", "postprocessing", "backends")
    keep = {key: v for key, v in ref.extra.items() if key not in per_member}
    data_json = ref.model_dump(mode="json") | {
        "name": run.name,
        "architecture": arch.model_dump(mode="json"),
        "metrics": [m.model_dump(mode="json") for m in metrics],
        "training_data": td.model_dump(mode="json") if td else None,
        "limitations": ref.limitations + note,
        "seed": run.train.seed,
        "ensemble": ensemble.model_dump(mode="json"),
        "extra": keep
        | {
            "postprocessing": rules,
            "postprocessing_chosen_on": fitted_on,
            "folds": folds,
            "member_runs": [f"members/{k}" for k in range(len(members))],
            "training": training | {"seconds": round(sum(o[2]["seconds"] for o in oof), 1)},
        },
    }
    spec = ModelSpec.model_validate(data_json)
    extra_files: dict[str, str | bytes] = {PLAN_FILE: plan.model_dump_json(indent=2) + "\n"}
    if (members[-1].path / OOD_FILE).is_file():
        extra_files[OOD_FILE] = (members[-1].path / OOD_FILE).read_bytes()
    return ModelPackage.save(
        run.out / "package", spec, state, overwrite=True, extra_files=extra_files
    )
