"""Cox proportional-hazards partial likelihood as a torch loss (Breslow's method for ties).

For risk scores ``r`` (log hazard ratios), times ``t`` and event indicators ``d``, the Breslow
negative log partial likelihood is

    -sum_{i: d_i = 1} [ r_i - log sum_{j: t_j >= t_i} exp(r_j) ]

(every event tied at a time shares that time's full risk set), divided here by the number of
events so the scale does not depend on the batch.  This is the likelihood ``lifelines``'
``CoxPHFitter`` maximises (it uses Efron's method by default; with no tied event times the two
coincide), which the tests compare against.

Examples
--------
>>> import torch
>>> loss = cox_ph_loss(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 2.0]), torch.tensor([1, 0]))
>>> round(float(loss), 4)  # one event, risk set of 2 equal scores: log 2
0.6931
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medsight.core.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

__all__ = ["cox_ph_loss"]


def cox_ph_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Breslow negative log partial likelihood per event (a scalar tensor).

    Parameters
    ----------
    risk : tensor (n,)
        Predicted log hazard ratio (higher = earlier event).
    time : tensor (n,)
        Time to event or censoring.
    event : tensor (n,)
        1 where the event was observed, 0 where censored.

    Raises
    ------
    InvalidInputError
        Shapes differ, or there is no event (the partial likelihood is undefined).
    """
    import torch

    risk = risk.reshape(-1)
    time = time.reshape(-1).to(risk.dtype)
    event = event.reshape(-1).to(risk.dtype)
    if not len(risk) == len(time) == len(event):
        raise InvalidInputError(
            "cox loss", f"lengths differ: {len(risk)}, {len(time)}, {len(event)}"
        )
    n_events = event.sum()
    if float(n_events) == 0:
        raise InvalidInputError("cox loss", "no observed event in the batch")
    at_risk = time[None, :] >= time[:, None]  # row i: who is still at risk at t_i
    masked = risk[None, :].expand(len(risk), -1).masked_fill(~at_risk, float("-inf"))
    log_risk_set = torch.logsumexp(masked, dim=1)
    return -((risk - log_risk_set) * event).sum() / n_events
