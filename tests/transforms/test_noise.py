"""Noise models: statistics against independent references, the level convention, seeding."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medsight.core.errors import InvalidInputError
from medsight.transforms.noise import (
    GAUSSIAN_SHARE,
    NoiseModel,
    NoiseParams,
    apply_noise,
    robust_range,
    sample_noise,
    scale_to_unit,
)


def _two_level(low: float, high: float, n: int = 256) -> np.ndarray:
    x = np.full((n, n), high)
    x[:, : n // 2] = low
    return x


def test_rician_mean_bias_matches_the_rice_distribution():
    # reference: scipy.stats.rice, the Rice distribution with b = A / sigma, scale = sigma
    x = _two_level(0.0, 100.0)
    p = NoiseParams(NoiseModel.RICIAN, 10.0, 100.0, 0.0, seed=3)
    y = apply_noise(x, p)
    back, fore = y[:, :128], y[:, 128:]
    assert back.mean() == pytest.approx(stats.rice(b=0.0, scale=10.0).mean(), rel=0.02)  # 12.5
    assert fore.mean() == pytest.approx(stats.rice(b=10.0, scale=10.0).mean(), rel=0.005)
    assert back.min() >= 0  # a magnitude


def test_poisson_variance_grows_with_the_signal():
    x = np.concatenate([np.full((200, 200), v) for v in (25.0, 50.0, 100.0)], axis=1)
    p = NoiseParams(NoiseModel.POISSON, 10.0, 100.0, 0.0, seed=1)
    y = apply_noise(x, p)
    counts = (100 / 10) ** 2  # at the reference intensity
    for k, v in enumerate((25.0, 50.0, 100.0)):
        part = y[:, 200 * k : 200 * (k + 1)]
        expected = v * 100 / counts + (GAUSSIAN_SHARE * 10.0) ** 2  # Poisson + electronic
        assert part.var() == pytest.approx(expected, rel=0.05)
        assert part.mean() == pytest.approx(v, rel=0.01)


def test_gaussian_and_speckle_levels_follow_the_convention():
    x = _two_level(20.0, 120.0)  # robust range 100, floor 20
    params = sample_noise("gaussian", (4, 4), x, np.random.default_rng(0))
    assert (params.level, params.reference, params.floor) == (4.0, 100.0, 20.0)
    assert np.std(apply_noise(x, params) - x) == pytest.approx(4.0, rel=0.02)
    sp = NoiseParams(NoiseModel.SPECKLE, 20.0, 100.0, 20.0, seed=0)
    y = apply_noise(x, sp)[:, 128:] - 20.0  # multiplicative on the signal above the floor
    assert y.mean() == pytest.approx(100.0, rel=0.01)
    assert y.std() / y.mean() == pytest.approx(0.2, rel=0.03)
    assert np.allclose(apply_noise(x, sp)[:, :128], 20.0)  # no signal, no speckle


def test_hu_images_keep_their_floor():
    ct = _two_level(-1000.0, 1000.0)
    y = apply_noise(ct, sample_noise("poisson", (5, 5), ct, np.random.default_rng(0)))
    assert np.mean(y[:, :128]) == pytest.approx(-1000.0, abs=5)
    assert np.mean(y[:, 128:]) == pytest.approx(1000.0, abs=5)


def test_levels_are_drawn_per_sample_and_seeded():
    x = _two_level(0.0, 1.0, n=32)
    a = [sample_noise("rician", (2, 10), x, np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1] and np.array_equal(apply_noise(x, a[0]), apply_noise(x, a[1]))
    rng = np.random.default_rng(1)
    draws = [sample_noise("gaussian", (2, 10), x, rng) for _ in range(50)]
    levels = [d.level for d in draws]
    assert 2 <= min(levels) < 4 and 8 < max(levels) <= 10
    assert len({d.seed for d in draws}) == 50


def test_bad_levels_and_models_are_clear_errors():
    with pytest.raises(InvalidInputError, match="LOW HIGH"):
        sample_noise("gaussian", (10, 2), np.ones((4, 4)), np.random.default_rng(0))
    with pytest.raises(ValueError):
        sample_noise("salt", (1, 2), np.ones((4, 4)), np.random.default_rng(0))


def test_scaling_is_robust_and_reversible():
    x = np.linspace(-1000, 3000, 1001)
    z, offset, scale = scale_to_unit(x)
    assert (offset, scale) == pytest.approx(robust_range(x))
    assert np.percentile(z, 0.5) == pytest.approx(0.0, abs=1e-6)
    assert scale_to_unit(np.full((4, 4), 7.0))[2] == 1.0  # constant: no division by zero
