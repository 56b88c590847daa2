"""Exact and near duplicates, leakage across splits, and patients spread over splits.

Exact duplicates share the SHA-1 of their pixel bytes.  Near duplicates are pairs whose 64-bit
DCT perceptual hashes differ in at most ``near_dup_hamming`` bits *and* whose 32 px thumbnails
correlate strongly, before and after subtracting the data set's mean thumbnail (see
:func:`near_duplicate_pairs`; all pairs are compared, in blocks); pairs are joined into groups
(union-find).  A group spanning several splits is
leakage; a group whose members carry different labels is a label conflict.

Examples
--------
>>> _union_groups(4, [(0, 1), (1, 2)])
[[0, 1, 2]]
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from medsight.data.dataset import Dataset
from medsight.data.qc.config import QCConfig
from medsight.data.qc.findings import CheckKind, Finding, Severity
from medsight.data.scan import CaseScan

__all__ = ["check_duplicates", "check_patients", "near_duplicate_pairs"]


def _union_groups(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for a, b in pairs:
        groups[find(a)].extend((a, b))
    return [sorted(set(g)) for _, g in sorted(groups.items())]


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (``np.bitwise_count`` exists from numpy 2.0 only)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return np.unpackbits(x[..., None].view(np.uint8), axis=-1).sum(axis=-1)


def _unit_rows(m: np.ndarray) -> np.ndarray:
    m = m - m.mean(axis=1, keepdims=True)
    return m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-12)


def _thumb_rows(scans: list[CaseScan]) -> np.ndarray:
    rows = []
    for s in scans:
        t = s.thumb
        assert t is not None
        if t.ndim == 3:  # 32^3 -> 16^3 by 2x2x2 means, enough to compare volumes
            t = t.reshape(16, 2, 16, 2, 16, 2).mean(axis=(1, 3, 5))
        rows.append(t.ravel())
    return np.stack(rows).astype(np.float32)


def near_duplicate_pairs(scans: list[CaseScan], cfg: QCConfig) -> list[tuple[int, int, float]]:
    """Pairs (positions in ``scans``) of near-identical but not byte-identical images.

    A pair must pass four tests on the 32 px thumbnails:

    1. Pearson correlation ``>= near_dup_correlation``;
    2. correlation ``>= near_dup_residual`` after the data set's mean thumbnail is subtracted,
       so that what every image shares (a chest outline) does not make images look alike;
    3. pHash distance ``<= near_dup_hamming``;
    4. Euclidean distance ``<= near_dup_nn_ratio`` times the data set's median nearest-neighbour
       distance (exact duplicates aside): correlation ignores brightness, and in RetinaMNIST
       many differently exposed fundi correlate above 0.95 while lying no closer than any two
       neighbours; true repeats lie far closer (BUSI's at most 0.47 of the median).
    """
    out: list[tuple[int, int, float]] = []
    by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for k, s in enumerate(scans):
        if s.thumb is not None:
            by_shape[s.thumb.shape].append(k)
    for members in by_shape.values():
        if len(members) < 2:
            continue
        idx = np.array(members)
        values = _thumb_rows([scans[k] for k in members])
        squares = (values.astype(np.float64) ** 2).sum(axis=1)
        raw = _unit_rows(values)
        resid = _unit_rows(raw - raw.mean(axis=0, keepdims=True))
        hashes = np.array([scans[k].phash for k in members], dtype=np.uint64)
        nearest = np.full(len(idx), np.inf)
        candidates: list[tuple[int, int, float, float]] = []
        block = 512
        for start in range(0, len(idx), block):
            stop = min(start + block, len(idx))
            dist2 = (
                squares[start:stop, None] + squares[None, :] - 2.0 * (values[start:stop] @ values.T)
            )
            dist2[np.arange(stop - start), np.arange(start, stop)] = np.inf  # self
            dist2[dist2 <= 1e-6 * (1 + squares[start:stop, None])] = np.inf  # exact copies
            nearest[start:stop] = np.sqrt(np.maximum(dist2.min(axis=1), 0))
            r_raw = raw[start:stop] @ raw.T
            ok = r_raw >= cfg.near_dup_correlation
            ok &= np.arange(len(idx))[None, :] > np.arange(start, stop)[:, None]
            if not ok.any():
                continue
            rows, cols = np.nonzero(ok)  # candidates: usually few, so test them pair by pair
            rows_g = rows + start
            keep = np.einsum("ij,ij->i", resid[rows_g], resid[cols]) >= cfg.near_dup_residual
            keep &= _popcount(hashes[rows_g] ^ hashes[cols]) <= cfg.near_dup_hamming
            for a, b in zip(rows[keep], cols[keep], strict=True):
                d = float(np.sqrt(max(dist2[a, b], 0.0))) if np.isfinite(dist2[a, b]) else 0.0
                candidates.append((start + int(a), int(b), float(r_raw[a, b]), d))
        finite = nearest[np.isfinite(nearest)]
        limit = np.inf  # too few images for a typical neighbour distance: tests 1-3 decide
        if finite.size >= 10:
            limit = cfg.near_dup_nn_ratio * float(np.median(finite))
        for a, b, r, d in candidates:
            i, j = int(idx[a]), int(idx[b])
            if d <= limit and scans[i].digest != scans[j].digest:
                out.append((i, j, r))
    return out


def _group_finding(kind: CheckKind, members: list[CaseScan], ds: Dataset, extra: str) -> Finding:
    splits = sorted({m.split for m in members if m.split})
    labels = sorted({m.stratum for m in members})
    named = [ds.label_names.get(int(x), x) if x.isdigit() else x for x in labels]
    has_patients = any(m.patient_id != m.case_id for m in members)
    patients = sorted({m.patient_id for m in members}) if has_patients else []
    across = len(splits) > 1
    conflict = len(labels) > 1 and "none" not in labels
    several_patients = len(patients) > 1
    what = "identical" if kind is CheckKind.EXACT_DUPLICATE else "near-identical"
    msg = f"{len(members)} {what} images{extra}"
    if several_patients:
        msg += f", under {len(patients)} patient ids {', '.join(patients)}"
    if across:
        msg += f", across splits {', '.join(splits)} (leakage)"
    if conflict:
        msg += f", with different labels {', '.join(map(str, named))}"
    return Finding(
        kind=kind,
        severity=Severity.ERROR if across or conflict or several_patients else Severity.WARNING,
        message=msg,
        files=[m.file for m in members],
        case_ids=[m.case_id for m in members],
        details={"splits": splits, "labels": named, "patients": patients,
                 "across_splits": across, "conflicting_labels": conflict,
                 "several_patients": several_patients},
    )  # fmt: skip


def check_duplicates(ds: Dataset, scans: list[CaseScan], cfg: QCConfig) -> list[Finding]:
    """Exact and near duplicate groups, plus summary leakage and label-conflict findings."""
    ok = [s for s in scans if s.ok]
    findings: list[Finding] = []
    by_digest: dict[str, list[CaseScan]] = defaultdict(list)
    for s in ok:
        by_digest[s.digest].append(s)
    for members in by_digest.values():
        if len(members) > 1:
            findings.append(_group_finding(CheckKind.EXACT_DUPLICATE, members, ds, ""))
    pairs = near_duplicate_pairs(ok, cfg)
    best: dict[int, float] = defaultdict(float)
    for i, j, r in pairs:
        best[i] = max(best[i], r)
        best[j] = max(best[j], r)
    for group in _union_groups(len(ok), [(i, j) for i, j, _ in pairs]):
        r = min(best[g] for g in group)
        f = _group_finding(
            CheckKind.NEAR_DUPLICATE, [ok[g] for g in group], ds, f" (thumbnail r >= {r:.3f})"
        )
        findings.append(f)
    leaks = [f for f in findings if f.details["across_splits"]]
    if leaks:
        findings.append(
            Finding(
                kind=CheckKind.SPLIT_LEAKAGE,
                severity=Severity.ERROR,
                message=f"{len(leaks)} groups of identical or near-identical images span "
                "several splits",
                files=[x for f in leaks for x in f.files],
                case_ids=[x for f in leaks for x in f.case_ids],
                details={"groups": [f.files for f in leaks]},
            )
        )
    conflicts = [f for f in findings if f.details.get("conflicting_labels")]
    if conflicts:
        findings.append(
            Finding(
                kind=CheckKind.CONFLICTING_LABELS,
                severity=Severity.ERROR,
                message=f"{len(conflicts)} groups of identical or near-identical images carry "
                "different labels",
                files=[x for f in conflicts for x in f.files],
                case_ids=[x for f in conflicts for x in f.case_ids],
                details={
                    "groups": [{"files": f.files, "labels": f.details["labels"]} for f in conflicts]
                },
            )
        )
    return findings


def check_patients(ds: Dataset, scans: list[CaseScan], cfg: QCConfig) -> list[Finding]:
    """Patients in several splits, and (information) patients with several images."""
    if all(s.patient_id == s.case_id for s in scans):
        return []  # the data set carries no patient ids
    by_patient: dict[str, list[CaseScan]] = defaultdict(list)
    for s in scans:
        by_patient[s.patient_id].append(s)
    findings = []
    spread = {p: m for p, m in by_patient.items() if len({x.split for x in m if x.split}) > 1}
    if spread:
        findings.append(
            Finding(
                kind=CheckKind.PATIENT_IN_SEVERAL_SPLITS,
                severity=Severity.ERROR,
                message=f"{len(spread)} patients have images in several splits",
                files=[x.file for m in spread.values() for x in m],
                case_ids=[x.case_id for m in spread.values() for x in m],
                details={p: sorted({x.split for x in m if x.split}) for p, m in spread.items()},
            )
        )
    several = {p: m for p, m in by_patient.items() if len(m) > 1}
    if several:
        n_images = sum(len(m) for m in several.values())
        findings.append(
            Finding(
                kind=CheckKind.SEVERAL_IMAGES_PER_PATIENT,
                severity=Severity.INFO,
                message=f"{len(several)} of {len(by_patient)} patients have several images "
                f"({n_images} images): split by patient, not by image",
                files=[x.file for m in several.values() for x in m],
                case_ids=[x.case_id for m in several.values() for x in m],
                details={"images_per_patient": {p: len(m) for p, m in several.items()}},
            )
        )
    return findings
