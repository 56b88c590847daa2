"""Is this input like the data the model was trained on?  A simple, explainable check.

It lives with the models because the reference is part of a ModelPackage: the trainer writes
it into ``model.json`` and the analysis pipeline reads it.

Each network input is summarised by four statistics (mean, standard deviation, 1st and 99th
percentile of its values after preprocessing).  A package stores, under
``spec.extra["input_reference"]``, the mean and spread of each statistic over its training
images (:func:`reference_statistics`).  At analysis time the largest absolute z-score across the
statistics is the out-of-distribution score; above :data:`OOD_THRESHOLD` the report warns.
Physical spacing far from the training data's median is flagged too.

This catches the common failures (wrong modality, wrong windowing, an inverted or blank image,
a photograph fed to a CT model) but not subtle domain shift; the report says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "OOD_THRESHOLD",
    "Plausibility",
    "assess",
    "input_statistics",
    "reference_statistics",
]

#: z-score above which an input is reported as unlike the training data.
OOD_THRESHOLD = 4.0
_STATS = ("mean", "std", "p01", "p99")


def input_statistics(x: ArrayLike) -> dict[str, float]:
    """The four summary statistics of one preprocessed network input.

    Examples
    --------
    >>> input_statistics(np.arange(101.0))["p99"]
    99.0
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    p01, p99 = np.percentile(a, [1, 99]) if a.size else (0.0, 0.0)
    return {"mean": float(a.mean()), "std": float(a.std()), "p01": float(p01), "p99": float(p99)}


def reference_statistics(stats: Iterable[Mapping[str, float]]) -> dict[str, list[float]]:
    """Mean and standard deviation of each statistic over training inputs (for model.json).

    Examples
    --------
    >>> ref = reference_statistics([input_statistics(np.full(10, v)) for v in (1.0, 3.0)])
    >>> ref["mean"]
    [2.0, 1.0]
    """
    rows = list(stats)
    out = {}
    for name in _STATS:
        values = np.array([r[name] for r in rows], dtype=np.float64)
        out[name] = [float(values.mean()), float(values.std())]
    return out


@dataclasses.dataclass(frozen=True)
class Plausibility:
    """Outcome of the check."""

    score: float | None  # max |z|; None when the package has no reference
    warnings: tuple[str, ...]

    @property
    def plausible(self) -> bool:
        """No warning was raised."""
        return not self.warnings


def assess(
    stats: Mapping[str, float],
    reference: Mapping[str, Sequence[float]] | None,
    *,
    spacing: Sequence[float] | None = None,
    reference_spacing: Sequence[float] | None = None,
) -> Plausibility:
    """Compare one input's statistics (and spacing) with the package's reference.

    Examples
    --------
    >>> ref = {"mean": [0.5, 0.05], "std": [0.2, 0.02], "p01": [0.0, 0.01], "p99": [1.0, 0.02]}
    >>> assess({"mean": 0.52, "std": 0.21, "p01": 0.0, "p99": 0.99}, ref).plausible
    True
    >>> odd = assess({"mean": 0.95, "std": 0.01, "p01": 0.9, "p99": 1.0}, ref)
    >>> odd.plausible, round(odd.score)
    (False, 90)
    >>> zscored = {"mean": [0.0, 1e-8], "std": [1.0, 1e-8], "p01": [-2.0, 0.1], "p99": [1.7, 0.1]}
    >>> round(assess({"mean": 1e-6, "std": 0.99998, "p01": -2.1, "p99": 1.8}, zscored).score, 3)
    1.0
    """
    warnings: list[str] = []
    score = None
    if reference:
        zs = {}
        for name in _STATS:
            if name in reference and name in stats:
                mean, std = reference[name]
                if std < 1e-4 * max(1.0, abs(mean)):
                    continue  # fixed by the normalisation (a z-scored mean): no information
                zs[name] = abs(stats[name] - mean) / std
        if zs:
            worst = max(zs, key=zs.__getitem__)
            score = float(zs[worst])
            if score > OOD_THRESHOLD:
                warnings.append(
                    f"the input looks unlike the model's training data (intensity {worst} is "
                    f"{score:.1f} standard deviations from the training images)"
                )
    if spacing is not None and reference_spacing is not None:
        ratio = np.asarray(spacing, float) / np.maximum(np.asarray(reference_spacing, float), 1e-6)
        if np.any(ratio > 2) or np.any(ratio < 0.5):
            warnings.append(
                f"voxel spacing {np.round(spacing, 2).tolist()} mm differs more than twofold from "
                f"the training data's {np.round(reference_spacing, 2).tolist()} mm"
            )
    return Plausibility(score, tuple(warnings))
