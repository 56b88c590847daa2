"""Seed and fold ensembles trained as members and written as ONE ModelPackage.

``medsight train classify ... --seeds 3`` trains three members on the same split with seeds
``seed, seed+1, seed+2``; ``--folds 5`` pools train and validation, splits them into five
patient-grouped, label-stratified folds (:func:`medsight.data.make_splits`, k-fold; the test
part stays untouched) and trains one member per fold, validated on the fold it held out.

The run folder::

    members/<k>/       each member's own run folder (config, checkpoint, log, package,
                       val_logits.npz: its best-epoch validation logits by case)
    splits/fold_<k>.json   (folds) the split each member trained on
    package/           the ensemble ModelPackage

Each member's temperature is fitted on its own validation logits (its held-out fold).  The
package's network (:class:`medsight.models.ensemble.EnsembleNet`) averages the members'
temperature-scaled probabilities.  Its operating threshold and validation metrics come from

* seeds: the averaged ensemble's probabilities on the shared validation split (the split that
  also chose each member's epoch and temperature, so they are optimistic);
* folds: the pooled out-of-fold probabilities, each case predicted by the one member that did
  not train on it.

Test-time augmentation is decided once, for the ensemble, on the same data as its threshold
(:mod:`medsight.training.tta`): each member's run folder keeps its per-view validation logits
(``view_logits``), the ensemble's metric with the views averaged is compared with the identity
view's, and ``--tta`` (auto / on / off) decides as for one model; the package's ``tta`` wraps
the whole ensemble network, so inference averages the members' temperature-scaled
probabilities over members and views.  The members' own TTA choices are not used.

The package's preprocessing is the last member's; the other members get an input affine that
maps it onto their own training standardisation.  The OOD gate and Grad-CAM use the network's
last linear / last convolution layer, which belong to the last member: the gate is that member's
reference (fitted by its trainer on its training images), Grad-CAM is of the ensemble's output
at that member's last convolution.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core import Split
from medsight.core.errors import InvalidInputError
from medsight.data import SplitConfig, Splits, SplitScheme, load_dataset, make_splits
from medsight.evaluation.calibration import fit_temperature
from medsight.models.calibration import sigmoid, softmax
from medsight.models.ood import OOD_FILE
from medsight.models.package import ModelPackage
from medsight.models.registry import build_network
from medsight.models.spec import (
    ArchitectureSpec,
    EnsembleMember,
    EnsembleSpec,
    Intensity,
    ModelSpec,
    PreprocessingSpec,
    Task,
)
from medsight.models.tta import TTASpec, logits_of_probabilities
from medsight.training.classification import (
    VAL_LOGITS_FILE,
    _labelled_only,
    _val_metric,
    operating_thresholds,
    train_classifier,
    validation_metrics,
)
from medsight.training.common import portable_config
from medsight.training.config import ClassifyConfig
from medsight.training.tta import tta_decision

__all__ = ["member_probabilities", "train_ensemble"]

log = logging.getLogger(__name__)


def member_probabilities(
    logits: NDArray[np.float64], temperature: float, task: Task
) -> NDArray[np.float64]:
    """A member's calibrated probabilities: ``softmax(z / T)`` (sigmoid for multi-label)."""
    return sigmoid(logits, temperature) if task is Task.MULTILABEL else softmax(logits, temperature)


def _fold_splits(cfg: ClassifyConfig, k: int) -> list[Path]:
    """Write the k-fold split of train + val (patient-grouped, stratified) and one
    single-fold ``splits.json`` per member; returns the members' files."""
    ds, _ = _labelled_only(load_dataset(cfg.data))
    if cfg.splits is not None:
        ds = Splits.load(cfg.splits).apply(ds)
    has_test = any(c.split is Split.TEST for c in ds)
    kfold = make_splits(
        ds,
        SplitConfig(
            scheme=SplitScheme.KFOLD,
            k=k,
            seed=cfg.seed,
            test_fraction=0.0 if has_test else SplitConfig().test_fraction,
        ),
    )
    folder = Path(cfg.out) / "splits"
    folder.mkdir(parents=True, exist_ok=True)
    kfold.save(folder / "kfold.json")
    return kfold.save_folds(folder)


def _affine(ref: PreprocessingSpec, member: PreprocessingSpec, k: int) -> list[float]:
    """``[scale, shift]`` mapping the reference member's network input onto member ``k``'s."""
    if member == ref:
        return [1.0, 0.0]
    same = {"intensity", "size", "channels"}
    stats = ref.intensity in (Intensity.DATASET_ZSCORE, Intensity.CT_WINDOW)
    others = {key: v for key, v in ref.intensity_args.items() if key not in ("mean", "std")}
    m_others = {key: v for key, v in member.intensity_args.items() if key not in ("mean", "std")}
    if not stats or others != m_others or any(getattr(ref, f) != getattr(member, f) for f in same):
        raise InvalidInputError(
            f"ensemble member {k}",
            f"preprocessing {member.model_dump(mode='json')} differs from the reference "
            f"member's {ref.model_dump(mode='json')} beyond the standardisation statistics",
            hint="give --size so every member resizes alike",
        )
    m_r, s_r = float(ref.intensity_args["mean"]), float(ref.intensity_args["std"])
    m_k, s_k = float(member.intensity_args["mean"]), float(member.intensity_args["std"])
    return [s_r / s_k, (m_r - m_k) / s_k]


def _load_member(run: Path) -> tuple[ModelPackage, dict[str, Any]]:
    pkg = ModelPackage.load(run / "package")
    with np.load(run / VAL_LOGITS_FILE) as z:
        arrays = {key: z[key] for key in z.files}
    return pkg, arrays


def train_ensemble(
    cfg: ClassifyConfig, *, seeds: int | None = None, folds: int | None = None
) -> ModelPackage:
    """Train ``seeds`` seed members or ``folds`` fold members; write one ensemble package.

    Parameters
    ----------
    cfg : ClassifyConfig
        The members' config; each member runs in ``cfg.out / "members" / k``.
    seeds, folds : int
        Exactly one, at least 2.

    Returns
    -------
    ModelPackage
        ``cfg.out / "package"``, architecture ``ensemble``.

    Raises
    ------
    InvalidInputError
        Both or neither of seeds / folds, fewer than 2, or options an ensemble cannot take.
    """
    if (seeds is None) == (folds is None):
        raise InvalidInputError("--seeds / --folds", "give exactly one of them")
    count = int(seeds or folds or 0)
    if count < 2:
        raise InvalidInputError("--seeds / --folds", f"{count}: an ensemble needs at least 2")
    if cfg.group_thresholds:
        raise InvalidInputError("--group-thresholds", "is not supported for ensembles yet")
    if folds is not None and cfg.splits is None and cfg.max_cases is not None:
        log.info("--max-cases applies within each fold")
    out = Path(cfg.out)
    split_files = _fold_splits(cfg, count) if folds is not None else [cfg.splits] * count
    members: list[tuple[ModelPackage, dict[str, Any]]] = []
    for k in range(count):
        run = out / "members" / str(k)
        member_cfg = cfg.model_copy(
            update={"seed": cfg.seed + k, "out": run, "splits": split_files[k], "name": None}
        )
        log.info("ensemble member %d of %d", k + 1, count)
        train_classifier(member_cfg)
        members.append(_load_member(run))
    return _write_package(cfg, "folds" if folds is not None else "seeds", members)


def _member_view_mean(
    arrays: dict[str, Any], temperature: float, task: Task, tta: bool
) -> NDArray[np.float64]:
    """A member's calibrated validation probabilities: of the identity view, or (``tta``) the
    mean over its stored views (``view_logits``)."""
    if not tta:
        return member_probabilities(arrays["logits"], temperature, task)
    return np.mean([member_probabilities(z, temperature, task) for z in arrays["view_logits"]], 0)


def _pooled(
    method: str,
    task: Task,
    members: list[tuple[ModelPackage, dict[str, Any]]],
    temps: list[float],
    tta: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.int64], list[str], str]:
    """``(probabilities, y, patient ids, description)`` the threshold is fitted on; ``tta``:
    each member's probabilities averaged over its test-time views."""
    if method == "folds":  # out-of-fold: each case by the member that held it out
        pairs = zip(members, temps, strict=True)
        proba = np.concatenate([_member_view_mean(a, t, task, tta) for (_, a), t in pairs])
        y = np.concatenate([a["y"] for _, a in members])
        pids = [str(p) for _, a in members for p in a["patient_ids"]]
        return proba, y, pids, f"pooled out-of-fold predictions of the members (n={len(y)})"
    # seeds: the averaged ensemble on the validation cases every member saw
    ref = members[-1][1]
    common = set.intersection(*(set(a["case_ids"].tolist()) for _, a in members))
    keep = [i for i, c in enumerate(ref["case_ids"].tolist()) if c in common]
    if len(keep) < 2:
        raise InvalidInputError("ensemble", "the members share fewer than 2 validation cases")
    order = [str(c) for c in ref["case_ids"][keep]]
    parts = []
    for (_, a), t in zip(members, temps, strict=True):
        where = {str(c): i for i, c in enumerate(a["case_ids"].tolist())}
        rows = [where[c] for c in order]
        view_mean = _member_view_mean(a, t, task, tta)
        parts.append(view_mean[rows])
    proba = np.mean(parts, axis=0)
    text = f"validation predictions of the averaged ensemble (n={len(keep)})"
    return proba, ref["y"][keep], [str(p) for p in ref["patient_ids"][keep]], text


def _write_package(
    cfg: ClassifyConfig, method: str, members: list[tuple[ModelPackage, dict[str, Any]]]
) -> ModelPackage:
    ref_pkg = members[-1][0]
    ref = ref_pkg.spec
    task = ref.task
    temps = [
        fit_temperature(a["logits"], a["y"], multilabel=task is Task.MULTILABEL) for _, a in members
    ]
    affine = [
        _affine(ref.preprocessing, pkg.spec.preprocessing, k) for k, (pkg, _) in enumerate(members)
    ]
    arch = ArchitectureSpec(
        name="ensemble",
        args={
            "members": [pkg.spec.architecture.model_dump(mode="json") for pkg, _ in members],
            "temperatures": temps,
            "input_affine": affine,
            "multilabel": task is Task.MULTILABEL,
        },
    )
    net = build_network(arch)
    for k, (pkg, _) in enumerate(members):
        net.members[k].load_state_dict(pkg.state_dict(), strict=True)  # type: ignore[index]
    proba, y, pids, fitted_on = _pooled(method, task, members, temps)
    tta, averaged = _decide_tta(cfg, method, task, members, temps, proba, y, fitted_on)
    if tta.enabled and averaged is not None:  # threshold and metrics of what it will produce
        proba = averaged
    names = ref.label_names
    thresholds = operating_thresholds(cfg.threshold, task, y, proba, names)
    split = "val_oof" if method == "folds" else "val"
    metrics = validation_metrics(
        task, y, proba, thresholds, names, pids, cfg.n_resamples, cfg.seed, split=split
    )
    listed = [
        EnsembleMember(
            index=k,
            seed=pkg.spec.seed,
            fold=k if method == "folds" else None,
            temperature=t,
            val_auc=next(
                (m.value for m in pkg.spec.metrics if m.name in ("auc", "auc_macro")), None
            ),
            n_val=len(a["y"]),
        )
        for k, ((pkg, a), t) in enumerate(zip(members, temps, strict=True))
    ]
    ensemble = EnsembleSpec(
        method=method,
        members=listed,
        threshold_fitted_on=fitted_on,
        explanations=(
            f"OOD gate: member {len(members) - 1}'s Mahalanobis reference on its penultimate "
            "features; Grad-CAM: of the ensemble output at that member's last convolution"
        ),
    )
    td = ref.training_data
    if td is not None and method == "folds":
        multilabel = task is Task.MULTILABEL
        counts = Counter(
            names[k] for row in y for k in (np.flatnonzero(row) if multilabel else [row])
        )
        td = td.model_copy(
            update={
                "n_cases": {"train_val_pooled": len(y), "folds": len(members)},
                "class_counts": dict(sorted(counts.items())),
            }
        )
    note = (
        f" This is a {len(members)}-member {method} ensemble; its threshold and validation "
        f"metrics come from the {fitted_on}."
    )
    base = cfg.name or f"{ref.name}-ensemble{len(members)}"
    keep_extra = {k: v for k, v in ref.extra.items() if k in ("input_reference", "ood")}
    data = ref.model_dump(mode="json") | {
        "name": base,
        "architecture": arch.model_dump(mode="json"),
        "thresholds": thresholds,
        "group_thresholds": None,
        "temperature": None,
        "calibration": None,
        "metrics": [m.model_dump(mode="json") for m in metrics],
        "training_data": td.model_dump(mode="json") if td else None,
        "limitations": ref.limitations + note,
        "seed": cfg.seed,
        "ensemble": ensemble.model_dump(mode="json"),
        "tta": tta.model_dump(mode="json"),
        "extra": keep_extra | {"member_runs": [f"members/{k}" for k in range(len(members))]},
    }
    spec = ModelSpec.model_validate(data)
    extra_files: dict[str, str | bytes] = {
        "config.json": json.dumps(
            portable_config(cfg, ("out", "init", "pretrained", "splits", "synthetic"))
            | {"ensemble": method, "members": len(members)},
            indent=2,
        )
    }
    if (ref_pkg.path / OOD_FILE).is_file():
        extra_files[OOD_FILE] = (ref_pkg.path / OOD_FILE).read_bytes()
    for k, (pkg, _) in enumerate(members):
        if (pkg.path / "training_log.csv").is_file():
            text = (pkg.path / "training_log.csv").read_text(encoding="utf-8")
            extra_files[f"training_log_member{k}.csv"] = text
    return ModelPackage.save(
        Path(cfg.out) / "package", spec, net.state_dict(), overwrite=True, extra_files=extra_files
    )


def _decide_tta(
    cfg: ClassifyConfig,
    method: str,
    task: Task,
    members: list[tuple[ModelPackage, dict[str, Any]]],
    temps: list[float],
    proba: NDArray[np.float64],
    y: NDArray[np.int64],
    fitted_on: str,
) -> tuple[TTASpec, NDArray[np.float64] | None]:
    """The ensemble's TTA choice on its threshold data (module doc), once for all members, and
    the view-averaged probabilities it was measured on (``None`` with the identity only)."""
    multilabel = task is Task.MULTILABEL
    without = _val_metric(task, y, logits_of_probabilities(proba, multilabel=multilabel))
    names = [
        [str(n) for n in a["views"]] if "view_logits" in a else ["identity"] for _, a in members
    ]
    if any(n != names[0] for n in names):  # the members disagree on their views
        raise InvalidInputError("ensemble", f"members were trained with different views {names}")
    views = TTASpec(transforms=names[0]).flips
    with_, averaged = None, None
    if len(views) > 1:
        averaged = _pooled(method, task, members, temps, tta=True)[0]
        with_ = _val_metric(task, y, logits_of_probabilities(averaged, multilabel=multilabel))
    spec = tta_decision(cfg.tta, views, without=without, with_=with_, decided_on=fitted_on)
    return spec, averaged
