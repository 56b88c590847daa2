"""Classification metrics as pure numpy functions (no scikit-learn at run time).

Scores are probabilities of the positive class (binary) or an ``(n, k)`` matrix of class
probabilities (multi-class, ordinal) or per-label probabilities (multi-label).  Every function
raises ``ValueError`` where the metric is undefined (e.g. AUC with one class present), which
:func:`medsight.evaluation.bootstrap_ci` treats as "skip this resample".

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1]); s = np.array([0.1, 0.4, 0.35, 0.8])
>>> roc_auc(y, s)
0.75
>>> binary_counts(y, s >= 0.5)
BinaryCounts(tp=1, fp=0, tn=2, fn=1)
>>> round(quadratic_weighted_kappa([0, 1, 2, 2], [0, 1, 2, 1], n_classes=3), 4)
0.8
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "BinaryCounts",
    "accuracy",
    "binary_counts",
    "confusion_matrix",
    "f1_score",
    "macro_auc",
    "npv",
    "ppv",
    "pr_curve",
    "quadratic_weighted_kappa",
    "roc_auc",
    "roc_curve",
    "sensitivity",
    "specificity",
    "youden_threshold",
]


@dataclasses.dataclass(frozen=True)
class BinaryCounts:
    """Confusion counts of a binary decision."""

    tp: int
    fp: int
    tn: int
    fn: int


def _binary_labels(y_true: ArrayLike) -> NDArray[np.int64]:
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("binary labels must be 0 or 1")
    return y


def roc_auc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties).

    Raises
    ------
    ValueError
        Only one class is present.
    """
    y = _binary_labels(y_true)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC is undefined with only one class present")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # mid-ranks: each run of equal scores gets the mean of its ranks
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_s) != 0])
    ends = np.r_[starts[1:], s.size]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def macro_auc(y_true: ArrayLike, proba: ArrayLike) -> float:
    """Unweighted mean of one-vs-rest AUCs (single-label ``y_true`` of class indices, or a
    multi-label indicator matrix of the same shape as ``proba``).

    Classes absent from ``y_true`` (or present in every sample) are skipped.
    """
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true)
    indicator = y if y.ndim == 2 else (y.reshape(-1, 1) == np.arange(p.shape[1])).astype(int)
    aucs = []
    for k in range(p.shape[1]):
        col = indicator[:, k]
        if 0 < col.sum() < col.size:
            aucs.append(roc_auc(col, p[:, k]))
    if not aucs:
        raise ValueError("AUC is undefined: no class has both positives and negatives")
    return float(np.mean(aucs))


def roc_curve(
    y_true: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """False-positive rates, true-positive rates and the thresholds (``score >= t``).

    The first point is (0, 0) at threshold ``inf``.
    """
    y = _binary_labels(y_true)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC is undefined with only one class present")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s.size - 1]
    tps = np.cumsum(y_sorted)[last]
    fps = (last + 1) - tps
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, s_sorted[last]]
    return fpr, tpr, thresholds


def pr_curve(
    y_true: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Precision, recall and thresholds (``score >= t``), highest threshold first."""
    y = _binary_labels(y_true)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if y.sum() == 0:
        raise ValueError("precision-recall is undefined without positives")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s.size - 1]
    tps = np.cumsum(y_sorted)[last]
    precision = tps / (last + 1)
    recall = tps / y.sum()
    return precision, recall, s_sorted[last]


def youden_threshold(y_true: ArrayLike, score: ArrayLike) -> float:
    """The threshold maximising sensitivity + specificity - 1 (Youden's J).

    Examples
    --------
    >>> youden_threshold([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9])
    0.6
    """
    fpr, tpr, thr = roc_curve(y_true, score)
    j = tpr - fpr
    best = int(np.argmax(j[1:])) + 1  # skip the (0, 0) point at +inf
    return float(thr[best])


def binary_counts(y_true: ArrayLike, y_pred: ArrayLike) -> BinaryCounts:
    """TP, FP, TN, FN of binary decisions."""
    y = _binary_labels(y_true)
    p = np.asarray(y_pred).astype(bool).reshape(-1)
    if p.size != y.size:
        raise ValueError(f"{y.size} labels but {p.size} predictions")
    return BinaryCounts(
        tp=int(np.sum(p & (y == 1))),
        fp=int(np.sum(p & (y == 0))),
        tn=int(np.sum(~p & (y == 0))),
        fn=int(np.sum(~p & (y == 1))),
    )


def _ratio(num: int, den: int, what: str) -> float:
    if den == 0:
        raise ValueError(f"{what} is undefined (zero denominator)")
    return num / den


def sensitivity(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """True-positive rate (recall)."""
    c = binary_counts(y_true, y_pred)
    return _ratio(c.tp, c.tp + c.fn, "sensitivity")


def specificity(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """True-negative rate."""
    c = binary_counts(y_true, y_pred)
    return _ratio(c.tn, c.tn + c.fp, "specificity")


def ppv(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Positive predictive value (precision)."""
    c = binary_counts(y_true, y_pred)
    return _ratio(c.tp, c.tp + c.fp, "PPV")


def npv(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Negative predictive value."""
    c = binary_counts(y_true, y_pred)
    return _ratio(c.tn, c.tn + c.fn, "NPV")


def f1_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Harmonic mean of PPV and sensitivity."""
    c = binary_counts(y_true, y_pred)
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, "F1")


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of exact matches (rows must match entirely for multi-label indicators)."""
    y = np.asarray(y_true)
    p = np.asarray(y_pred)
    if y.shape != p.shape:
        raise ValueError(f"shapes differ: {y.shape} vs {p.shape}")
    if y.size == 0:
        raise ValueError("accuracy of nothing is undefined")
    eq = y == p
    return float(np.mean(eq.all(axis=1) if eq.ndim == 2 else eq))


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> NDArray[np.int64]:
    """Counts ``C[i, j]`` of true class ``i`` predicted as ``j``."""
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y, p), 1)
    return cm


def quadratic_weighted_kappa(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> float:
    """Cohen's kappa with quadratic weights, for ordinal grades (Cohen 1968)."""
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(np.float64)
    n = cm.sum()
    if n == 0:
        raise ValueError("kappa of nothing is undefined")
    i, j = np.indices((n_classes, n_classes))
    w = (i - j) ** 2 / max(1, (n_classes - 1) ** 2)
    expected = np.outer(cm.sum(1), cm.sum(0)) / n
    den = float((w * expected).sum())
    if den == 0:
        raise ValueError("kappa is undefined when both raters use one grade")
    return float(1.0 - (w * cm).sum() / den)
