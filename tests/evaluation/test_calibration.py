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


# ---------------------------------------------------------------- fit_calibration and friends


def _nll(p, y):
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def test_temperature_at_the_bound_is_a_failed_fit_and_a_fallback_is_used():
    from medsight.evaluation.calibration import (
        CalibrationFitError,
        fit_calibration,
        temperature_at_bound,
    )

    # logits that carry (almost) nothing, at a huge scale: the NLL wants T beyond 20
    rng = np.random.default_rng(0)
    y = rng.choice(5, 400, p=[0.45, 0.15, 0.15, 0.15, 0.1])
    logits = rng.normal(size=(400, 5)) * 60 + 3.0 * np.eye(5)[y]
    assert temperature_at_bound(fit_temperature(logits, y))
    with pytest.raises(CalibrationFitError, match="bound"):
        fit_temperature(logits, y, strict=True)
    cal = fit_calibration(logits, y, "ordinal")
    assert cal.method.value in {"vector", "isotonic"} and cal.converged
    assert "temperature fit FAILED" in cal.note and "chose" in cal.note
    assert cal.nll_after < cal.nll_before / 5 and cal.ece_cv < cal.ece_before / 3
    assert set(cal.cv_nll) == {"none", "vector", "isotonic"}  # the failed fit is not scored
    spec = cal.to_spec()
    assert spec.method == cal.method and sum(spec.reliability.count) == 400
    assert spec.reliability.kind == "top-label" and spec.reliability.how.startswith("out-of-fold")
    assert np.max(cal.probabilities(logits)) < 0.99  # no more "probability 1.00"


def test_vector_scaling_and_isotonic_reduce_nll_on_a_miscalibrated_set():
    from medsight.evaluation.calibration import fit_isotonic, fit_vector_scaling
    from medsight.models.calibration import calibrated_probabilities
    from medsight.models.spec import CalibrationSpec

    rng = np.random.default_rng(1)
    n, k = 3000, 3
    y = rng.integers(0, k, n)
    true = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    # miscalibrated per class: over-confident scales and a shifted class 0
    logits = true * np.array([5.0, 2.0, 0.7]) + np.array([2.0, 0.0, -1.0])
    train, test = np.arange(n) < 2000, np.arange(n) >= 2000
    raw = _nll(softmax(logits[test]), y[test])
    params, ok = fit_vector_scaling(logits[train], y[train], "multiclass")
    assert ok
    vec = CalibrationSpec(method="vector", params=params)
    p_vec = calibrated_probabilities(logits[test], "multiclass", vec)
    iso = CalibrationSpec(
        method="isotonic", params=fit_isotonic(logits[train], y[train], "multiclass")
    )
    p_iso = calibrated_probabilities(logits[test], "multiclass", iso)
    t = fit_temperature(logits[train], y[train])
    p_t = softmax(logits[test], t)
    assert _nll(p_vec, y[test]) < _nll(p_t, y[test]) < raw  # per-class beats one scalar
    assert _nll(p_iso, y[test]) < raw
    np.testing.assert_allclose(p_iso.sum(1), 1.0)
    assert np.all(np.diff(params["scale"]) > 0)  # undoes the per-class over-confidence


def test_binary_vector_scaling_is_platt_on_the_margin_and_keeps_the_ranking():
    from medsight.evaluation.calibration import fit_vector_scaling
    from medsight.models.calibration import calibrated_probabilities
    from medsight.models.spec import CalibrationSpec

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 1000)
    margin = 3.0 * (2 * y - 1) + rng.normal(0, 3, 1000)
    logits = np.stack([np.zeros(1000), margin * 4 + 2], 1)  # over-confident and shifted
    params, ok = fit_vector_scaling(logits, y, "binary")
    assert ok and len(params["scale"]) == 1
    p = calibrated_probabilities(logits, "binary", CalibrationSpec(method="vector", params=params))
    np.testing.assert_array_equal(np.argsort(p[:, 1], kind="stable"),
                                  np.argsort(logits[:, 1], kind="stable"))  # fmt: skip
    assert _nll(p, y) < _nll(softmax(logits), y)
    # the true log-odds are 2/3 of the margin, which the logits inflate 4-fold
    assert params["scale"][0] == pytest.approx((2 / 3) / 4, rel=0.15)


def test_pool_adjacent_violators_matches_sklearn():
    from sklearn.isotonic import IsotonicRegression

    from medsight.evaluation.calibration import pool_adjacent_violators

    rng = np.random.default_rng(3)
    x = np.round(rng.random(300), 2)  # with ties
    y = (rng.random(300) < x**2).astype(float)
    kx, ky = pool_adjacent_violators(x, y)
    ref = IsotonicRegression(out_of_bounds="clip").fit(x, y)
    grid = np.linspace(-0.1, 1.1, 241)
    np.testing.assert_allclose(np.interp(grid, kx, ky), ref.predict(grid), atol=1e-12)
    assert np.all(np.diff(ky) >= 0)


def test_multiclass_keeps_argmax_decisions_while_the_temperature_fit_holds():
    from medsight.evaluation.calibration import fit_calibration

    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 600)
    logits = (rng.normal(size=(600, 4)) + 1.2 * np.eye(4)[y]) * np.array([4.0, 1.0, 1.0, 0.5])
    kept = fit_calibration(logits, y, "multiclass")
    assert kept.method.value in {"none", "temperature"} and "not eligible" in kept.note
    np.testing.assert_array_equal(kept.probabilities(logits).argmax(1), logits.argmax(1))
    free = fit_calibration(logits, y, "multiclass", keep_decisions=False)
    assert free.cv_nll[free.method.value] == min(free.cv_nll.values())
    assert free.method.value == "vector"  # the per-class distortion is worth fixing here


def test_multilabel_calibration_and_tiny_sets():
    from medsight.evaluation.calibration import fit_calibration

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, (300, 3))
    logits = (2 * y - 1) * 6.0 + rng.normal(0, 4, (300, 3))
    cal = fit_calibration(logits, y, "multilabel")
    assert cal.kind == "per-label" and sum(cal.reliability.count) == 900
    assert cal.nll_after < cal.nll_before
    tiny = fit_calibration(logits[:3], y[:3, 0], "binary")  # too few to cross-fit
    assert "too few" in tiny.note and tiny.to_spec().reliability.how.startswith("in-sample")


def _step_outcome(n=600, seed=0):
    """Binary logits whose outcome is a step in the margin: isotonic regression fits it best."""
    rng = np.random.default_rng(seed)
    m = rng.uniform(-6, 6, n)
    y = (rng.uniform(size=n) < np.where(m < 0, 0.03, 0.97)).astype(int)
    return np.stack([np.zeros(n), m], 1), y


@pytest.mark.parametrize("task", ["binary", "multilabel"])
def test_isotonic_steps_are_not_chosen_while_a_strictly_monotone_map_converged(task):
    from medsight.evaluation import classification as cm
    from medsight.evaluation.calibration import fit_calibration

    z, y = _step_outcome()
    if task == "multilabel":  # two labels, the second the same step
        z, y = z[:, 1:].repeat(2, 1), np.stack([y, y], 1)
    free = fit_calibration(z, y, task, keep_decisions=False)
    assert free.method.value == "isotonic"  # the lowest held-out NLL ...
    kept = fit_calibration(z, y, task)
    assert kept.method.value in {"temperature", "vector"}  # ... but its steps are refused
    assert kept.cv_nll["isotonic"] < kept.cv_nll[kept.method.value]  # and still recorded
    assert "isotonic not eligible" in kept.note and "distinct probabilities" in kept.note
    # what the rule protects: the isotonic map ties cases the network ranks apart
    p_free = free.probabilities(z)
    p_kept = kept.probabilities(z)
    score = z[:, -1]
    pos = y if task == "binary" else y[:, 0]
    col = -1 if task == "binary" else 0
    assert len(np.unique(p_free[:, col])) < 20 < len(np.unique(p_kept[:, col]))
    assert cm.roc_auc(pos, p_kept[:, col]) == pytest.approx(cm.roc_auc(pos, score))


def test_isotonic_is_still_the_fallback_when_no_smooth_map_converges(monkeypatch):
    from medsight.evaluation import calibration as calib

    fit_one = calib._fit_one

    def smooth_maps_fail(method, z, y, task):
        params, ok = fit_one(method, z, y, task)
        smooth = method in (calib.CalibrationMethod.TEMPERATURE, calib.CalibrationMethod.VECTOR)
        return params, ok and not smooth

    monkeypatch.setattr(calib, "_fit_one", smooth_maps_fail)
    z, y = _step_outcome()
    cal = calib.fit_calibration(z, y, "binary")
    assert cal.method.value == "isotonic" and "isotonic not eligible" not in cal.note
    assert set(cal.cv_nll) == {"none", "isotonic"}
