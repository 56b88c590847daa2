"""Noise models for denoising: sample the parameters, then apply them deterministically.

Four models, one per acquisition physics (:class:`NoiseModel`):

* ``gaussian``: additive, signal-independent, ``y = x + n``, ``n ~ N(0, s^2)``.
* ``rician``: MR magnitude images, ``y = |(x + n1) + i n2|`` with ``n1, n2 ~ N(0, s^2)``
  (the complex signal's real and imaginary channels each get Gaussian noise; the magnitude is
  biased upwards where the signal is low, towards ``s * sqrt(pi / 2)`` in the background).
* ``poisson``: Poisson-Gaussian, low-dose CT / X-ray.  The signal is photon counts, so the
  variance grows with it: ``y = ref * P(x / ref * N) / N + e``, ``P`` Poisson, ``N`` the counts
  at the reference intensity, ``e ~ N(0, (GAUSSIAN_SHARE * s)^2)`` the electronic noise.
* ``speckle``: ultrasound, multiplicative, ``y = x * g`` with ``g ~ Gamma(L, 1 / L)`` (mean 1,
  standard deviation ``1 / sqrt(L)``, the intensity of an L-look speckle).

**Level convention.**  A noise level is a percentage of the image's robust intensity range
``ref = p99.5 - p0.5`` of the clean image (:func:`robust_range`), so a level means the same on
any scanner's units (HU, arbitrary MR units, 8-bit pixels):

* gaussian, rician: ``s = level / 100 * ref``;
* poisson: the standard deviation of the signal-dependent part is ``level / 100 * ref`` at
  intensity ``floor + ref`` (``N = (100 / level)^2`` counts there); less below, more above;
* speckle: the multiplicative factor's standard deviation is ``level / 100``
  (``L = (100 / level)^2``).

Signal-dependent models (rician, poisson, speckle) act on ``x - floor`` (``floor = p0.5``,
negative values clipped to 0) and add the floor back, so HU images with negative air work;
for MR magnitude and unsigned pixels the floor is 0 and the formulas are the textbook ones.

A blind denoiser is trained on levels drawn uniformly from a range per sample
(:func:`sample_noise`); :func:`apply_noise` is deterministic given the sampled
:class:`NoiseParams` (which hold the seed of the noise realisation), as DESIGN.md's rule 5 asks.

Examples
--------
>>> import numpy as np
>>> clean = np.full((64, 64), 100.0); clean[:, :32] = 0.0
>>> params = sample_noise("gaussian", (5, 5), clean, np.random.default_rng(0))
>>> params.level, params.reference
(5.0, 100.0)
>>> noisy = apply_noise(clean, params)
>>> bool(np.array_equal(noisy, apply_noise(clean, params)))   # deterministic given params
True
>>> round(float(np.std(noisy - clean)))
5
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medsight.core.errors import InvalidInputError

__all__ = [
    "GAUSSIAN_SHARE",
    "MAGNITUDE_NOISE",
    "PERCENTILES",
    "NoiseModel",
    "NoiseParams",
    "apply_noise",
    "check_levels",
    "robust_range",
    "sample_noise",
    "scale_to_unit",
    "unscale",
]

#: The percentiles of the robust intensity range (levels and normalisation use them both).
PERCENTILES = (0.5, 99.5)
#: Poisson-Gaussian: the electronic (Gaussian) noise's standard deviation as a share of the
#: level's standard deviation at the reference intensity.
GAUSSIAN_SHARE = 0.2


class NoiseModel(StrEnum):
    """The noise of one acquisition physics (see the module's docstring)."""

    GAUSSIAN = "gaussian"
    RICIAN = "rician"  # MR magnitude
    POISSON = "poisson"  # Poisson-Gaussian: low-dose CT, X-ray
    SPECKLE = "speckle"  # ultrasound, multiplicative


#: Noise models of magnitude data, which cannot be negative: a denoiser keeps its output >= 0
#: for them (:func:`medsight.inference.denoise.denoise_slices`).
MAGNITUDE_NOISE = frozenset({NoiseModel.RICIAN.value, NoiseModel.SPECKLE.value})


@dataclasses.dataclass(frozen=True)
class NoiseParams:
    """One sampled noise draw: model, level (percent of ``reference``), range and seed."""

    model: NoiseModel
    level: float
    reference: float  # robust range p99.5 - p0.5 of the clean image
    floor: float  # p0.5 of the clean image
    seed: int


def robust_range(x: ArrayLike) -> tuple[float, float]:
    """``(p0.5, p99.5 - p0.5)`` of the finite values: the floor and the reference range.

    A constant image has range 0; callers that divide by it use :func:`scale_to_unit`, which
    guards against that.

    Examples
    --------
    >>> robust_range(np.arange(1001.0))
    (5.0, 990.0)
    """
    a = np.asarray(x, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(a, PERCENTILES)
    return float(lo), float(hi - lo)


def check_levels(levels: Sequence[float], where: str = "levels") -> tuple[float, float]:
    """Validate a ``(low, high)`` level range in percent (``0 < low <= high <= 100``).

    Raises
    ------
    InvalidInputError
        Not two numbers, or out of order / range.

    Examples
    --------
    >>> check_levels([2, 10])
    (2.0, 10.0)
    """
    vals = [float(v) for v in levels]
    if len(vals) != 2 or not 0 < vals[0] <= vals[1] <= 100:
        raise InvalidInputError(
            where,
            f"must be LOW HIGH with 0 < LOW <= HIGH <= 100 (percent of the image's "
            f"p0.5-p99.5 intensity range), got {vals}",
        )
    return vals[0], vals[1]


def sample_noise(
    model: NoiseModel | str,
    levels: Sequence[float],
    clean: ArrayLike,
    rng: np.random.Generator,
) -> NoiseParams:
    """Draw a level uniformly from ``levels`` and a noise seed; measure ``clean``'s range.

    Parameters
    ----------
    model : NoiseModel or str
        ``gaussian``, ``rician``, ``poisson`` or ``speckle``.
    levels : (low, high)
        Percent of the clean image's robust range (see the module's docstring).
    clean : array_like
        The clean image the noise will be added to.
    rng : numpy.random.Generator
        The only source of randomness.
    """
    kind = NoiseModel(model)
    low, high = check_levels(levels)
    level = float(rng.uniform(low, high)) if high > low else low
    floor, reference = robust_range(clean)
    if reference <= 0:  # a constant image: fall back to its magnitude, then to 1
        reference = float(np.max(np.abs(np.asarray(clean, dtype=np.float64)))) or 1.0
    return NoiseParams(kind, level, reference, floor, int(rng.integers(0, 2**63 - 1)))


def apply_noise(clean: ArrayLike, params: NoiseParams) -> NDArray[np.float32]:
    """``clean`` with the noise ``params`` describe (float32; same shape).

    Examples
    --------
    >>> x = np.full((200, 200), 50.0)
    >>> p = NoiseParams(NoiseModel.POISSON, 10.0, 100.0, 0.0, seed=1)
    >>> y = apply_noise(x, p)
    >>> round(float(y.mean())), round(float(y.std()), 1)   # sqrt(0.5) * 10 signal-dependent
    (50, 7.3)
    """
    x = np.asarray(clean, dtype=np.float64)
    rng = np.random.default_rng(params.seed)
    frac = params.level / 100.0
    sigma = frac * params.reference
    if params.model is NoiseModel.GAUSSIAN:
        y = x + rng.normal(0.0, sigma, x.shape)
    elif params.model is NoiseModel.RICIAN:
        s = np.clip(x - params.floor, 0.0, None)
        y = np.hypot(s + rng.normal(0.0, sigma, x.shape), rng.normal(0.0, sigma, x.shape))
        y = y + params.floor
    elif params.model is NoiseModel.POISSON:
        counts = (100.0 / params.level) ** 2  # at floor + reference
        s = np.clip(x - params.floor, 0.0, None) / params.reference
        y = rng.poisson(s * counts) / counts * params.reference
        y = y + rng.normal(0.0, GAUSSIAN_SHARE * sigma, x.shape) + params.floor
    else:  # speckle
        looks = (100.0 / params.level) ** 2
        s = np.clip(x - params.floor, 0.0, None)
        y = s * rng.gamma(looks, 1.0 / looks, x.shape) + params.floor
    return y.astype(np.float32)


def scale_to_unit(x: ArrayLike) -> tuple[NDArray[np.float32], float, float]:
    """Robust percentile scaling: ``(x - p0.5) / (p99.5 - p0.5)``, and the offset and scale.

    The denoising networks see images scaled this way (computed on the *noisy* input, as at
    inference); :func:`unscale` returns to the input's units.  A constant image gets scale 1.

    Examples
    --------
    >>> z, offset, scale = scale_to_unit(np.arange(1001.0))
    >>> offset, scale, float(z.max()) > 1.0
    (5.0, 990.0, True)
    >>> bool(np.allclose(unscale(z, offset, scale), np.arange(1001.0)))
    True
    """
    a = np.asarray(x, dtype=np.float32)
    offset, scale = robust_range(a)
    if not scale > 1e-12 * max(1.0, abs(offset)):
        scale = 1.0
    return ((a - np.float32(offset)) / np.float32(scale)).astype(np.float32), offset, scale


def unscale(z: ArrayLike, offset: float, scale: float) -> NDArray[np.float32]:
    """Undo :func:`scale_to_unit`."""
    return (np.asarray(z, dtype=np.float32) * np.float32(scale) + np.float32(offset)).astype(
        np.float32
    )
