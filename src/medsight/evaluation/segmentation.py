"""Segmentation metrics: pure functions on label masks, and a per-label report with CIs.

Distances are in millimetres (the voxel spacing is applied); surfaces are the mask voxels with
a face neighbour outside the mask.  Conventions (as MONAI's ``compute_hausdorff_distance`` and
``compute_average_surface_distance`` with ``symmetric=True``):

* **Dice** ``2|P∩R| / (|P|+|R|)``; 1.0 when both masks are empty.
* **HD95**: the larger of the two directed 95th percentiles of surface-to-surface distances.
* **ASD**: the mean of all surface distances in both directions.
* **volume difference**: ``V(P) - V(R)`` in mL (and relative to ``V(R)``).

HD95 and ASD are undefined (NaN) when exactly one mask is empty, and 0 when both are.

Examples
--------
>>> import numpy as np
>>> ref = np.zeros((10, 10), bool); ref[2:6, 2:6] = True
>>> pred = np.zeros((10, 10), bool); pred[2:6, 3:7] = True
>>> dice(pred, ref), hd95(pred, ref, spacing=(1.0, 2.0))
(0.75, 2.0)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from medsight.core.errors import InvalidInputError
from medsight.evaluation.bootstrap import bootstrap_ci
from medsight.evaluation.estimability import subgroup_mean
from medsight.io.atomic import write_text_atomic
from medsight.io.html import write_html

__all__ = [
    "CaseMetrics",
    "LabelReport",
    "average_surface_distance",
    "case_metrics",
    "dice",
    "evaluate_segmenter",
    "hd95",
    "summarize",
    "surface_distances",
    "volume_difference_ml",
]


def _pair(pred: ArrayLike, ref: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, r = np.asarray(pred).astype(bool), np.asarray(ref).astype(bool)
    if p.shape != r.shape:
        raise InvalidInputError("masks", f"shapes differ: {p.shape} vs {r.shape}")
    return p, r


def dice(pred: ArrayLike, ref: ArrayLike) -> float:
    """Dice similarity coefficient of two binary masks (1.0 when both are empty)."""
    p, r = _pair(pred, ref)
    denom = int(p.sum()) + int(r.sum())
    return 1.0 if denom == 0 else float(2 * np.logical_and(p, r).sum() / denom)


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure, border_value=0)


def surface_distances(
    pred: ArrayLike, ref: ArrayLike, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``pred`` to ``ref``'s surface, and back.

    Raises
    ------
    InvalidInputError
        Shapes differ, or either mask is empty.
    """
    from scipy import ndimage

    p, r = _pair(pred, ref)
    if not p.any() or not r.any():
        raise InvalidInputError("masks", "surface distances need two non-empty masks")
    sp = tuple(float(s) for s in (spacing or (1.0,) * p.ndim))
    sp_, sr = _surface(p), _surface(r)
    to_ref = ndimage.distance_transform_edt(~sr, sampling=sp)
    to_pred = ndimage.distance_transform_edt(~sp_, sampling=sp)
    return to_ref[sp_], to_pred[sr]


def _undefined(p: np.ndarray, r: np.ndarray) -> float | None:
    if not p.any() and not r.any():
        return 0.0
    if not p.any() or not r.any():
        return float("nan")
    return None


def hd95(pred: ArrayLike, ref: ArrayLike, spacing: Sequence[float] | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance in mm."""
    p, r = _pair(pred, ref)
    special = _undefined(p, r)
    if special is not None:
        return special
    a, b = surface_distances(p, r, spacing)
    return float(max(np.percentile(a, 95), np.percentile(b, 95)))


def average_surface_distance(
    pred: ArrayLike, ref: ArrayLike, spacing: Sequence[float] | None = None
) -> float:
    """Symmetric average surface distance in mm."""
    p, r = _pair(pred, ref)
    special = _undefined(p, r)
    if special is not None:
        return special
    a, b = surface_distances(p, r, spacing)
    return float(np.concatenate([a, b]).mean())


def volume_difference_ml(
    pred: ArrayLike, ref: ArrayLike, spacing: Sequence[float] | None = None
) -> float:
    """``V(pred) - V(ref)`` in millilitres (voxel volume from ``spacing`` in mm)."""
    p, r = _pair(pred, ref)
    voxel = float(np.prod(spacing or (1.0,) * p.ndim)) / 1000.0
    return (int(p.sum()) - int(r.sum())) * voxel


@dataclasses.dataclass(frozen=True)
class CaseMetrics:
    """The metrics of one label on one case."""

    case_id: str
    label: int
    dice: float
    hd95: float
    asd: float
    volume_ref_ml: float
    volume_diff_ml: float


def case_metrics(
    pred: ArrayLike,
    ref: ArrayLike,
    labels: Sequence[int],
    *,
    spacing: Sequence[float] | None = None,
    case_id: str = "",
) -> list[CaseMetrics]:
    """All metrics for each label value of two label maps.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.zeros((4, 4), int); ref[:2] = 1; ref[2:] = 2
    >>> [round(m.dice, 3) for m in case_metrics(ref, ref, [1, 2])]
    [1.0, 1.0]
    """
    p_all, r_all = np.asarray(pred), np.asarray(ref)
    if p_all.shape != r_all.shape:
        raise InvalidInputError(f"case {case_id}", f"shapes differ: {p_all.shape} {r_all.shape}")
    voxel = float(np.prod(spacing or (1.0,) * r_all.ndim)) / 1000.0
    out = []
    for label in labels:
        p, r = p_all == label, r_all == label
        out.append(
            CaseMetrics(
                case_id=case_id,
                label=int(label),
                dice=dice(p, r),
                hd95=hd95(p, r, spacing),
                asd=average_surface_distance(p, r, spacing),
                volume_ref_ml=int(r.sum()) * voxel,
                volume_diff_ml=volume_difference_ml(p, r, spacing),
            )
        )
    return out


@dataclasses.dataclass(frozen=True)
class LabelReport:
    """Per-label means over cases with 95% bootstrap CIs (NaN cases left out per metric)."""

    label: int
    name: str
    n_cases: int
    metrics: dict[str, dict[str, float | int]]

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return dataclasses.asdict(self)


def summarize(
    rows: Sequence[CaseMetrics],
    label_names: Mapping[int, str],
    *,
    groups: Mapping[str, str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> list[LabelReport]:
    """Mean of each metric per label with a cluster-bootstrap CI (clusters = ``groups``).

    Examples
    --------
    >>> rows = [CaseMetrics(f"c{i}", 1, d, 1.0, 0.5, 2.0, 0.1) for i, d in
    ...         enumerate([0.8, 0.9, 0.7, 0.85])]
    >>> r = summarize(rows, {1: "lesion"}, n_resamples=200)[0]
    >>> round(r.metrics["dice"]["value"], 4), r.metrics["dice"]["low"] <= 0.8125
    (0.8125, True)
    """
    out = []
    for label, name in label_names.items():
        mine = [r for r in rows if r.label == label]
        if not mine:
            continue
        metrics: dict[str, dict[str, float | int]] = {}
        for field in ("dice", "hd95", "asd", "volume_diff_ml"):
            vals = np.array([getattr(r, field) for r in mine], dtype=float)
            ok = np.isfinite(vals)
            if not ok.any():
                continue
            ids = [r.case_id for r, k in zip(mine, ok, strict=True) if k]
            g = [groups.get(i, i) for i in ids] if groups else ids
            res = bootstrap_ci(np.mean, vals[ok], groups=g, n_resamples=n_resamples, seed=seed)
            metrics[field] = res.as_dict() | {"n_undefined": int((~ok).sum())}
        out.append(LabelReport(label=int(label), name=name, n_cases=len(mine), metrics=metrics))
    return out


def _select(dataset: Any, split: str | None) -> tuple[Any, str]:
    parts = {c.split.value for c in dataset if c.split is not None}
    chosen = split or ("test" if "test" in parts else "all")
    if chosen == "all":
        return list(dataset), chosen
    cases = [c for c in dataset if c.split is not None and c.split.value == chosen]
    if not cases:
        raise InvalidInputError("split", f"no {chosen!r} cases (parts present: {sorted(parts)})")
    return cases, chosen


def evaluate_segmenter(
    package: Any,
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    by: Sequence[str] = (),
    n_resamples: int = 1000,
    seed: int = 0,
    tta: bool = True,
    device: str = "auto",
) -> dict[str, Any]:
    """``medsight evaluate`` for segmentation packages: metrics per label, ``report.json/html``.

    Each case is segmented through :class:`medsight.inference.segment.Segmenter` and compared
    with its mask on the original grid; clusters for the bootstrap are the patient ids.
    ``by`` (subgroup attributes) is accepted for the common signature and reported per value of
    each attribute as Dice means.  A region-based package (nested labels) is judged per region
    as well, each region the union of its labels (``dice_region_edema+core+et``, as BraTS
    reports whole tumour, tumour core and enhancing tumour).
    """
    from medsight.inference.segment import Segmenter

    cases, chosen = _select(dataset, split)
    seg = Segmenter(package, device=device, tta=tta)
    labels = {k: v for k, v in seg.plan.label_names.items() if k > 0}
    regions = seg.regions or []  # a region-based package: each region judged as a whole too
    rows: list[CaseMetrics] = []
    region_rows: list[CaseMetrics] = []  # label = the region's position + 1
    for case in cases:
        ref = case.mask()
        if ref is None:
            raise InvalidInputError(f"case {case.case_id}", "has no reference mask")
        pred = seg(case.image()).mask
        ref_arr = np.asarray(ref.array).reshape(pred.shape)
        rows += case_metrics(
            pred.array, ref_arr, list(labels), spacing=ref.spacing.tolist(), case_id=case.case_id
        )
        for i, region in enumerate(regions):
            (m,) = case_metrics(
                np.isin(pred.array, region),
                np.isin(ref_arr, region),
                [1],
                spacing=ref.spacing.tolist(),
                case_id=case.case_id,
            )
            region_rows.append(dataclasses.replace(m, label=i + 1))
    groups = {c.case_id: c.patient_id or c.case_id for c in cases}
    reports = summarize(rows, labels, groups=groups, n_resamples=n_resamples, seed=seed)
    if regions:
        from medsight.models.seg_regions import region_names

        names = region_names(regions, seg.plan.label_names)
        region_reports = summarize(
            region_rows,
            {i + 1: f"region_{nm}" for i, nm in enumerate(names)},
            groups=groups,
            n_resamples=n_resamples,
            seed=seed,
        )
    else:
        region_reports = []
    subgroups: dict[str, dict[str, Any]] = {}
    for attr in by:  # mean Dice per case (over labels), its CI or why there is none
        values = {c.case_id: str(c.attributes.get(attr)) for c in cases}
        for v in sorted(set(values.values())):
            ids = sorted({r.case_id for r in rows if values[r.case_id] == v})
            d = [np.mean([r.dice for r in rows if r.case_id == i]) for i in ids]
            ci = subgroup_mean(d, [groups[i] for i in ids], n_resamples=n_resamples, seed=seed)
            subgroups[f"{attr}={v}"] = {"dice": ci["value"], **ci}
    metrics = [
        {"name": f"{field}_{r.name}", **vals}
        for r in [*reports, *region_reports]
        for field, vals in r.metrics.items()
    ]
    report = {
        "model": package.id if hasattr(package, "id") else str(package),
        "task": "segmentation",
        "split": chosen,
        "n_cases": len(cases),
        "tta": tta,
        "postprocessing": list(seg.lcc_labels),
        "metrics": metrics,
        "labels": [r.as_dict() for r in reports],
        "subgroups": subgroups,
        "cases": [dataclasses.asdict(r) for r in rows],
    }
    if regions:  # label = the region's position + 1 in "regions"
        report |= {
            "regions": regions,
            "region_labels": [r.as_dict() for r in region_reports],
            "region_cases": [dataclasses.asdict(r) for r in region_rows],
        }
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target / "report.json", json.dumps(report, indent=1, default=float))
    write_html(target / "report.html", "segmentation_eval.html.j2", r=report)
    return report
