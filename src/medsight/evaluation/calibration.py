"""Calibration: expected calibration error, reliability diagram bins, temperature scaling.

Temperature scaling (Guo et al., ICML 2017) divides the logits by one scalar ``T`` fitted by
minimising the negative log-likelihood on validation data; it changes confidence, never the
ranking (AUC) or the arg-max decision.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> logits = rng.normal(size=(500, 3)) * 4           # over-confident logits
>>> y = np.array([rng.choice(3, p=p) for p in softmax(logits / 4)])
>>> t = fit_temperature(logits, y)
>>> bool(2.5 < t < 6.5)
True
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ReliabilityBins",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_bins",
    "sigmoid",
    "softmax",
]


def softmax(logits: ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """Row-wise softmax of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits: ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """Element-wise logistic function of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return 1.0 / (1.0 + np.exp(-z))


def _nll(logits: NDArray[np.float64], y: NDArray[np.int64], t: float, multilabel: bool) -> float:
    if multilabel:
        p = np.clip(sigmoid(logits, t), 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    p = softmax(logits, t)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def fit_temperature(logits: ArrayLike, y_true: ArrayLike, *, multilabel: bool = False) -> float:
    """The temperature minimising the validation negative log-likelihood.

    Parameters
    ----------
    logits : array_like, shape (n, k)
    y_true : array_like
        Class indices ``(n,)``, or an ``(n, k)`` indicator matrix when ``multilabel``.
    multilabel : bool
        Sigmoid per label instead of a softmax over classes.

    Returns
    -------
    float
        ``T`` in ``[0.05, 20]`` (log-grid search, then golden-section refinement).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true).astype(np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(z) == 0:
        raise ValueError(f"logits {z.shape} and labels {y.shape} do not match")
    grid = np.linspace(np.log(0.05), np.log(20.0), 61)
    losses = [_nll(z, y, float(np.exp(g)), multilabel) for g in grid]
    i = int(np.argmin(losses))
    lo, hi = grid[max(0, i - 1)], grid[min(len(grid) - 1, i + 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):  # golden-section search on log T
        a = hi - ratio * (hi - lo)
        b = lo + ratio * (hi - lo)
        if _nll(z, y, float(np.exp(a)), multilabel) < _nll(z, y, float(np.exp(b)), multilabel):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


@dataclasses.dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin mean confidence, accuracy and count (equal-width bins on [0, 1])."""

    edges: NDArray[np.float64]
    confidence: NDArray[np.float64]
    accuracy: NDArray[np.float64]
    count: NDArray[np.int64]


def reliability_bins(
    correct: ArrayLike, confidence: ArrayLike, n_bins: int = 10
) -> ReliabilityBins:
    """Bin predictions by confidence; empty bins hold NaN.

    ``correct`` is 1 where the prediction was right (or, for a binary reliability diagram of
    the positive class, the label) and ``confidence`` the predicted probability.
    """
    c = np.asarray(correct, dtype=np.float64).reshape(-1)
    p = np.asarray(confidence, dtype=np.float64).reshape(-1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=p, minlength=n_bins) / count
        acc = np.bincount(idx, weights=c, minlength=n_bins) / count
    return ReliabilityBins(edges, conf, acc, count.astype(np.int64))


def expected_calibration_error(
    correct: ArrayLike, confidence: ArrayLike, n_bins: int = 10
) -> float:
    """ECE: count-weighted mean of ``|accuracy - confidence|`` over equal-width bins.

    Examples
    --------
    >>> expected_calibration_error([1, 0, 1, 1], [0.9, 0.9, 0.6, 0.6], n_bins=10)
    0.4
    """
    bins = reliability_bins(correct, confidence, n_bins)
    n = bins.count.sum()
    if n == 0:
        raise ValueError("ECE of nothing is undefined")
    used = bins.count > 0
    gap = np.abs(bins.accuracy[used] - bins.confidence[used])
    return float(np.round((bins.count[used] * gap).sum() / n, 12))
