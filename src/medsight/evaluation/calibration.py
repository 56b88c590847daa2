"""Calibration: expected calibration error, reliability bins, and fitting a calibration map.

Temperature scaling (Guo et al., ICML 2017) divides the logits by one scalar ``T`` fitted by
minimising the negative log-likelihood on validation data; it changes confidence, never the
ranking (AUC) or the arg-max decision.  A temperature at the edge of its search range
``[0.05, 20]`` is a failed fit (the network's logits carry almost no, or infinitely sharp,
information at that scale), not a calibration: :func:`fit_calibration` then falls back to
vector scaling (per-class scale and bias, regularised) or isotonic regression, choosing between
the candidates by their held-out negative log-likelihood (k-fold cross-fitting within the
validation split, so the choice is not made on the points each map was fitted on); the raw
probabilities are a candidate too.  The result records the method, its parameters, whether
the fit converged, the validation NLL and ECE before and after, and the out-of-fold
reliability bins of the reported probability; it is stored in the package as
:class:`~medsight.models.spec.CalibrationSpec` and applied by
:func:`medsight.models.calibration.calibrated_probabilities`.

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
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medsight.models.calibration import (
    calibrated_probabilities,
    is_constant_map,
    sigmoid,
    softmax,
)
from medsight.models.spec import CalibrationMethod, CalibrationSpec, ReliabilitySpec, Task

__all__ = [
    "TEMPERATURE_RANGE",
    "Calibration",
    "CalibrationFitError",
    "ReliabilityBins",
    "expected_calibration_error",
    "fit_calibration",
    "fit_isotonic",
    "fit_temperature",
    "fit_vector_scaling",
    "pool_adjacent_violators",
    "reliability_bins",
    "sigmoid",
    "softmax",
    "temperature_at_bound",
]

#: The search range of :func:`fit_temperature`.
TEMPERATURE_RANGE = (0.05, 20.0)
#: A fitted temperature within this distance of a bound, in ``log T``, is a failed fit.
BOUND_TOLERANCE = 0.02


class CalibrationFitError(ValueError):
    """A calibration fit failed (e.g. ``fit_temperature(strict=True)`` hit its search bound)."""


def temperature_at_bound(t: float, tol: float = BOUND_TOLERANCE) -> bool:
    """True when ``t`` lies within ``tol`` (in log space) of an end of :data:`TEMPERATURE_RANGE`.

    >>> temperature_at_bound(19.9), temperature_at_bound(0.88), temperature_at_bound(0.0505)
    (True, False, True)
    """
    lo, hi = TEMPERATURE_RANGE
    return bool(abs(np.log(t / lo)) < tol or abs(np.log(hi / t)) < tol)


def _nll(logits: NDArray[np.float64], y: NDArray[np.int64], t: float, multilabel: bool) -> float:
    if multilabel:
        p = np.clip(sigmoid(logits, t), 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    p = softmax(logits, t)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def fit_temperature(
    logits: ArrayLike, y_true: ArrayLike, *, multilabel: bool = False, strict: bool = False
) -> float:
    """The temperature minimising the validation negative log-likelihood.

    Parameters
    ----------
    logits : array_like, shape (n, k)
    y_true : array_like
        Class indices ``(n,)``, or an ``(n, k)`` indicator matrix when ``multilabel``.
    multilabel : bool
        Sigmoid per label instead of a softmax over classes.
    strict : bool
        Raise :class:`CalibrationFitError` when ``T`` ends at a bound of the search range
        (:func:`temperature_at_bound`) instead of returning it.

    Returns
    -------
    float
        ``T`` in ``[0.05, 20]`` (log-grid search, then golden-section refinement).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true).astype(np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(z) == 0:
        raise ValueError(f"logits {z.shape} and labels {y.shape} do not match")
    grid = np.linspace(np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1]), 61)
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
    t = float(np.exp((lo + hi) / 2))
    if strict and temperature_at_bound(t):
        raise CalibrationFitError(
            f"temperature {t:.3g} is at the bound of its search range {TEMPERATURE_RANGE}: "
            "the fit failed"
        )
    return t


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


# --------------------------------------------------------------------------- calibration maps


def _labels(y_true: ArrayLike, task: Task) -> NDArray[np.int64]:
    y = np.asarray(y_true).astype(np.int64)
    return y if task is Task.MULTILABEL else y.reshape(-1)


def _case_nll(p: NDArray[np.float64], y: NDArray[np.int64], task: Task) -> NDArray[np.float64]:
    """Negative log-likelihood of each case (multi-label: mean over its labels)."""
    if task is Task.MULTILABEL:
        q = np.clip(p, 1e-12, 1 - 1e-12)
        return -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q), axis=1)
    return -np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))


def fit_vector_scaling(
    logits: ArrayLike, y_true: ArrayLike, task: Task | str, *, reg: float = 1e-2
) -> tuple[dict[str, list[float]], bool]:
    """Vector scaling: per-class scale ``a >= 0`` and bias ``b`` minimising the NLL.

    Multi-class / ordinal: ``softmax(a * z + b)``; binary: Platt scaling of the margin
    ``sigmoid(a * (z1 - z0) + b)``; multi-label: ``sigmoid(a_k z_k + b_k)``.  The penalty
    ``reg * (sum((a - mean(a))**2) + sum(b**2))`` shrinks towards temperature scaling (one
    common scale, no bias) so a small validation set cannot buy a large per-class distortion.

    Returns
    -------
    (params, converged)
        ``{"scale": [...], "bias": [...]}`` and whether L-BFGS-B reported success.
    """
    from scipy.optimize import minimize

    task = Task(task)
    z = np.asarray(logits, dtype=np.float64)
    y = _labels(y_true, task)
    n = len(z)
    if task is Task.BINARY:
        z = (z[:, 1] - z[:, 0])[:, None]
        yk = y[:, None].astype(np.float64)
    elif task is Task.MULTILABEL:
        yk = y.astype(np.float64)
    else:
        yk = np.eye(z.shape[1])[y]
    k = z.shape[1]
    sig = task in (Task.BINARY, Task.MULTILABEL)

    def loss(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        a, b = theta[:k], theta[k:]
        s = a * z + b
        if sig:
            value = float(np.sum(np.logaddexp(0.0, s) - yk * s)) / (n * k)
            g = (sigmoid(s) - yk) / (n * k)
        else:
            m = s.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(s - m).sum(axis=1))
            value = float(np.mean(lse - (s * yk).sum(axis=1)))
            g = (softmax(s) - yk) / n
        da, db = (g * z).sum(axis=0), g.sum(axis=0)
        dev = a - a.mean()
        value += reg * float(dev @ dev + b @ b)
        return value, np.concatenate([da + 2 * reg * dev, db + 2 * reg * b])

    try:
        t0 = fit_temperature(logits, y_true, multilabel=task is Task.MULTILABEL)
    except ValueError:
        t0 = 1.0
    theta0 = np.concatenate([np.full(k, 1.0 / t0), np.zeros(k)])
    bounds = [(0.0, None)] * k + [(None, None)] * k
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
    params = {"scale": res.x[:k].tolist(), "bias": res.x[k:].tolist()}
    return params, bool(res.success and np.all(np.isfinite(res.x)))


def pool_adjacent_violators(
    x: ArrayLike, y: ArrayLike, weights: ArrayLike | None = None
) -> tuple[list[float], list[float]]:
    """Knots of the least-squares non-decreasing fit of ``y`` on ``x`` (PAV algorithm).

    Ties in ``x`` are pooled first.  Each block of the fit contributes its lowest and highest
    ``x`` at its value, so ``np.interp(x_new, *knots)`` is the usual isotonic interpolation
    (linear between blocks, constant beyond the ends).

    >>> pool_adjacent_violators([1, 2, 3, 4], [0, 1, 0, 1])
    ([1.0, 2.0, 3.0, 4.0], [0.0, 0.5, 0.5, 1.0])
    """
    xx = np.asarray(x, dtype=np.float64).reshape(-1)
    yy = np.asarray(y, dtype=np.float64).reshape(-1)
    w = np.ones_like(xx) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(xx) == 0:
        raise ValueError("isotonic regression of nothing")
    ux, inv = np.unique(xx, return_inverse=True)
    ws = np.bincount(inv, weights=w)
    vs = np.bincount(inv, weights=w * yy) / ws
    val: list[float] = []
    wt: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for i in range(len(ux)):
        val.append(float(vs[i]))
        wt.append(float(ws[i]))
        lo.append(float(ux[i]))
        hi.append(float(ux[i]))
        while len(val) > 1 and val[-2] >= val[-1]:
            w2 = wt[-2] + wt[-1]
            val[-2] = (val[-2] * wt[-2] + val[-1] * wt[-1]) / w2
            wt[-2], hi[-2] = w2, hi[-1]
            del val[-1], wt[-1], lo[-1], hi[-1]
    kx: list[float] = []
    ky: list[float] = []
    for v, a, b in zip(val, lo, hi, strict=True):
        kx.append(a)
        ky.append(v)
        if b > a:
            kx.append(b)
            ky.append(v)
    return kx, ky


def _isotonic_scores(z: NDArray[np.float64], task: Task) -> NDArray[np.float64]:
    """The uncalibrated probabilities isotonic regression maps (see models.calibration)."""
    if task is Task.BINARY:
        return softmax(z)[:, 1:2]
    return sigmoid(z) if task is Task.MULTILABEL else softmax(z)


def fit_isotonic(
    logits: ArrayLike, y_true: ArrayLike, task: Task | str
) -> dict[str, list[list[float]]]:
    """Isotonic regression of the outcome on the uncalibrated probability.

    Binary: of the positive class; multi-label: per label; multi-class / ordinal: per class
    one-vs-rest (renormalised when applied).  Returns ``{"x": [...], "y": [...]}`` knots per
    column for :func:`medsight.models.calibration.calibrated_probabilities`.
    """
    task = Task(task)
    z = np.asarray(logits, dtype=np.float64)
    y = _labels(y_true, task)
    s = _isotonic_scores(z, task)
    if task is Task.BINARY:
        outcome = y[:, None]
    elif task is Task.MULTILABEL:
        outcome = y
    else:
        outcome = np.eye(z.shape[1], dtype=np.int64)[y]
    xs, ys = [], []
    for k in range(s.shape[1]):
        kx, ky = pool_adjacent_violators(s[:, k], outcome[:, k])
        xs.append(kx)
        ys.append(ky)
    return {"x": xs, "y": ys}


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A fitted calibration map with its validation evidence (see :func:`fit_calibration`).

    ``nll_*`` / ``ece_*`` are on the validation cases: ``before`` uncalibrated (softmax /
    sigmoid of the raw logits), ``after`` with the map fitted on all of them (optimistic), and
    ``ece_cv`` / ``reliability`` with out-of-fold probabilities (each case calibrated by a map
    fitted without it), the honest estimate.  ``cv_nll`` is each candidate's held-out NLL.
    ``kind`` names the reported probability the ECE and bins are about.
    """

    task: Task
    method: CalibrationMethod
    params: dict[str, Any]
    converged: bool
    note: str
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    ece_cv: float
    cv_nll: dict[str, float]
    reliability: ReliabilityBins
    kind: str
    how: str

    def probabilities(self, logits: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probabilities for logits ``(N, K)``."""
        return calibrated_probabilities(logits, self.task, self.to_spec())

    def to_spec(self) -> CalibrationSpec:
        """The typed ``model.json`` entry."""
        r = self.reliability

        def opt(v: float) -> float | None:
            return None if not np.isfinite(v) else float(v)

        rel = ReliabilitySpec(
            kind=self.kind,
            edges=[round(float(e), 12) for e in r.edges],
            count=[int(c) for c in r.count],
            confidence=[opt(v) for v in r.confidence],
            observed=[opt(v) for v in r.accuracy],
            ece=self.ece_cv,
            n=self.n,
            how=self.how,
        )
        return CalibrationSpec(
            method=self.method,
            params=self.params,
            converged=self.converged,
            note=self.note,
            n=self.n,
            nll_before=self.nll_before,
            nll_after=self.nll_after,
            ece_before=self.ece_before,
            ece_after=self.ece_after,
            cv_nll=self.cv_nll,
            reliability=rel,
        )


_KIND = {
    Task.BINARY: "positive-class",
    Task.MULTILABEL: "per-label",
    Task.MULTICLASS: "top-label",
    Task.ORDINAL: "top-label",
}
#: Candidates from the least to the most flexible (``none``: the raw softmax / sigmoid).
_ORDER = (
    CalibrationMethod.NONE,
    CalibrationMethod.TEMPERATURE,
    CalibrationMethod.VECTOR,
    CalibrationMethod.ISOTONIC,
)


def _fit_one(
    method: CalibrationMethod, z: NDArray[np.float64], y: NDArray[np.int64], task: Task
) -> tuple[dict[str, Any], bool]:
    if method is CalibrationMethod.NONE:
        return {}, True
    if method is CalibrationMethod.TEMPERATURE:
        t = fit_temperature(z, y, multilabel=task is Task.MULTILABEL)
        return {"temperature": t}, not temperature_at_bound(t)
    if method is CalibrationMethod.VECTOR:
        return fit_vector_scaling(z, y, task)
    return fit_isotonic(z, y, task), True


def _apply(
    method: CalibrationMethod, params: dict[str, Any], z: NDArray[np.float64], task: Task
) -> NDArray[np.float64]:
    return calibrated_probabilities(z, task, CalibrationSpec(method=method, params=params))


def _folds(y: NDArray[np.int64], task: Task, k: int, seed: int) -> NDArray[np.int64]:
    """Fold of each case, stratified by class for single-label tasks."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    if task is Task.MULTILABEL:
        fold[rng.permutation(len(y))] = np.arange(len(y)) % k
        return fold
    start = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (start + np.arange(len(idx))) % k
        start += len(idx)
    return fold


def fit_calibration(
    logits: ArrayLike,
    y_true: ArrayLike,
    task: Task | str,
    *,
    n_folds: int = 5,
    n_bins: int = 10,
    seed: int = 0,
    keep_decisions: bool = True,
) -> Calibration:
    """Fit temperature, vector scaling and isotonic maps; keep the best held-out one.

    Candidates are fitted on all cases; a temperature at its search bound or a vector fit
    that did not converge is a failed fit and is not eligible.  Each eligible method is scored
    by its out-of-fold NLL (``n_folds``-fold cross-fitting, stratified, seeded) and the lowest
    wins (ties to the simpler: none, temperature, vector, isotonic).  ``none``, the raw softmax
    / sigmoid, is a candidate too: a map that does not beat the raw probabilities on held-out
    cases is not applied.

    Multi-class and ordinal packages decide by the arg-max of the calibrated probabilities,
    which vector scaling and isotonic regression can move (the zoo's RetinaMNIST grader lost
    severe-grade sensitivity that way for a small NLL gain).  With ``keep_decisions`` they are
    therefore candidates there only when the temperature fit failed; their held-out NLL is
    still recorded.  Binary and multi-label thresholds are chosen after calibration, and the
    binary maps are monotone in the positive-class score, but isotonic regression only weakly:
    its steps tie cases the network ranks apart.  A default PneumoniaMNIST model's isotonic
    map (chosen by held-out NLL, 0.072 against vector scaling's 0.077) put 66 % of the test
    images on one step at ~100 % pneumonia and cut its test AUC from 0.986 (the network's own
    ranking) to 0.944 (``benchmarks/classification_ensemble.py``, BENCHMARKS.md).  With
    ``keep_decisions`` isotonic is therefore a candidate there only when neither temperature
    nor vector scaling (both strictly monotone) converged; its held-out NLL is still recorded.

    Parameters
    ----------
    logits : array_like, shape (n, k)
        Uncalibrated validation logits.
    y_true : array_like
        Class indices ``(n,)`` or, for multi-label, an ``(n, k)`` indicator matrix.
    task : Task or str
    keep_decisions : bool
        See above.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400)
    >>> z = np.stack([np.zeros(400), 40.0 * (y - 0.5) + rng.normal(0, 60, 400)], 1)
    >>> cal = fit_calibration(z, y, "binary")
    >>> cal.method.value != "temperature" or cal.converged, cal.ece_after < cal.ece_before
    (True, True)
    """
    from medsight.evaluation.classification_report import calibration_inputs

    task = Task(task)
    if task is Task.SEGMENTATION:
        raise ValueError("calibration is for classification tasks")
    z = np.asarray(logits, dtype=np.float64)
    y = _labels(y_true, task)
    if z.ndim != 2 or len(z) != len(y) or len(z) == 0:
        raise ValueError(f"logits {z.shape} and labels {y.shape} do not match")
    n = len(z)

    def ece(p: NDArray[np.float64]) -> float:
        return expected_calibration_error(*calibration_inputs(task.value, y, p), n_bins=n_bins)

    raw = calibrated_probabilities(z, task)
    fits = {m: _fit_one(m, z, y, task) for m in _ORDER}
    failed = [m for m in _ORDER if not fits[m][1]]
    eligible = [m for m in _ORDER if fits[m][1]] or [CalibrationMethod.ISOTONIC]
    notes = []
    if CalibrationMethod.TEMPERATURE in failed:
        t = fits[CalibrationMethod.TEMPERATURE][0]["temperature"]
        notes.append(
            f"temperature fit FAILED: T={t:.3g} is at the bound of its search range "
            f"{TEMPERATURE_RANGE}"
        )
    if CalibrationMethod.VECTOR in failed:
        notes.append("vector scaling did not converge")
    allowed = eligible
    if task in (Task.MULTICLASS, Task.ORDINAL):
        moved = {
            m.value: float(np.mean(_apply(m, fits[m][0], z, task).argmax(1) != raw.argmax(1)))
            for m in (CalibrationMethod.VECTOR, CalibrationMethod.ISOTONIC)
            if m in eligible
        }
        share = ", ".join(f"{m} {100 * v:.0f}%" for m, v in moved.items())
        if keep_decisions and CalibrationMethod.TEMPERATURE in eligible:
            allowed = [m for m in eligible if m in _ORDER[:2]]
            notes.append(
                "vector and isotonic not eligible: they move arg-max decisions (of validation "
                f"cases: {share}) and the temperature fit converged"
            )
        elif share:
            notes.append(f"arg-max decisions moved on validation cases: {share}")
    elif keep_decisions and CalibrationMethod.ISOTONIC in eligible:
        smooth = [
            m for m in (CalibrationMethod.TEMPERATURE, CalibrationMethod.VECTOR) if m in eligible
        ]
        if smooth:
            allowed = [m for m in eligible if m is not CalibrationMethod.ISOTONIC]
            iso = _apply(CalibrationMethod.ISOTONIC, fits[CalibrationMethod.ISOTONIC][0], z, task)
            distinct = min(len(np.unique(np.round(col, 9))) for col in iso.T)
            top = float(iso.max())
            notes.append(
                f"isotonic not eligible: its steps give the {n} validation cases {distinct} "
                "distinct probabilities (cases the network ranks apart tie, which costs AUC "
                f"and threshold choices on new data; its highest step is {100 * top:.1f} %) "
                f"and {' / '.join(m.value for m in smooth)}, strictly monotone, converged"
            )

    k = min(n_folds, n // 2)
    if k >= 2:
        fold = _folds(y, task, k, seed)
        oof = {m: np.empty_like(raw) for m in eligible}
        for f in range(k):
            tr, te = fold != f, fold == f
            for m in eligible:
                params, _ = _fit_one(m, z[tr], y[tr], task)
                oof[m][te] = _apply(m, params, z[te], task)
        losses = {m: _case_nll(oof[m], y, task) for m in eligible}
        cv_nll = {m.value: float(v.mean()) for m, v in losses.items()}
        chosen = min(allowed, key=lambda m: (round(cv_nll[m.value], 6), _ORDER.index(m)))
        how = f"out-of-fold: {k}-fold cross-fitted calibration within the validation split"
        scored = ", ".join(f"{m} {v:.4f}" for m, v in cv_nll.items())
        notes.append(
            f"chose {chosen.value}: held-out NLL per case ({k}-fold CV within validation) "
            f"{scored} (lowest eligible wins; none = raw softmax/sigmoid)"
        )
        reported = oof[chosen]
    else:
        chosen = next((m for m in allowed if m is not CalibrationMethod.NONE), allowed[0])
        cv_nll = {}
        how = "in-sample: too few validation cases to cross-fit"
        notes.append(f"chose {chosen.value}: too few validation cases ({n}) to cross-validate")
        reported = None
    params, converged = fits[chosen]
    calibrated = _apply(chosen, params, z, task)
    if is_constant_map(CalibrationSpec(method=chosen, params=params)):
        notes.append(
            f"WARNING: {chosen.value} gives every validation case the same probabilities (the "
            "network's outputs carried no usable held-out information): the model cannot rank "
            "cases"
        )
    if reported is None:
        reported = calibrated
    outcome, confidence = calibration_inputs(task.value, y, reported)
    return Calibration(
        task=task,
        method=chosen,
        params=params,
        converged=converged,
        note="; ".join(notes),
        n=n,
        nll_before=float(_case_nll(raw, y, task).mean()),
        nll_after=float(_case_nll(calibrated, y, task).mean()),
        ece_before=ece(raw),
        ece_after=ece(calibrated),
        ece_cv=expected_calibration_error(outcome, confidence, n_bins=n_bins),
        cv_nll=cv_nll,
        reliability=reliability_bins(outcome, confidence, n_bins),
        kind=_KIND[task],
        how=how,
    )
