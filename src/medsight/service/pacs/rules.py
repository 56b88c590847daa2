"""Routing rules: which packages run on a study that arrives over DIMSE.

Examples
--------
>>> from medsight.service.ingest import StudyFacts
>>> rules = [RoutingRule(modality="MR", packages=["brain@1"]), RoutingRule(modality="CT")]
>>> match(rules, StudyFacts(uid="1", modalities={"CT"})).modality
'CT'
>>> match(rules[:1], StudyFacts(uid="1", modalities={"CT"})) is None
True
"""

from __future__ import annotations

from collections.abc import Sequence

from medsight.service.ingest import StudyFacts
from medsight.service.settings import RoutingRule

__all__ = ["match"]


def match(rules: Sequence[RoutingRule], facts: StudyFacts) -> RoutingRule | None:
    """The first rule whose modality, body part and description all fit ``facts``."""
    for rule in rules:
        if rule.modality and rule.modality.upper() not in {m.upper() for m in facts.modalities}:
            continue
        if rule.body_part and rule.body_part.upper() != facts.body_part.upper():
            continue
        if rule.description and rule.description.lower() not in facts.description.lower():
            continue
        return rule
    return None
