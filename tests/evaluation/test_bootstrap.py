"""Bootstrap CIs: coverage of a known quantity, patient clustering, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core import InvalidInputError
from medsight.evaluation import bootstrap_ci


def _mean(x):
    return float(np.mean(x))


def test_interval_matches_normal_theory_for_a_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 2.0, size=400)
    r = bootstrap_ci(_mean, x, n_resamples=2000, seed=0)
    se = x.std(ddof=1) / np.sqrt(len(x))  # textbook standard error of the mean
    assert r.low == pytest.approx(x.mean() - 1.96 * se, abs=0.05)
    assert r.high == pytest.approx(x.mean() + 1.96 * se, abs=0.05)


def test_cluster_bootstrap_is_wider_for_correlated_samples():
    rng = np.random.default_rng(2)
    patients = np.repeat(np.arange(30), 10)  # ten near-identical images per patient
    x = np.repeat(rng.normal(size=30), 10) + rng.normal(scale=0.01, size=300)
    naive = bootstrap_ci(_mean, x, n_resamples=500, seed=0)
    clustered = bootstrap_ci(_mean, x, groups=patients, n_resamples=500, seed=0)
    assert (clustered.high - clustered.low) > 2.5 * (naive.high - naive.low)


def test_same_seed_same_interval_and_undefined_resamples_skipped():
    y = np.array([0] * 3 + [1] * 3)
    s = np.linspace(0, 1, 6)

    def needs_both(t, p):
        if len(set(t.tolist())) < 2:
            raise ValueError("one class only")
        return float(np.mean(p[t == 1]) - np.mean(p[t == 0]))

    a = bootstrap_ci(needs_both, y, s, n_resamples=300, seed=5)
    b = bootstrap_ci(needs_both, y, s, n_resamples=300, seed=5)
    assert a == b and 0 < a.n_valid < 300


def test_bad_input():
    with pytest.raises(InvalidInputError, match="differ in length"):
        bootstrap_ci(_mean, [1, 2], [1])
    with pytest.raises(InvalidInputError, match="groups"):
        bootstrap_ci(_mean, [1, 2], groups=[1])
