"""Harrell's concordance index for time-to-event predictions (censoring and ties handled).

A pair ``(i, j)`` is comparable when ``i`` had the event first: ``d_i = 1`` and ``t_j > t_i``,
or ``t_j == t_i`` with ``j`` censored (a case censored at an event time was still at risk).
Two events at the same time are not comparable.  A comparable pair is concordant when the
earlier one has the higher risk; tied risks count one half.  These are the rules of
``lifelines.utils.concordance_index`` (which takes predicted *survival* times, i.e. minus the
risk), the reference the tests compare against.

Examples
--------
>>> concordance_index([1, 2, 3], [3.0, 2.0, 1.0], [1, 1, 1])
1.0
>>> concordance_index([1, 2, 3], [1.0, 1.0, 1.0], [1, 0, 1])
0.5
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from medsight.core.errors import InvalidInputError

__all__ = ["concordance_index", "concordant_pairs"]


def concordant_pairs(time: ArrayLike, risk: ArrayLike, event: ArrayLike) -> tuple[float, int]:
    """``(concordant + 0.5 * tied-risk pairs, comparable pairs)``."""
    t = np.asarray(time, dtype=np.float64).reshape(-1)
    r = np.asarray(risk, dtype=np.float64).reshape(-1)
    d = np.asarray(event).reshape(-1).astype(bool)
    if not len(t) == len(r) == len(d):
        raise InvalidInputError("concordance", f"lengths differ: {len(t)}, {len(r)}, {len(d)}")
    if not (np.isfinite(t).all() and np.isfinite(r).all()):
        raise InvalidInputError("concordance", "times and risks must be finite")
    later = t[None, :] > t[:, None]
    same_censored = (t[None, :] == t[:, None]) & ~d[None, :]
    comparable = d[:, None] & (later | same_censored)
    np.fill_diagonal(comparable, False)
    higher = r[:, None] > r[None, :]
    tied = r[:, None] == r[None, :]
    score = float((comparable & higher).sum() + 0.5 * (comparable & tied).sum())
    return score, int(comparable.sum())


def concordance_index(time: ArrayLike, risk: ArrayLike, event: ArrayLike) -> float:
    """Harrell's C-index of ``risk`` (higher = earlier event) for ``(time, event)``.

    Raises
    ------
    ValueError
        No comparable pair (e.g. no event): undefined, so a bootstrap skips the resample.
    """
    score, n = concordant_pairs(time, risk, event)
    if n == 0:
        raise ValueError("no comparable pairs: the C-index is undefined")
    return score / n
