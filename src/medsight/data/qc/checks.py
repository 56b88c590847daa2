"""Quality checks other than duplicates: files, masks, boxes, labels, intensities, geometry,
sites/views/scanners and clinical attributes.

Each check is a function ``(dataset, scans, config) -> list[Finding]`` listed in
:data:`CHECKS`, the explicit registry :func:`medsight.data.qc.run_qc` runs in order.

Examples
--------
>>> _scale_regimes([1.0, 1.2, 4.5, 4.6], gap=1.0)
[[0, 1], [2, 3]]
>>> bool(robust_z(np.array([1.0, 1.1, 0.9, 1.0, 9.0]))[-1] > 6)
True
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable

import numpy as np

from medsight.data.dataset import Dataset, Task
from medsight.data.qc.config import QCConfig
from medsight.data.qc.duplicates import check_duplicates, check_patients
from medsight.data.qc.findings import CheckKind, Finding, Severity
from medsight.data.scan import CaseScan, class_counts

__all__ = ["CHECKS", "Check", "robust_z"]

Check = Callable[[Dataset, list[CaseScan], QCConfig], list[Finding]]

#: Attributes whose absence matters clinically (subgroup analysis, fairness, reports).
CLINICAL_KEYS = ("age", "sex", "view", "site", "location", "scanner", "survival", "outcome")
#: Attributes that name where or how an image was acquired.
GROUP_KEYS = ("site", "location", "view", "scanner", "manufacturer", "institution")


def robust_z(values: np.ndarray) -> np.ndarray:
    """|x - median| / (1.4826 MAD); a zero MAD falls back to the mean absolute deviation."""
    med = np.median(values)
    dev = np.abs(values - med)
    scale = 1.4826 * np.median(dev)
    if scale <= 0:
        scale = float(np.mean(dev)) or 1.0
    return dev / scale


def _finding(
    kind: CheckKind, sev: Severity, msg: str, scans: list[CaseScan], **details: object
) -> Finding:
    return Finding(
        kind=kind,
        severity=sev,
        message=msg,
        files=[s.file for s in scans],
        case_ids=[s.case_id for s in scans],
        details=dict(details),
    )


def _with_masks(ds: Dataset, finding: Finding) -> Finding:
    """The finding with each case's mask files added after its image file."""
    files = []
    for case_id, main in zip(finding.case_ids, finding.files, strict=True):
        files.append(main)
        files.extend(f for f in ds.files_of(case_id).values() if f != main)
    return finding.model_copy(update={"files": files})


_LAYOUT_SEVERITY = {"unreadable": Severity.ERROR, "missing_label": Severity.WARNING}


def check_layout(ds: Dataset, scans: list[CaseScan], cfg: QCConfig) -> list[Finding]:
    """Problems the adapter met while listing files, and files that could not be read."""
    out = [
        Finding(
            kind=CheckKind(issue.kind),
            severity=_LAYOUT_SEVERITY.get(issue.kind, Severity.WARNING),
            message=issue.message,
            files=list(issue.files),
        )
        for issue in ds.layout_issues
    ]
    bad = [s for s in scans if not s.ok]
    if bad:
        out.append(
            _finding(
                CheckKind.UNREADABLE, Severity.ERROR, f"{len(bad)} images cannot be read", bad,
                errors={s.file: s.error for s in bad},
            )
        )  # fmt: skip
    return out


def _is_negative(stratum: str, ds: Dataset, cfg: QCConfig) -> bool:
    name = ds.label_names.get(int(stratum), stratum) if stratum.isdigit() else stratum
    return str(name).lower() in cfg.negative_classes


def check_masks(ds: Dataset, scans: list[CaseScan], cfg: QCConfig) -> list[Finding]:
    """Mask size/geometry mismatches, empty masks of positive cases, unexpected values."""
    with_mask = [s for s in scans if s.mask is not None]

    def _mask_finding(*args: object, **kwargs: object) -> Finding:
        return _with_masks(ds, _finding(*args, **kwargs))  # type: ignore[arg-type]

    out: list[Finding] = []
    unreadable = [s for s in with_mask if s.mask.error]
    if unreadable:
        out.append(_mask_finding(CheckKind.MASK_UNREADABLE, Severity.ERROR,
                            f"{len(unreadable)} masks cannot be read or merged", unreadable,
                            errors={s.file: s.mask.error for s in unreadable}))  # fmt: skip
    good = [s for s in with_mask if not s.mask.error and s.ok]
    shape = [s for s in good if not s.mask.same_shape]
    if shape:
        out.append(_mask_finding(CheckKind.MASK_SHAPE_MISMATCH, Severity.ERROR,
                            f"{len(shape)} masks differ in size from their image", shape,
                            sizes={s.file: [list(s.shape), list(s.mask.shape or ())]
                                   for s in shape}))  # fmt: skip
    geom = [s for s in good if s.mask.same_shape and not s.mask.same_geometry]
    if geom:
        out.append(_mask_finding(CheckKind.MASK_GEOMETRY_MISMATCH, Severity.ERROR,
                            f"{len(geom)} masks have another affine (spacing, origin or "
                            "direction) than their image", geom))  # fmt: skip
    allowed = set(ds.label_names) if ds.task is Task.SEGMENTATION and ds.label_names else {0, 1}
    odd = [s for s in good if set(s.mask.values) - allowed]
    if odd:
        out.append(_mask_finding(CheckKind.MASK_VALUES, Severity.ERROR,
                            f"{len(odd)} masks hold values outside {sorted(allowed)}", odd,
                            values={s.file: sorted(set(s.mask.values) - allowed)
                                    for s in odd}))  # fmt: skip
    empty = [s for s in good if set(s.mask.values) <= {0}]
    empty_pos = [s for s in empty if not _is_negative(s.stratum, ds, cfg)]
    if empty_pos:
        out.append(
            _mask_finding(
                CheckKind.EMPTY_MASK,
                Severity.ERROR,
                f"{len(empty_pos)} masks of positive cases are empty",
                empty_pos,
            )
        )
    empty_ids = {id(s) for s in empty}
    neg_full = [s for s in good if id(s) not in empty_ids and _is_negative(s.stratum, ds, cfg)]
    if neg_full:
        out.append(_mask_finding(CheckKind.CONFLICTING_LABELS, Severity.WARNING,
                            f"{len(neg_full)} images of a negative class have a non-empty mask",
                            neg_full))  # fmt: skip
    if ds.task is Task.SEGMENTATION:
        no_mask = [s for s in scans if s.mask is None and not _is_negative(s.stratum, ds, cfg)
                   and s.split != "test"]  # fmt: skip
        if no_mask:
            out.append(_mask_finding(CheckKind.MISSING_LABEL, Severity.WARNING,
                                f"{len(no_mask)} images have no mask", no_mask))  # fmt: skip
    return out


def check_boxes(ds: Dataset, scans: list[CaseScan], cfg: QCConfig) -> list[Finding]:
    """Boxes outside their image, or with no area."""
    bad = []
    for s in scans:
        if not s.boxes or not s.ok:
            continue
        w, h = s.shape[0], s.shape[1]
        if any(
            b.i0 < -1 or b.j0 < -1 or b.i1 > w + 1 or b.j1 > h + 1 or b.area <= 0 for b in s.boxes
        ):
            bad.append(s)
    if not bad:
        return []
    return [
        _finding(
            CheckKind.BOX_OUT_OF_IMAGE,
            Severity.WARNING,
            f"{len(bad)} images have boxes outside the image or without area",
            bad,
        )
    ]


def check_imbalance(ds: Dataset, scans: list[CaseScan], cfg: QCConfig) -> list[Finding]:
    """Classes much rarer than the most common one (over all cases and per split)."""
    out = []
    for split in [None, *sorted({s.split for s in scans if s.split})]:
        part = [s for s in scans if split is None or s.split == split]
        counts = class_counts(ds, part)
        if len(counts) < 2:
            continue
        top = max(counts.values())
        rare = {k: v for k, v in counts.items() if v / top < cfg.imbalance_ratio}
        if rare:
            where = "" if split is None else f" in split {split}"
            ratio = min(counts.values()) / top
            members = [s for s in part if set(class_counts(ds, [s])) & set(rare)]
            out.append(
                _finding(
                    CheckKind.LABEL_IMBALANCE,
                    Severity.WARNING,
                    f"label imbalance{where}: rarest/most common = {ratio:.2f}; "
                    + ", ".join(f"{k}: {v}" for k, v in counts.items())
                    + " (files: the rare classes' images)",
                    members,
                    split=split,
                    counts=counts,
                    rare=rare,
                )
            )
        if split is None and len(scans) > 2000:
            break  # per-split imbalance mirrors the whole for large official splits
    return out


def _majority_finding(
    kind: CheckKind,
    what: str,
    key: Callable[[CaseScan], object],
    scans: list[CaseScan],
    sev: Severity = Severity.WARNING,
) -> list[Finding]:
    ok = [s for s in scans if s.ok]
    counts = Counter(str(key(s)) for s in ok)
    if len(counts) < 2:
        return []
    common = counts.most_common(1)[0][0]
    others = [s for s in ok if str(key(s)) != common]
    examples = {v: next(s.file for s in ok if str(key(s)) == v) for v in counts}
    return [_finding(kind, sev, f"mixed {what}: " + ", ".join(f"{v} x{n}" for v, n in
                     counts.most_common()) + f"; {len(others)} images differ from {common}",
                     others, counts=dict(counts), examples=examples)]  # fmt: skip


def _scale_regimes(logs: list[float], gap: float) -> list[list[int]]:
    order = np.argsort(logs)
    regimes, current = [], [int(order[0])]
    for prev, nxt in itertools.pairwise(order):
        if logs[nxt] - logs[prev] > gap:
            regimes.append(current)
            current = []
        current.append(int(nxt))
    regimes.append(current)
    return regimes


def check_intensity(ds: Dataset, scans: list[CaseScan], cfg: QCConfig) -> list[Finding]:
    """Dtype and channel mixes, intensity scales (orders of magnitude) and outliers."""
    ok = [s for s in scans if s.ok and s.channels]
    out = _majority_finding(CheckKind.DTYPE_MIX, "data types", lambda s: s.dtype, ok)
    out += _majority_finding(CheckKind.CHANNEL_MIX, "channel counts", lambda s: s.n_channels, ok)
    if len(ok) < 3:
        return out
    logs = [float(np.log10(max(abs(s.channels[0].p99), abs(s.channels[0].max), 1e-6))) for s in ok]
    regimes = _scale_regimes(logs, cfg.scale_gap)
    main = max(regimes, key=len)
    if len(regimes) > 1:
        minor = [ok[i] for r in regimes if r is not main for i in r]
        desc = [{"count": len(r), "max_range": [float(10 ** min(logs[i] for i in r)),
                 float(10 ** max(logs[i] for i in r))], "examples": [ok[i].file for i in r[:3]]}
                for r in regimes]  # fmt: skip
        out.append(_finding(CheckKind.INTENSITY_SCALE_MIX, Severity.WARNING,
                            f"{len(regimes)} intensity scales differing by 10x or more: "
                            + "; ".join(f"{d['count']} images up to ~{d['max_range'][1]:.3g}"
                                        for d in desc), minor, regimes=desc))  # fmt: skip
    base = [ok[i] for i in main]
    means = np.array([s.channels[0].mean for s in base])
    stds = np.array([s.channels[0].std for s in base])
    z = np.maximum(robust_z(means), robust_z(stds))
    flagged = [s for s, zz in zip(base, z, strict=True) if zz > cfg.outlier_z]
    blank = [s for s in ok if all(c.max == c.min for c in s.channels)]
    flagged += [s for s in blank if s not in flagged]
    if flagged:
        out.append(_finding(CheckKind.INTENSITY_OUTLIER, Severity.WARNING,
                            f"{len(flagged)} images with outlying mean or contrast (robust z > "
                            f"{cfg.outlier_z:g}) or constant pixels", flagged,
                            constant=[s.file for s in blank]))  # fmt: skip
    return out


def check_geometry(ds: Dataset, scans: list[CaseScan], cfg: QCConfig) -> list[Finding]:
    """Size and spacing outliers, spacing and orientation mixes."""
    ok = [s for s in scans if s.ok]
    out: list[Finding] = []
    if len(ok) < 3:
        return out
    for kind, attr, ratio, what in (
        (CheckKind.SIZE_OUTLIER, "shape", cfg.size_ratio, "size"),
        (CheckKind.SPACING_OUTLIER, "spacing", cfg.spacing_ratio, "spacing"),
    ):
        same_dim = [s for s in ok if len(getattr(s, attr)) == len(getattr(ok[0], attr))]
        values = np.array([getattr(s, attr) for s in same_dim], dtype=float)
        med = np.median(values, axis=0)
        rel = values / np.where(med > 0, med, 1)
        bad = [s for s, r in zip(same_dim, rel, strict=True)
               if np.any(r > ratio) or np.any(r < 1 / ratio)]  # fmt: skip
        if bad:
            out.append(_finding(kind, Severity.WARNING,
                                f"{len(bad)} images with a {what} over {ratio:g}x from the "
                                f"median {med.round(3).tolist()}", bad,
                                values={s.file: list(getattr(s, attr)) for s in bad}))  # fmt: skip
    out += _majority_finding(CheckKind.SPACING_MIX, "spacings", lambda s: s.spacing, ok,
                             Severity.INFO)  # fmt: skip
    out += _majority_finding(CheckKind.ORIENTATION_MIX, "orientations", lambda s: s.orientation,
                             ok)  # fmt: skip
    return out


def check_groups(ds: Dataset, scans: list[CaseScan], cfg: QCConfig) -> list[Finding]:
    """Sites, views or scanners whose images differ in intensity or size from the rest."""
    ok = {s.case_id: s for s in scans if s.ok and s.channels}
    out = []
    keys = [k for k in GROUP_KEYS if any(k in c.attributes for c in ds)]
    for key in keys:
        groups: dict[str, list[CaseScan]] = defaultdict(list)
        for case in ds:
            value = case.attributes.get(key)
            if value is not None and case.case_id in ok:
                groups[str(value)].append(ok[case.case_id])
        if len(groups) > 1:  # say where the images come from, even for small groups
            sizes = Counter({g: len(m) for g, m in groups.items()})
            common = sizes.most_common(1)[0][0]
            others = [s for g, m in groups.items() if g != common for s in m]
            listing = ", ".join(f"{g} x{n}" for g, n in sizes.most_common(5))
            more = f" and {len(sizes) - 5} more" if len(sizes) > 5 else ""
            out.append(_finding(CheckKind.PROTOCOL_VARIABILITY, Severity.INFO,
                                f"{key}: images come from {len(sizes)} groups ({listing}{more}); "
                                f"{len(others)} images are not from {common}", others,
                                attribute=key, counts=dict(sizes)))  # fmt: skip
        groups = {g: m for g, m in groups.items() if len(m) >= cfg.min_group}
        if len(groups) < 2:
            continue
        shifted: dict[str, dict[str, dict[str, float]]] = {}
        for label, get in (("mean intensity", lambda s: s.channels[0].mean),
                           ("contrast (std)", lambda s: s.channels[0].std),
                           ("pixels", lambda s: float(np.prod(s.shape)))):  # fmt: skip
            values = {g: np.array([get(s) for s in m]) for g, m in groups.items()}
            spread = float(np.median([1.4826 * np.median(np.abs(v - np.median(v)))
                                      for v in values.values()]))  # fmt: skip
            if spread <= 0:
                continue
            for g, v in values.items():
                rest = np.concatenate([w for h, w in values.items() if h != g])
                shift = abs(float(np.median(v)) - float(np.median(rest))) / spread
                if shift > cfg.group_shift:
                    shifted.setdefault(g, {})[label] = {
                        "group_median": float(np.median(v)),
                        "others_median": float(np.median(rest)),
                        "shift_in_within_group_mads": round(shift, 2),
                    }
        if shifted:
            flagged = [s for g in shifted for s in groups[g]]
            out.append(_finding(CheckKind.PROTOCOL_VARIABILITY, Severity.WARNING,
                                f"{key}: {len(shifted)} of {len(groups)} groups differ from the "
                                "others by more than "
                                f"{cfg.group_shift:g} within-group MADs (" + "; ".join(
                                    f"{g} (n={len(groups[g])}): {', '.join(v)}"
                                    for g, v in list(shifted.items())[:6]) + ")",
                                flagged, attribute=key, groups=shifted))  # fmt: skip
    return out


def check_attributes(ds: Dataset, scans: list[CaseScan], cfg: QCConfig) -> list[Finding]:
    """Clinical attributes missing for some cases (empty, placeholder or absent)."""
    by_id = {s.case_id: s for s in scans}
    present = {k for c in ds for k in c.attributes}
    out = []
    for key in CLINICAL_KEYS:
        if key not in present:
            continue
        missing = [by_id[c.case_id] for c in ds if c.attributes.get(key) in (None, "", "?")]
        if missing:
            out.append(_finding(CheckKind.MISSING_ATTRIBUTE, Severity.WARNING,
                                f"{key} is missing for {len(missing)} of {len(ds)} images",
                                missing, attribute=key))  # fmt: skip
    return out


#: The checks run_qc runs, in order (the explicit registry).
CHECKS: dict[str, Check] = {
    "layout": check_layout,
    "duplicates": check_duplicates,
    "patients": check_patients,
    "masks": check_masks,
    "boxes": check_boxes,
    "imbalance": check_imbalance,
    "intensity": check_intensity,
    "geometry": check_geometry,
    "groups": check_groups,
    "attributes": check_attributes,
}
