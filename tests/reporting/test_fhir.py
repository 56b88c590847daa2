"""FHIR Bundle: validated against fhir.resources' R4B models, references resolve."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.bundle import Bundle

from medsight.core import Finding, FindingKind, InvalidInputError, Measurement
from medsight.core.codes import HIPPOCAMPUS, MILLILITER, NEOPLASM, VOLUME
from medsight.reporting import fhir
from medsight.reporting.fhir import StudyInfo, build_bundle

STUDY = StudyInfo("1.2.840.1", "PAT1", "MR", series=(("1.2.840.1.1", "MR", 32),))


def test_bundle_validates_and_references_resolve():
    findings = [
        Finding(HIPPOCAMPUS, "hippo", "1.0", measurements=(Measurement(VOLUME, 3.25, MILLILITER),)),
        Finding(
            NEOPLASM,
            "tumour",
            "0.3",
            kind=FindingKind.CLASSIFICATION,
            probability=0.2,
            positive=False,
        ),
    ]
    data = build_bundle(findings, STUDY, conclusion="test")
    bundle = Bundle.model_validate(data)
    urls = {e.fullUrl for e in bundle.entry}
    report = data["entry"][-1]["resource"]
    assert report["resourceType"] == "DiagnosticReport" and report["status"] == "preliminary"
    assert {r["reference"] for r in report["result"]} <= urls
    assert report["imagingStudy"][0]["reference"] in urls
    obs = [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert obs[0]["component"][0]["valueQuantity"] == {
        "value": 3.25,
        "unit": "mL",
        "system": "http://unitsofmeasure.org",
        "code": "mL",
    }
    assert obs[1]["valueCodeableConcept"]["coding"][0]["code"] == "272519000"  # Absent
    study = data["entry"][1]["resource"]
    assert study["identifier"][0]["value"] == "urn:oid:1.2.840.1"


def test_invalid_resource_is_reported(monkeypatch):
    def broken(*args, **kwargs):
        obs = original(*args, **kwargs)
        obs["valueQuantity"] = {"value": "many"}  # a decimal is required
        return obs

    original = fhir._observation
    monkeypatch.setattr(fhir, "_observation", broken)
    with pytest.raises(InvalidInputError, match="fails validation"):
        build_bundle([Finding(HIPPOCAMPUS, "m", "1")], STUDY)
