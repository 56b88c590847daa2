"""Group-aware operating points and the measurement of bias mitigation (binary models).

Two parts:

- :func:`fit_group_thresholds`: per-group thresholds fitted on validation predictions for
  equal sensitivity.  The target is the sensitivity the package's global threshold reaches on
  the whole validation set; each group with enough positives and negatives
  (:data:`~medsight.evaluation.estimability.MIN_PER_CLASS` each) gets its highest threshold
  whose sensitivity reaches the target (so, among the thresholds meeting the target, the one
  with the best specificity).  This is the deterministic counterpart of Fairlearn's
  ``ThresholdOptimizer(constraints="true_positive_rate_parity")``: that optimiser randomises
  between two thresholds per group to meet its constraint exactly, which is not acceptable
  for a clinical decision (two identical cases could get different answers); here a case's
  decision depends only on its score and its group.  Groups too small keep the global
  threshold, and the package says so.
- :func:`compare_methods`: for several methods' predictions on the same test cases (e.g. no
  mitigation, reweighting, group-balanced sampling, group thresholds), the subgroup gaps
  (sensitivity, specificity and AUC: first group minus second, or the largest minus smallest
  with more groups) and the overall accuracy and AUC, each with a patient-level bootstrap CI,
  and each method's change against the reference method with a *paired* bootstrap CI (the
  same resampled patients for every method, so the spread of the test set cancels).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 2, 400); sex = np.array(["F", "M"] * 200)
>>> score = np.clip(0.5 * y + rng.normal(0.25, 0.2, 400) - 0.15 * (sex == "F") * y, 0, 1)
>>> gt = fit_group_thresholds(y, score, sex, 0.5, label="yes")
>>> gt.thresholds["F"] < gt.thresholds["M"]    # F positives score lower: a lower threshold
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medsight.core.errors import InvalidInputError
from medsight.evaluation import classification as cm
from medsight.evaluation.estimability import MIN_PER_CLASS, MIN_VALID_FRACTION, check_ci
from medsight.models.group_thresholds import GroupThresholds

__all__ = ["compare_methods", "fit_group_thresholds", "group_gaps"]


def fit_group_thresholds(
    y: ArrayLike,
    score: ArrayLike,
    values: Sequence[object] | ArrayLike,
    global_threshold: float,
    *,
    attribute: str = "group",
    label: str = "1",
    min_per_class: int = MIN_PER_CLASS,
    split: str = "val",
) -> GroupThresholds:
    """Per-group thresholds for equal sensitivity at the global threshold's sensitivity.

    Parameters
    ----------
    y, score : array_like
        Validation labels (0/1) and calibrated positive-class probabilities.
    values : sequence
        Each case's group value (``None`` / ``""`` where unknown: not used for any group).
    global_threshold : float
        The package's threshold; its validation sensitivity is the target.

    Raises
    ------
    InvalidInputError
        Lengths differ, or there are no positives to set a target.
    """
    yy = np.asarray(y).astype(np.int64).reshape(-1)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    vals = np.array(["" if v is None else str(v) for v in values], dtype=object)
    if not len(yy) == len(s) == len(vals):
        raise InvalidInputError("group thresholds", f"lengths {len(yy)}, {len(s)}, {len(vals)}")
    if not (yy == 1).any():
        raise InvalidInputError("group thresholds", "the validation set has no positives")
    target = cm.sensitivity(yy, s >= global_threshold)
    thresholds: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    skipped: dict[str, str] = {}
    for v in sorted(set(vals) - {""}):
        mine = vals == v
        pos = np.sort(s[mine & (yy == 1)])[::-1]
        n_pos, n_neg = int(pos.size), int((mine & (yy == 0)).sum())
        counts[v] = {"positives": n_pos, "negatives": n_neg}
        if n_pos < min_per_class or n_neg < min_per_class:
            skipped[v] = (
                f"{n_pos} positives, {n_neg} negatives on {split} "
                f"(needs {min_per_class} each): global threshold"
            )
            continue
        k = max(1, math.ceil(target * n_pos - 1e-9))  # positives that must reach the threshold
        thresholds[v] = float(pos[k - 1])
    return GroupThresholds(
        attribute=attribute,
        label=label,
        target_sensitivity=float(target),
        global_threshold=float(global_threshold),
        thresholds=thresholds,
        counts=counts,
        skipped=skipped,
        split=split,
    )


def _auc(y: NDArray[np.int64], score: NDArray[np.float64]) -> float:
    """Mann-Whitney AUC with mid-ranks (as :func:`~medsight.evaluation.classification.roc_auc`,
    vectorised for the bootstrap); NaN with one class only."""
    from scipy.stats import rankdata

    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _rates(y: NDArray[np.int64], d: NDArray[np.int64]) -> tuple[float, float]:
    pos, neg = y == 1, y == 0
    sens = float(d[pos].mean()) if pos.any() else float("nan")
    spec = float(1 - d[neg].mean()) if neg.any() else float("nan")
    return sens, spec


def group_gaps(
    y: NDArray[np.int64],
    score: NDArray[np.float64],
    decision: NDArray[np.int64],
    vals: NDArray[Any],
    order: Sequence[str],
) -> dict[str, float]:
    """Overall accuracy / AUC / sensitivity / specificity and the gaps between the groups in
    ``order`` (two groups: first minus second; more: largest minus smallest); NaN where a
    value is undefined (a group without positives, say)."""
    out = {"accuracy": float(np.mean(decision == y)), "auc": _auc(y, score)}
    out["sensitivity"], out["specificity"] = _rates(y, decision)
    per: dict[str, list[float]] = {"sensitivity": [], "specificity": [], "auc": []}
    for v in order:
        m = vals == v
        sens, spec = _rates(y[m], decision[m])
        for k, x in (("sensitivity", sens), ("specificity", spec), ("auc", _auc(y[m], score[m]))):
            per[k].append(x)
    for k, xs in per.items():
        if len(xs) == 2:
            out[f"{k}_gap"] = xs[0] - xs[1]
        else:
            out[f"{k}_gap"] = max(xs) - min(xs) if all(np.isfinite(xs)) else float("nan")
    return out


def _interval(stats: list[float], n_resamples: int) -> tuple[float | None, float | None, int]:
    finite = [x for x in stats if np.isfinite(x)]
    if not finite:
        return None, None, 0
    low, high = np.quantile(finite, [0.025, 0.975])
    return float(low), float(high), len(finite)


def compare_methods(
    y: ArrayLike,
    methods: Mapping[str, tuple[ArrayLike, ArrayLike]],
    values: Sequence[object],
    patients: Sequence[object],
    *,
    reference: str = "none",
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Subgroup gaps and overall accuracy / AUC per method, with patient-level bootstrap CIs,
    and each method's change against ``reference`` with paired bootstrap CIs.

    Parameters
    ----------
    y : array_like
        Test labels (0/1).
    methods : mapping
        Method name -> ``(score, decision)`` on the same cases, in the same order.
    values : sequence
        Each case's group value; cases without one count in the overall metrics only.
    patients : sequence
        Patient id per case: whole patients are resampled.

    Returns
    -------
    dict
        ``{"groups": [...], "counts": {...}, "methods": {name: {stat: {value, ci_low,
        ci_high, estimable, ci_note}}}, "change_vs_<reference>": {name: {stat: {...}}}}``.
        A gap's CI is not estimable when a group has fewer than ``MIN_PER_CLASS`` positives
        (sensitivity) / negatives (specificity) / both (AUC), or when the gap was undefined in
        more than ``1 - MIN_VALID_FRACTION`` of the resamples.  A change's CI that includes 0
        means these data cannot show that the method changed it.
    """
    yy = np.asarray(y).astype(np.int64).reshape(-1)
    vals = np.array(["" if v is None else str(v) for v in values], dtype=object)
    order = sorted(set(vals) - {""})
    if reference not in methods:
        raise InvalidInputError("reference", f"{reference!r} is not one of {sorted(methods)}")
    if len(order) < 2:
        raise InvalidInputError("groups", f"need two groups with a value, got {order}")
    arrays = {
        k: (np.asarray(s, dtype=np.float64).reshape(-1), np.asarray(d).astype(np.int64))
        for k, (s, d) in methods.items()
    }
    if any(len(s) != len(yy) or len(d) != len(yy) for s, d in arrays.values()):
        raise InvalidInputError("methods", "every method needs a score and a decision per case")
    counts = {
        v: {"n": int((vals == v).sum()), "positives": int(((vals == v) & (yy == 1)).sum())}
        | {"negatives": int(((vals == v) & (yy == 0)).sum())}
        for v in order
    }
    point = {k: group_gaps(yy, s, d, vals, order) for k, (s, d) in arrays.items()}
    _, inverse = np.unique(np.asarray(list(map(str, patients)), dtype=object), return_inverse=True)
    clusters = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    rng = np.random.default_rng(seed)
    boot: dict[str, list[dict[str, float]]] = {k: [] for k in arrays}
    for _ in range(n_resamples):
        idx = np.concatenate([clusters[c] for c in rng.integers(0, len(clusters), len(clusters))])
        for k, (s, d) in arrays.items():
            boot[k].append(group_gaps(yy[idx], s[idx], d[idx], vals[idx], order))

    def needs_for(stat: str) -> str:
        base = stat.removesuffix("_gap")
        return {"sensitivity": "positives", "specificity": "negatives", "auc": "both"}.get(base, "")

    def size_ok(stat: str) -> tuple[bool, str]:
        need = needs_for(stat)
        if not stat.endswith("_gap"):
            total = {"positives": int((yy == 1).sum()), "negatives": int((yy == 0).sum())}
            verdict = check_ci(len(yy), needs=need, **total)
            return verdict.estimable, verdict.note
        for v in order:
            c = counts[v]
            verdict = check_ci(
                c["n"], positives=c["positives"], negatives=c["negatives"], needs=need
            )
            if not verdict.estimable:
                return False, f"group {v}: {verdict.note}"
        return True, ""

    def summary(value: float, stats: list[float], stat: str) -> dict[str, Any]:
        ok, note = size_ok(stat)
        low, high, n_valid = _interval(stats, n_resamples)
        if ok and n_valid < MIN_VALID_FRACTION * n_resamples:
            ok, note = False, f"not estimable: defined in only {n_valid} of {n_resamples} resamples"
        if ok and low is not None and high is not None and high - low <= 0:
            ok, note = False, "not estimable: the same value in every resample (zero width)"
        return {
            "value": float(value) if np.isfinite(value) else None,
            "ci_low": low if ok else None,
            "ci_high": high if ok else None,
            "estimable": ok,
            "ci_note": note,
            "n_valid": n_valid,
        }

    stats = list(point[reference])
    report: dict[str, Any] = {
        "groups": order,
        "gap_definition": (
            f"{order[0]} minus {order[1]}" if len(order) == 2 else "largest minus smallest group"
        ),
        "counts": counts,
        "n_cases": len(yy),
        "n_patients": len(clusters),
        "bootstrap": {"n_resamples": n_resamples, "seed": seed, "level": "patient", "paired": True},
        "methods": {},
        f"change_vs_{reference}": {},
    }
    for k in arrays:
        report["methods"][k] = {
            st: summary(point[k][st], [b[st] for b in boot[k]], st) for st in stats
        }
        if k == reference:
            continue
        change = {}
        for st in stats:
            diffs = [b[st] - r[st] for b, r in zip(boot[k], boot[reference], strict=True)]
            change[st] = summary(point[k][st] - point[reference][st], diffs, st)
            if st.endswith("_gap"):  # is the gap smaller in size? |gap| of method - of reference
                absd = [
                    abs(b[st]) - abs(r[st]) for b, r in zip(boot[k], boot[reference], strict=True)
                ]
                change[f"abs_{st}"] = summary(
                    abs(point[k][st]) - abs(point[reference][st]), absd, st
                )
        report[f"change_vs_{reference}"][k] = change
    return report
