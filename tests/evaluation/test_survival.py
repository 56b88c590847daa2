"""Cox partial likelihood and Harrell's C-index against lifelines (the independent reference:
``lifelines.utils.concordance_index`` and ``lifelines.CoxPHFitter``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from medsight.core import InvalidInputError
from medsight.evaluation.survival import concordance_index
from medsight.models.survival import cox_ph_loss

lifelines = pytest.importorskip("lifelines")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_c_index_matches_lifelines_with_ties_and_censoring(seed):
    rng = np.random.default_rng(seed)
    n = 60
    time = rng.integers(1, 15, n).astype(float)  # many tied times
    event = rng.random(n) < 0.6
    risk = np.round(rng.normal(size=n) - 0.1 * time, 1)  # tied risks too
    ours = concordance_index(time, risk, event)
    # lifelines ranks predicted survival times: a higher risk is a shorter time
    ref = lifelines.utils.concordance_index(time, -risk, event)
    assert ours == pytest.approx(ref, abs=1e-12)


def test_c_index_undefined_without_events():
    with pytest.raises(ValueError, match="comparable"):
        concordance_index([1, 2], [0.1, 0.2], [0, 0])


def _synthetic(seed: int, n: int = 200):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    beta = np.array([0.8, -0.5])
    t_event = rng.exponential(1.0 / np.exp(x @ beta))
    t_cens = rng.exponential(2.0, n)
    return x, np.minimum(t_event, t_cens), (t_event <= t_cens).astype(float)


def test_cox_loss_on_a_linear_model_gives_lifelines_coefficients():
    x, time, event = _synthetic(0)
    assert len(np.unique(time)) == len(time)  # no ties: Breslow = Efron (lifelines' default)
    ref = lifelines.CoxPHFitter().fit(
        pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "T": time, "E": event}), "T", "E"
    )
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    xt, tt, et = (torch.from_numpy(a) for a in (x, time, event))
    opt = torch.optim.LBFGS([w], max_iter=200, tolerance_grad=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = cox_ph_loss(xt @ w, tt, et)
        loss.backward()
        return loss

    opt.step(closure)
    assert w.detach().numpy() == pytest.approx(ref.params_.to_numpy(), abs=1e-4)
    # the loss is lifelines' log partial likelihood per event
    loss = float(cox_ph_loss(xt @ w.detach(), tt, et))
    assert -loss * event.sum() == pytest.approx(ref.log_likelihood_, abs=1e-5)


def test_breslow_ties_by_hand():
    # events at t=1 (two, tied) and t=2; the tied events share the full risk set {0, 1, 2, 3}
    r = torch.tensor([0.5, -0.2, 0.3, 0.0], dtype=torch.float64)
    t = torch.tensor([1.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    e = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    ex = np.exp(r.numpy())
    ll = (0.5 - math.log(ex.sum())) + (-0.2 - math.log(ex.sum())) + (0.3 - math.log(ex[2:].sum()))
    assert float(cox_ph_loss(r, t, e)) == pytest.approx(-ll / 3)


def test_cox_loss_needs_an_event():
    with pytest.raises(InvalidInputError, match="no observed event"):
        cox_ph_loss(torch.zeros(3), torch.ones(3), torch.zeros(3))
