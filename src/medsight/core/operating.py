"""A decision written beside its operating point: one phrase for every page (numpy-free).

A classifier's decision is only readable with its threshold: the zoo's BreastMNIST model is
positive for malignant from a probability of about 0.05 (a high-sensitivity operating point),
so "positive, probability 0.06" without the threshold reads like a bug.  The report, the study
page, the worklist flag reason and the CDS Hooks card all write the decision with
:func:`operating_text`; both numbers go through
:func:`~medsight.core.display.format_probability`, and when the two would print the same
(0.051 and 0.052 are both ``0.05``) both get three decimals, so the reader sees on which side
of the threshold the probability lies.  A finding without a threshold (arg-max decisions,
reports written before findings carried one) says nothing about it.

Examples
--------
>>> operating_text(0.06, 0.052, True)
'probability 0.06, positive at the operating threshold 0.05'
>>> operating_text(0.051, 0.052, False)
'probability 0.051, negative at the operating threshold 0.052'
>>> operating_text(0.3, None, False)
'probability 0.30'
"""

from __future__ import annotations

from medsight.core.display import format_probability

__all__ = ["operating_text", "probability_pair", "threshold_phrase"]


def probability_pair(probability: float, threshold: float | None) -> tuple[str, str]:
    """``probability`` and ``threshold`` as written (``""`` for a missing threshold).

    Two decimals (:func:`~medsight.core.display.format_probability`), three for both when
    two decimals would write them the same.

    Examples
    --------
    >>> probability_pair(0.0612, 0.052), probability_pair(0.0518, 0.052)
    (('0.06', '0.05'), ('0.052', '0.052'))
    >>> probability_pair(0.0004, 0.002), probability_pair(0.5, None)
    (('<0.001', '0.002'), ('0.50', ''))
    """
    if threshold is None:
        return format_probability(probability), ""
    p, t = format_probability(probability), format_probability(threshold)
    if p == t:
        return format_probability(probability, 3), format_probability(threshold, 3)
    return p, t


def threshold_phrase(
    probability: float | None, threshold: float | None, positive: bool | None
) -> str:
    """``"positive at the operating threshold 0.05"`` (or negative); ``""`` without a
    threshold."""
    if threshold is None:
        return ""
    t = probability_pair(probability, threshold)[1] if probability is not None else None
    t = t or format_probability(threshold)
    side = "" if positive is None else ("positive " if positive else "negative ")
    return f"{side}at the operating threshold {t}"


def operating_text(
    probability: float | None, threshold: float | None, positive: bool | None
) -> str:
    """``"probability 0.06, positive at the operating threshold 0.05"``; the probability alone
    without a threshold, ``""`` without a probability."""
    if probability is None:
        return ""
    text = f"probability {probability_pair(probability, threshold)[0]}"
    phrase = threshold_phrase(probability, threshold, positive)
    return f"{text}, {phrase}" if phrase else text
