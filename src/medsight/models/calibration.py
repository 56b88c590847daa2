"""Applying a package's calibration: logits in, probabilities out (numpy only).

The map is fitted on validation data by :func:`medsight.evaluation.calibration.fit_calibration`
and stored as :class:`~medsight.models.spec.CalibrationSpec` in ``model.json``; this module only
applies it, so inference needs neither the fitting code nor scipy.  Methods:

``temperature``
    ``softmax(z / T)`` (``sigmoid`` per label for multi-label).
``vector``
    Multi-class / ordinal: ``softmax(a * z + b)`` with one scale and bias per class.  Binary:
    Platt scaling of the logit margin, ``p1 = sigmoid(a * (z1 - z0) + b)``, so the ranking (AUC)
    is kept.  Multi-label: ``sigmoid(a_k * z_k + b_k)``.
``isotonic``
    A non-decreasing piecewise-linear map of the uncalibrated probability (knots ``x``, ``y``,
    clamped at the ends): of the positive class (binary), of each label (multi-label), or of
    each class one-vs-rest, then renormalised to sum to 1 (multi-class / ordinal).

A package without ``calibration`` uses its ``temperature`` (older packages), else none.

Examples
--------
>>> import numpy as np
>>> from medsight.models.spec import CalibrationSpec, Task
>>> z = np.array([[2.0, 0.0, -1.0]])
>>> cal = CalibrationSpec(method="temperature", params={"temperature": 2.0})
>>> bool(np.allclose(calibrated_probabilities(z, Task.MULTICLASS, cal), softmax(z / 2)))
True
>>> calibrated_probabilities(z, Task.MULTICLASS, temperature=2.0).round(3)
array([[0.629, 0.231, 0.14 ]])
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medsight.models.spec import CalibrationMethod, CalibrationSpec, Task

__all__ = [
    "ISOTONIC_EPS",
    "calibrated_probabilities",
    "constant_outputs",
    "is_constant_map",
    "sigmoid",
    "softmax",
]

#: Isotonic outputs are kept in ``[eps, 1 - eps]``: a step fitted on a few hundred cases is no
#: ground for a probability of exactly 0 or 1 (and the log-likelihood stays finite).
ISOTONIC_EPS = 1e-3


def is_constant_map(cal: CalibrationSpec | None) -> bool:
    """Whether ``cal`` gives every input the same probabilities (it erases the ranking).

    A map fitted on a small validation split where the network's outputs carried no usable
    information can end there: vector scaling with every scale at its bound 0, or an isotonic
    map with flat knots.  Such a package cannot rank or discriminate cases.

    Examples
    --------
    >>> is_constant_map(CalibrationSpec(method="vector", params={"scale": [0.0], "bias": [0.9]}))
    True
    >>> is_constant_map(CalibrationSpec(method="vector", params={"scale": [0.5], "bias": [0.1]}))
    False
    """
    if cal is None:
        return False
    if cal.method is CalibrationMethod.VECTOR:
        return bool(np.all(np.abs(np.asarray(cal.params["scale"], dtype=np.float64)) < 1e-12))
    if cal.method is CalibrationMethod.ISOTONIC:
        return all(float(np.ptp(np.asarray(y, dtype=np.float64))) < 1e-9 for y in cal.params["y"])
    return False


def constant_outputs(
    cal: CalibrationSpec | None, task: Task | str, n_outputs: int
) -> dict[int, float]:
    """The outputs (index -> probability) that ``cal`` sets to the same value for every input.

    When the whole map is constant (:func:`is_constant_map`) that is every output.  Otherwise
    only a multi-label map can hold constant outputs: each label has its own sigmoid or
    isotonic map, so a label whose scale is 0 (or whose knots are flat) gives every image the
    same probability while the other labels still vary.  A softmax couples the classes of a
    binary, multi-class or ordinal map: a class with scale 0 still moves with the others, so
    its outputs are not constant.

    Examples
    --------
    >>> cal = CalibrationSpec(method="vector", params={"scale": [0.0, 1.0], "bias": [0.0, 0.0]})
    >>> constant_outputs(cal, "multilabel", 2), constant_outputs(cal, "multiclass", 2)
    ({0: 0.5}, {})
    """
    if cal is None:
        return {}
    task = Task(task)
    if is_constant_map(cal):
        flat = list(range(n_outputs))
    elif task is not Task.MULTILABEL:
        return {}
    elif cal.method is CalibrationMethod.VECTOR:
        scale = np.abs(np.asarray(cal.params["scale"], dtype=np.float64))
        flat = [int(k) for k in np.flatnonzero(scale < 1e-12)]
    elif cal.method is CalibrationMethod.ISOTONIC:
        ys = cal.params["y"]
        flat = [k for k in range(len(ys)) if float(np.ptp(np.asarray(ys[k], float))) < 1e-9]
    else:
        return {}
    if not flat:
        return {}
    # a constant output is the same for any logits: read it off at zero
    p = calibrated_probabilities(np.zeros((1, n_outputs)), task, cal)[0]
    return {k: float(p[k]) for k in flat}


def softmax(logits: ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """Row-wise softmax of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits: ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """Element-wise logistic function of ``logits / temperature`` (no overflow warnings)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return np.exp(-np.logaddexp(0.0, -z))


def _isotonic(
    p: NDArray[np.float64], xs: list[list[float]], ys: list[list[float]]
) -> NDArray[np.float64]:
    out = np.empty_like(p)
    for k in range(p.shape[1]):
        out[:, k] = np.interp(p[:, k], np.asarray(xs[k], float), np.asarray(ys[k], float))
    return np.clip(out, ISOTONIC_EPS, 1.0 - ISOTONIC_EPS)


def calibrated_probabilities(
    logits: ArrayLike,
    task: Task | str,
    calibration: CalibrationSpec | None = None,
    temperature: float | None = None,
) -> NDArray[np.float64]:
    """Probabilities ``(N, K)`` from logits ``(N, K)`` under a stored calibration.

    ``calibration`` wins over ``temperature``; with neither, plain softmax / sigmoid.
    """
    z = np.asarray(logits, dtype=np.float64)
    task = Task(task)
    multilabel = task is Task.MULTILABEL
    if calibration is None:
        t = temperature or 1.0
        return sigmoid(z, t) if multilabel else softmax(z, t)
    method, params = calibration.method, calibration.params
    if method is CalibrationMethod.NONE:
        return sigmoid(z) if multilabel else softmax(z)
    if method is CalibrationMethod.TEMPERATURE:
        t = float(params["temperature"])
        return sigmoid(z, t) if multilabel else softmax(z, t)
    if method is CalibrationMethod.VECTOR:
        a = np.asarray(params["scale"], dtype=np.float64)
        b = np.asarray(params["bias"], dtype=np.float64)
        if task is Task.BINARY:
            p1 = sigmoid(a[0] * (z[:, 1] - z[:, 0]) + b[0])
            return np.stack([1.0 - p1, p1], axis=1)
        return sigmoid(a * z + b) if multilabel else softmax(a * z + b)
    # isotonic
    xs, ys = params["x"], params["y"]
    if task is Task.BINARY:
        p1 = _isotonic(softmax(z)[:, 1:2], xs, ys)[:, 0]
        return np.stack([1.0 - p1, p1], axis=1)
    if multilabel:
        return _isotonic(sigmoid(z), xs, ys)
    q = _isotonic(softmax(z), xs, ys)
    return q / q.sum(axis=1, keepdims=True)
