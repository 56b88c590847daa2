"""ECE against a loop over the definition (Guo et al. 2017, eq. 3); temperature against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from medsight.evaluation.calibration import (
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    softmax,
)


def _ece_by_definition(correct, conf, n_bins):
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = [(c, p) for c, p in zip(correct, conf, strict=True)
                  if (lo < p <= hi) or (b == 0 and p == 0)]  # fmt: skip
        if inside:
            acc = np.mean([c for c, _ in inside])
            mean_conf = np.mean([p for _, p in inside])
            total += len(inside) / len(conf) * abs(acc - mean_conf)
    return total


def test_ece_matches_the_definition():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 500)
    correct = (rng.uniform(0, 1, 500) < conf**2).astype(int)
    for n_bins in (5, 10, 15):
        ref = _ece_by_definition(correct, conf, n_bins)
        assert expected_calibration_error(correct, conf, n_bins) == pytest.approx(ref, abs=1e-9)
    bins = reliability_bins(correct, conf, 10)
    assert bins.count.sum() == 500


def test_perfectly_calibrated_predictions_have_small_ece():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0, 1, 20000)
    outcome = rng.uniform(0, 1, 20000) < conf
    assert expected_calibration_error(outcome, conf) < 0.02


def test_temperature_matches_scipy_minimiser():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 600)
    logits = (rng.normal(size=(600, 3)) + 2 * np.eye(3)[y]) * 3.0  # over-confident

    def nll(log_t):
        p = softmax(logits, np.exp(log_t))
        return -np.mean(np.log(p[np.arange(600), y]))

    ref = float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))
    assert fit_temperature(logits, y) == pytest.approx(ref, rel=1e-3)
    assert ref > 1.5  # the fixture really is over-confident


def test_temperature_scaling_lowers_ece_and_keeps_decisions():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 2000)
    logits = (rng.normal(size=(2000, 2)) + 1.0 * np.eye(2)[y]) * 4.0
    t = fit_temperature(logits, y)
    before, after = softmax(logits), softmax(logits, t)
    ece = [expected_calibration_error(p.argmax(1) == y, p.max(1)) for p in (before, after)]
    assert ece[1] < ece[0] / 2
    np.testing.assert_array_equal(before.argmax(1), after.argmax(1))
