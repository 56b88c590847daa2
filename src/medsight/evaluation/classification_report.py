"""Classification results with bootstrap CIs, calibration and subgroups, as plain data.

:func:`classification_metrics` turns labels and calibrated probabilities into the metric set
the task calls for (binary: AUC, accuracy, sensitivity, specificity, PPV, NPV, F1 at the
operating threshold; multi-class and ordinal: macro AUC, accuracy, per-class values, and for
ordinal grades quadratic weighted kappa; multi-label: per-label and macro AUC), each with a
patient-level bootstrap 95% CI.  :func:`subgroup_metrics` repeats the core metrics per value
of an attribute and reports the largest gap between groups.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 1] * 20); p = np.where(y == 1, 0.7, 0.3); p[:4] = 0.5
>>> res = classification_metrics("binary", y, np.c_[1 - p, p], {"1": 0.6},
...                              n_resamples=50)
>>> [m.name for m in res][:3], res[0].value
(['auc', 'accuracy', 'sensitivity'], 0.995)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medsight.core.errors import InvalidInputError
from medsight.evaluation import classification as cm
from medsight.evaluation.bootstrap import bootstrap_ci
from medsight.evaluation.calibration import expected_calibration_error
from medsight.inference.decision import predict_labels  # re-exported: evaluation scores it

__all__ = [
    "MetricResult",
    "calibration_inputs",
    "classification_metrics",
    "predict_labels",
    "subgroup_lines",
    "subgroup_metrics",
]

_SINGLE_LABEL = {"binary", "multiclass", "ordinal"}


@dataclasses.dataclass(frozen=True)
class MetricResult:
    """One metric value with its 95% bootstrap interval."""

    name: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dataclasses.asdict(self)


def calibration_inputs(
    task: str, y: ArrayLike, proba: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(outcome, confidence)`` pairs for ECE and reliability diagrams.

    Binary: the positive label and its probability; multi-class: whether the arg-max class is
    right and its probability; multi-label: every (case, label) pair.
    """
    yy = np.asarray(y)
    p = np.asarray(proba, dtype=np.float64)
    if task == "binary":
        return yy.astype(np.float64), p[:, 1]
    if task == "multilabel":
        return yy.reshape(-1).astype(np.float64), p.reshape(-1)
    pred = p.argmax(axis=1)
    return (pred == yy).astype(np.float64), p.max(axis=1)


def _metric_table(
    task: str, n_classes: int, thresholds: Mapping[str, float], label_names: Sequence[str]
) -> dict[str, Callable[..., float]]:
    """name -> metric(y, proba)."""
    table: dict[str, Callable[..., float]] = {}

    def decided(f: Callable[..., float]) -> Callable[..., float]:
        return lambda y, p: f(y, predict_labels(task, p, thresholds, label_names or None))

    if task == "binary":
        table["auc"] = lambda y, p: cm.roc_auc(y, p[:, 1])
        for name, f in (
            ("accuracy", cm.accuracy),
            ("sensitivity", cm.sensitivity),
            ("specificity", cm.specificity),
            ("ppv", cm.ppv),
            ("npv", cm.npv),
            ("f1", cm.f1_score),
        ):
            table[name] = decided(f)
    elif task in {"multiclass", "ordinal"}:
        table["auc_macro"] = cm.macro_auc
        table["accuracy"] = decided(cm.accuracy)
        if task == "ordinal":
            table["qwk"] = decided(
                lambda y, d: cm.quadratic_weighted_kappa(y, d, n_classes=n_classes)
            )
        recalls = []
        for k in range(n_classes):
            name = label_names[k] if k < len(label_names) else str(k)

            def one_vs_rest(f: Callable[..., float], k: int = k) -> Callable[..., float]:
                return lambda y, p: f(np.asarray(y) == k, p.argmax(axis=1) == k)

            table[f"auc[{name}]"] = lambda y, p, k=k: cm.roc_auc(np.asarray(y) == k, p[:, k])
            table[f"sensitivity[{name}]"] = one_vs_rest(cm.sensitivity)
            table[f"ppv[{name}]"] = one_vs_rest(cm.ppv)
            recalls.append(one_vs_rest(cm.sensitivity))
        table["f1_macro"] = lambda y, p: float(
            np.mean(
                [
                    cm.f1_score(np.asarray(y) == k, p.argmax(axis=1) == k)
                    for k in range(n_classes)
                    if np.any(np.asarray(y) == k)
                ]
            )
        )
    elif task == "multilabel":
        table["auc_macro"] = cm.macro_auc
        table["subset_accuracy"] = decided(cm.accuracy)
        for k in range(n_classes):
            name = label_names[k] if k < len(label_names) else str(k)
            table[f"auc[{name}]"] = lambda y, p, k=k: cm.roc_auc(np.asarray(y)[:, k], p[:, k])
    else:
        raise InvalidInputError("task", f"{task!r} is not a classification task")
    table["ece"] = lambda y, p: expected_calibration_error(*calibration_inputs(task, y, p))
    return table


def classification_metrics(
    task: str,
    y: ArrayLike,
    proba: ArrayLike,
    thresholds: Mapping[str, float] | None = None,
    *,
    label_names: Sequence[str] = (),
    groups: Sequence[object] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> list[MetricResult]:
    """Every metric of the task with its patient-level bootstrap 95% CI.

    Metrics undefined on these data (e.g. sensitivity without positives) are left out.
    """
    yy = np.asarray(y)
    p = np.asarray(proba, dtype=np.float64)
    if len(yy) != len(p):
        raise InvalidInputError("labels", f"{len(yy)} labels but {len(p)} predictions")
    table = _metric_table(str(task), p.shape[1], dict(thresholds or {}), list(label_names))
    out = []
    for name, f in table.items():
        try:
            r = bootstrap_ci(f, yy, p, groups=groups, n_resamples=n_resamples, seed=seed)
        except (InvalidInputError, ValueError):
            continue
        low = None if np.isnan(r.low) else r.low
        high = None if np.isnan(r.high) else r.high
        out.append(MetricResult(name, r.value, low, high, len(yy)))
    return out


_CORE = {
    "binary": ("auc", "accuracy", "sensitivity", "specificity"),
    "multiclass": ("auc_macro", "accuracy"),
    "ordinal": ("auc_macro", "accuracy", "qwk"),
    "multilabel": ("auc_macro", "subset_accuracy"),
}


def subgroup_metrics(
    task: str,
    y: ArrayLike,
    proba: ArrayLike,
    values: Sequence[object],
    thresholds: Mapping[str, float] | None = None,
    *,
    label_names: Sequence[str] = (),
    groups: Sequence[object] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Core metrics per subgroup (cases with attribute value ``v``) and the largest gap.

    Returns ``{"groups": {value: {"n": .., "positives": .., metric: {...}}}, "gaps": {metric:
    max - min}, "gap_groups": {metric: [values]}, "rule": ...}``.  Each metric carries
    ``estimable`` and ``ci_note`` (:mod:`medsight.evaluation.estimability`): where the group
    is too small for a CI (or the bootstrap is degenerate) the point estimate stays, where
    defined, and the CI fields are ``None``.  Gaps are taken over the groups that pass the
    size rule for that metric (cases, patients and class counts; ``gap_groups`` names them);
    cases without a value are left out.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([0, 1] * 10); p = np.where(y == 1, 0.8, 0.2)
    >>> p[:10] = 0.5                       # the first ten cases (sex F) are uninformative
    >>> r = subgroup_metrics("binary", y, np.c_[1 - p, p], ["F"] * 10 + ["M"] * 10,
    ...                      n_resamples=20)
    >>> r["groups"]["F"]["auc"]["value"], r["groups"]["M"]["auc"]["value"], r["gaps"]["auc"]
    (0.5, 1.0, 0.5)
    >>> r = subgroup_metrics("binary", y[:6], np.c_[1 - p, p][:6], ["F"] * 6, n_resamples=20)
    >>> r["groups"]["F"]["auc"]["ci_note"]
    'not estimable (n=6, positives=3, negatives=3): fewer than 10 cases'
    """
    from medsight.evaluation.estimability import (
        MIN_CASES,
        MIN_PATIENTS,
        MIN_PER_CLASS,
        MIN_VALID_FRACTION,
        check_ci,
        class_needs,
        with_estimability,
    )

    yy, p = np.asarray(y), np.asarray(proba, dtype=np.float64)
    vals = np.array(["" if v is None else str(v) for v in values], dtype=object)
    g = None if groups is None else np.asarray(groups, dtype=object)
    table = _metric_table(str(task), p.shape[1], dict(thresholds or {}), list(label_names))
    core = [name for name in _CORE[str(task)] if name in table]
    result: dict[str, Any] = {
        "groups": {},
        "gaps": {},
        "gap_groups": {},
        "rule": (
            f"a CI needs >= {MIN_CASES} cases, >= {MIN_PATIENTS} patients, >= {MIN_PER_CLASS} "
            "positives (sensitivity, AUC) / negatives (specificity, AUC), the metric defined "
            f"in >= {MIN_VALID_FRACTION:.0%} of resamples and a non-zero width"
        ),
    }
    per_metric: dict[str, dict[str, float]] = {}
    for v in sorted(set(vals) - {""}):
        idx = np.flatnonzero(vals == v)
        yv, pv = yy[idx], p[idx]
        gv = None if g is None else list(g[idx])
        n_patients = int(idx.size) if gv is None else len(set(gv))
        entry: dict[str, Any] = {"n": int(idx.size), "patients": n_patients}
        counts: dict[str, Any] = {}
        if str(task) == "binary":
            entry["positives"] = counts["positives"] = int((yv == 1).sum())
            counts["negatives"] = int((yv == 0).sum())
        elif str(task) == "multilabel":
            counts["class_counts"] = [int(c) for c in yv.sum(axis=0)]
        else:
            counts["class_counts"] = [int(c) for c in np.bincount(yv, minlength=p.shape[1])]
        for name in core:
            size = check_ci(int(idx.size), patients=n_patients, needs=class_needs(name), **counts)
            if not size.estimable:
                try:  # the point estimate only
                    value = float(table[name](yv, pv))
                except ValueError:
                    value = float("nan")
                if np.isfinite(value):
                    m = MetricResult(name, value, None, None, int(idx.size)).as_dict()
                else:
                    m = {"name": name, "value": None, "ci_low": None, "ci_high": None}
                    m["n"] = int(idx.size)
                entry[name] = with_estimability(m, size)
                continue
            try:
                r = bootstrap_ci(table[name], yv, pv, groups=gv, n_resamples=n_resamples, seed=seed)
            except (InvalidInputError, ValueError):
                continue
            verdict = check_ci(
                int(idx.size),
                patients=n_patients,
                needs=class_needs(name),
                n_valid=r.n_valid,
                n_resamples=r.n_resamples,
                low=r.low,
                high=r.high,
                **counts,
            )
            low = None if np.isnan(r.low) else r.low
            high = None if np.isnan(r.high) else r.high
            m = MetricResult(name, r.value, low, high, int(idx.size)).as_dict()
            entry[name] = with_estimability(m, verdict)
            per_metric.setdefault(name, {})[v] = r.value
        result["groups"][v] = entry
    for k, by_value in per_metric.items():
        if len(by_value) > 1:
            result["gaps"][k] = float(max(by_value.values()) - min(by_value.values()))
            result["gap_groups"][k] = sorted(by_value)
    return result


def subgroup_lines(subgroups: Mapping[str, Any]) -> list[str]:
    """One line of text per attribute (for the command line), each group's core metrics with
    their CI or the reason there is none.

    Examples
    --------
    >>> sub = {"sex": {"groups": {"F": {"n": 3, "auc": {"value": 0.5, "ci_low": None,
    ...        "ci_high": None, "estimable": False, "ci_note": "not estimable (n=3)"}}}}}
    >>> subgroup_lines(sub)
    ['subgroups by sex: F (n=3) auc 0.500 [not estimable (n=3)]']
    """
    lines = []
    for column, sub in subgroups.items():
        parts = []
        for value, entry in sub["groups"].items():
            metrics = []
            for name, m in entry.items():
                if not isinstance(m, dict):
                    continue
                text = "undefined" if m.get("value") is None else f"{m['value']:.3f}"
                if m.get("estimable") is False:
                    text += f" [{m['ci_note']}]"
                elif m.get("ci_low") is not None:
                    text += f" ({m['ci_low']:.3f} to {m['ci_high']:.3f})"
                metrics.append(f"{name} {text}")
            parts.append(f"{value} (n={entry['n']}) " + ", ".join(metrics))
        lines.append(f"subgroups by {column}: " + "; ".join(parts))
    return lines
