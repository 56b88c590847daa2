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
    min_cases: int = 5,
) -> dict[str, Any]:
    """Core metrics per subgroup (cases with attribute value ``v``) and the largest gap.

    Returns ``{"groups": {value: {"n": .., metric: {...}}}, "gaps": {metric: max - min}}``;
    cases without a value and groups under ``min_cases`` are left out of the gaps.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([0, 1] * 10); p = np.where(y == 1, 0.8, 0.2)
    >>> p[:10] = 0.5                       # the first ten cases (sex F) are uninformative
    >>> r = subgroup_metrics("binary", y, np.c_[1 - p, p], ["F"] * 10 + ["M"] * 10,
    ...                      n_resamples=20)
    >>> r["groups"]["F"]["auc"]["value"], r["groups"]["M"]["auc"]["value"], r["gaps"]["auc"]
    (0.5, 1.0, 0.5)
    """
    yy, p = np.asarray(y), np.asarray(proba, dtype=np.float64)
    vals = np.array(["" if v is None else str(v) for v in values], dtype=object)
    g = None if groups is None else np.asarray(groups, dtype=object)
    core = set(_CORE[str(task)])
    result: dict[str, Any] = {"groups": {}, "gaps": {}}
    per_metric: dict[str, list[float]] = {}
    for v in sorted(set(vals) - {""}):
        idx = np.flatnonzero(vals == v)
        entry: dict[str, Any] = {"n": int(idx.size)}
        if idx.size >= min_cases:
            ms = classification_metrics(
                task,
                yy[idx],
                p[idx],
                thresholds,
                label_names=label_names,
                groups=None if g is None else list(g[idx]),
                n_resamples=n_resamples,
                seed=seed,
            )
            for m in ms:
                if m.name in core:
                    entry[m.name] = m.as_dict()
                    per_metric.setdefault(m.name, []).append(m.value)
        result["groups"][v] = entry
    result["gaps"] = {k: float(max(v) - min(v)) for k, v in per_metric.items() if len(v) > 1}
    return result
