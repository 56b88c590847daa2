"""What a label means clinically, and how urgently a positive finding of it needs a reader.

A model's label names ("benign or normal", "DR grade 1 (mild)") say nothing a worklist can act
on, so every label of a package states its :class:`Significance` and, when it is actionable, its
:class:`Urgency`:

``normal``
    No abnormality (``no diabetic retinopathy``, ``normal``): never flags a study.
``benign``
    An abnormality that needs no action beyond routine care (benign lesion, non-referable mild
    retinopathy): never flags a study.
``anatomy``
    A normal structure a segmentation model outlines and measures (hippocampus): never flags.
``actionable``
    A finding a reader must act on (malignancy, pneumonia, referable retinopathy): a positive
    finding flags the study, at the label's urgency.
``indeterminate``
    The meaning is unknown or uncertain.  This is also what a label *without* a stated
    significance is treated as (packages made before labels carried their meaning, a trainer run
    without ``--label-meaning``): such a finding is never silently dismissed as normal, the
    worklist shows it as "unknown significance" with its reason, ranked above studies without
    findings but below actionable flags at the same urgency.

An actionable label without a stated urgency is triaged as ``urgent``: when the package does not
say how soon, the worklist errs on the side of reading it sooner.

:class:`Urgency` is the one urgency scale of medsight: the referrer's order priority in the
service and a label's urgency are the same enum, so the worklist can take the higher of the two.

Examples
--------
>>> parse_meaning("actionable:stat")
(<Significance.ACTIONABLE: 'actionable'>, <Urgency.STAT: 'stat'>)
>>> parse_meaning("benign")
(<Significance.BENIGN: 'benign'>, None)
>>> triage_urgency(Significance.ACTIONABLE, None), triage_urgency(Significance.NORMAL, None)
(<Urgency.URGENT: 'urgent'>, None)
>>> Urgency.STAT.rank > Urgency.URGENT.rank > Urgency.ROUTINE.rank
True
>>> parse_label_meanings(["malignant=actionable:urgent", "benign or normal=benign"])
{'malignant': 'actionable:urgent', 'benign or normal': 'benign'}
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from medsight.core.errors import InvalidInputError

__all__ = [
    "Significance",
    "Urgency",
    "parse_label_meanings",
    "parse_meaning",
    "triage_urgency",
]


class Significance(StrEnum):
    """What a label means clinically (see the module documentation)."""

    NORMAL = "normal"
    BENIGN = "benign"
    INDETERMINATE = "indeterminate"
    ACTIONABLE = "actionable"
    ANATOMY = "anatomy"

    @property
    def flags(self) -> bool:
        """Whether a positive finding of this meaning flags a study."""
        return self is Significance.ACTIONABLE

    @property
    def dismissible(self) -> bool:
        """Whether a finding of this meaning may be left out of triage altogether."""
        return self in (Significance.NORMAL, Significance.BENIGN, Significance.ANATOMY)


class Urgency(StrEnum):
    """How soon a study needs a reader: the referrer's order priority or a finding's urgency."""

    ROUTINE = "routine"
    URGENT = "urgent"
    STAT = "stat"

    @property
    def rank(self) -> int:
        """Position in the order routine < urgent < stat."""
        return list(Urgency).index(self)


def triage_urgency(significance: Significance | None, urgency: Urgency | None) -> Urgency | None:
    """The urgency a positive finding lends its study (None: it does not raise it)."""
    if significance is not Significance.ACTIONABLE:
        return None
    return urgency or Urgency.URGENT


def parse_meaning(text: str) -> tuple[Significance, Urgency | None]:
    """``"actionable:urgent"``, ``"actionable"``, ``"benign"`` ... -> (significance, urgency).

    Raises
    ------
    InvalidInputError
        An unknown significance or urgency, or an urgency on a non-actionable meaning.
    """
    head, _, tail = text.strip().lower().partition(":")
    try:
        significance = Significance(head.strip())
        urgency = Urgency(tail.strip()) if tail.strip() else None
    except ValueError:
        raise InvalidInputError(
            f"label meaning {text!r}",
            f"must be one of {', '.join(Significance)} (actionable may add :{'|'.join(Urgency)})",
        ) from None
    if urgency is not None and significance is not Significance.ACTIONABLE:
        raise InvalidInputError(f"label meaning {text!r}", "only actionable labels have urgency")
    return significance, urgency


def parse_label_meanings(items: Iterable[str]) -> dict[str, str]:
    """``["NAME=MEANING", ...]`` (command-line options) -> ``{name: meaning}``, each checked."""
    out = {}
    for item in items:
        name, sep, meaning = item.rpartition("=")
        if not sep or not name.strip():
            raise InvalidInputError(f"label meaning {item!r}", "must read NAME=MEANING")
        parse_meaning(meaning)
        out[name.strip()] = meaning.strip()
    return out
