"""A guideline suggestion as a FHIR R4 Observation, separate from the AI findings.

Each applied :class:`~medsight.clinical.guideline_facts.GuidelineSuggestion` becomes one
``preliminary`` Observation of category ``survey`` (an assessment scale's result, R4
observation-category) with a second category saying "Guideline suggestion (decision support,
not a diagnosis)".  Its code names the rule set (``urn:medsight:guideline``, the rule set's
name and title), its value the category (system ``urn:medsight:guideline:<name>:<version>``,
code the category id, display its label).  It is ``derivedFrom`` the Observations of the
findings it assessed and the ImagingStudy; ``method`` names the rule set and citation,
``note`` carries the recommendation, the rules that fired and the facts with their sources.
It is not a ``DiagnosticReport.result``: the report's results are the AI findings only.

Examples
--------
>>> from medsight.clinical.guideline_facts import GuidelineItem, build_suggestions
>>> from medsight.core.codes import DIAMETER, MILLIMETER, Code
>>> from medsight.core.findings import Finding, Measurement
>>> f = Finding(Code("n", "99MEDSIGHT", "Nodule"), "toy", "1", kind="detection",
...             measurements=(Measurement(DIAMETER, 9.0, MILLIMETER),))
>>> s = build_suggestions([f], {0: GuidelineItem("lung-nodule", {"type": "solid"}, "toy")},
...                       attributes={"ct_indication": "screening", "screening_round": "baseline"})
>>> obs = suggestion_observation(s[0], "urn:uuid:p", ["urn:uuid:o"], "2026-01-01T00:00:00+00:00")
>>> obs["valueCodeableConcept"]["coding"][0]["code"], obs["derivedFrom"]
('4A', [{'reference': 'urn:uuid:o'}])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medsight.clinical.guideline_facts import SUGGESTION_HEADING, GuidelineSuggestion

__all__ = ["GUIDELINE_SYSTEM", "suggestion_observation"]

#: The code system of medsight's rule sets (the code is the rule set's name).
GUIDELINE_SYSTEM = "urn:medsight:guideline"


def suggestion_observation(
    suggestion: GuidelineSuggestion, patient_ref: str, derived_from: Sequence[str], issued: str
) -> dict[str, Any]:
    """The Observation of an applied suggestion (see the module documentation).

    Raises
    ------
    ValueError
        ``suggestion`` was not applied (it has no category to state).
    """
    result = suggestion.result
    if result is None:
        raise ValueError(f"guideline {suggestion.ruleset} was not applied: no Observation")
    return {
        "resourceType": "Observation",
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "survey",
                        "display": "Survey",
                    }
                ]
            },
            {"text": SUGGESTION_HEADING},
        ],
        "code": {
            "coding": [
                {
                    "system": GUIDELINE_SYSTEM,
                    "code": suggestion.ruleset,
                    "display": suggestion.title,
                }
            ],
            "text": f"{suggestion.title}: assessment category (guideline suggestion)",
        },
        "subject": {"reference": patient_ref},
        "issued": issued,
        "valueCodeableConcept": {
            "coding": [
                {
                    "system": f"{GUIDELINE_SYSTEM}:{suggestion.ruleset}:{suggestion.version}",
                    "code": result.category,
                    "display": result.label,
                }
            ],
            "text": f"{result.display} ({result.label})",
        },
        "method": {
            "text": f"medsight rule set {suggestion.name}; source: {suggestion.citation_text()}"
        },
        "derivedFrom": [{"reference": ref} for ref in derived_from],
        "note": [{"text": suggestion.text()}],
    }
