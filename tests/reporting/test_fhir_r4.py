"""The FHIR Bundle is R4 (what EHRs speak): R4B models plus the explicit R4 differences."""

from __future__ import annotations

import copy
import datetime

import pytest

from medsight.clinical.longitudinal import Response
from medsight.core import Finding, FindingKind, InvalidInputError, Measurement
from medsight.core.codes import HIPPOCAMPUS, MASS, MILLILITER, NEOPLASM, VOLUME
from medsight.core.findings import Region
from medsight.reporting import fhir
from medsight.reporting.fhir import StudyInfo, build_bundle
from medsight.reporting.fhir_r4 import acquisition_modalities, check_r4, r4_problems

STUDY = StudyInfo(
    "1.2.840.1",
    "PAT1",
    "MR",
    series=(("1.2.840.1.1", "MR", 32), ("1.2.840.1.2", "SEG", 1), ("1.2.840.1.3", "SR", 1)),
)
PRIOR = StudyInfo("1.2.840.2", "PAT1", "MR", series=(("1.2.840.2.1", "MR", 30),))


def _findings() -> list[Finding]:
    return [
        Finding(HIPPOCAMPUS, "hippo", "1", measurements=(Measurement(VOLUME, 3.2, MILLILITER),)),
        Finding(
            NEOPLASM, "cls", "1", kind=FindingKind.CLASSIFICATION, probability=0.7, positive=True
        ),
        Finding(
            MASS,
            "det",
            "1",
            kind=FindingKind.DETECTION,
            probability=0.9,
            region=Region((5, 6), (3, 3)),
        ),
        Finding(Response.SD.code, "hippo", "1", kind=FindingKind.CHANGE),
    ]


def _bundle() -> dict:
    when = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    return build_bundle(_findings(), STUDY, conclusion="c", issued=when, prior=PRIOR)


def _resources(bundle, kind):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_every_kind_of_finding_gives_an_r4_bundle():
    bundle = _bundle()
    assert r4_problems(bundle) == []
    report = _resources(bundle, "DiagnosticReport")[0]
    assert report["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "18748-4",
        "display": "Diagnostic imaging study",
    }
    study = _resources(bundle, "ImagingStudy")[0]
    assert study["modality"] == [
        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}
    ]  # SEG and SR are series modalities, not acquisition modalities
    assert [s["modality"]["code"] for s in study["series"]] == ["MR", "SEG", "SR"]
    probability = _resources(bundle, "Observation")[1]["component"][0]["code"]
    assert probability["coding"][0]["code"] == "122157"  # DCM Probability


def test_a_study_without_dicom_has_no_modality_rather_than_a_guess():
    bundle = build_bundle([Finding(NEOPLASM, "c", "1", probability=0.2)], StudyInfo("", "", "OT"))
    assert "modality" not in _resources(bundle, "ImagingStudy")[0]
    assert r4_problems(bundle) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda b: b.update(type="subscription-notification"), "R4B-only"),
        (
            lambda b: b["entry"].append(
                {"fullUrl": "urn:uuid:x", "resource": {"resourceType": "SubscriptionStatus"}}
            ),
            "SubscriptionStatus is R4B-only",
        ),
        (
            lambda b: _resources(b, "ImagingStudy")[0].update(
                modality=[{"coding": [{"system": "x", "code": "MR"}]}]
            ),
            "must be a Coding",
        ),
        (
            lambda b: _resources(b, "ImagingStudy")[0]["modality"][0].update(code="SR"),
            "not an acquisition modality",
        ),
        (
            lambda b: _resources(b, "ImagingStudy")[0]["series"][0]["modality"].update(code="MRX"),
            "not a DICOM modality",
        ),
        (
            lambda b: _resources(b, "DiagnosticReport")[0]["code"]["coding"][0].update(
                display="Diagnostic Imaging Report"
            ),
            "LOINC 18748-4 display",
        ),
        (
            lambda b: _resources(b, "Observation")[0]["code"]["coding"][0].pop("system"),
            "absolute system",
        ),
        (
            lambda b: _resources(b, "DiagnosticReport")[0]["result"].append(
                {"reference": "urn:uuid:0000"}
            ),
            "resolves to no entry",
        ),
        (
            lambda b: _resources(b, "Observation")[0].update(
                extension=[{"url": "http://x", "valueString": "y"}],
                focus=[{"concept": {"text": "x"}}],
            ),
            "CodeableReference",
        ),
        (lambda b: _resources(b, "Observation")[0].update(status="bogus"), "required value set"),
        (
            lambda b: _resources(b, "Observation")[0].update(valueQuantity={"value": "x"}),
            "fails validation",
        ),
    ],
)
def test_each_r4_difference_is_caught(change, problem):
    bundle = copy.deepcopy(_bundle())
    change(bundle)
    problems = r4_problems(bundle)
    assert any(problem in p for p in problems), problems
    with pytest.raises(InvalidInputError, match="not valid FHIR R4"):
        check_r4(bundle)


def test_the_writer_refuses_a_bundle_that_is_not_r4(monkeypatch):
    original = fhir._imaging_study

    def r4b_only(*args, **kwargs):
        study = original(*args, **kwargs)
        study["modality"] = [{"system": fhir._DICOM_SYSTEM, "code": "SEG"}]  # R4B model accepts
        return study

    monkeypatch.setattr(fhir, "_imaging_study", r4b_only)
    with pytest.raises(InvalidInputError, match="acquisition modality"):
        build_bundle([Finding(NEOPLASM, "c", "1")], STUDY)


def test_the_acquisition_modalities_are_dicom_cid_29():
    assert {"CT", "MR", "US", "MG", "DX", "CR", "PT", "NM", "XA"} <= acquisition_modalities()
    assert not {"SEG", "SR", "OT", "PR", "KO"} & acquisition_modalities()
