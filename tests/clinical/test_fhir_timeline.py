"""Timelines from a FHIR Bundle: visits from ImagingStudy, values carried forward, outcome."""

from __future__ import annotations

import json

import pytest

from medsight.clinical.fhir_timeline import timelines_from_bundle
from medsight.core import Case, InvalidInputError
from medsight.data import Dataset


def _obs(oid, pid, text, day, **value):
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {
            "text": text,
            "coding": [{"system": "http://loinc.org", "code": "8310-5" if text == "temp" else "x"}],
        },
        "effectiveDateTime": day,
        **value,
    }


def _bundle(tmp_path):
    entries = [
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-06-15"},
        {"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1970-01-01"},
        {"resourceType": "Patient", "id": "p3", "gender": "male", "birthDate": "1980-01-01"},
        {
            "resourceType": "ImagingStudy",
            "id": "s2",
            "status": "available",
            "subject": {"reference": "Patient/p1"},
            "started": "2020-06-20",
            "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.2"}],
        },
        {
            "resourceType": "ImagingStudy",
            "id": "s1",
            "status": "available",
            "subject": {"reference": "Patient/p1"},
            "started": "2020-06-10",
            "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.1"}],
        },
        _obs("t1", "p1", "temp", "2020-06-09", valueQuantity={"value": 38.5, "unit": "Cel"}),
        _obs("t2", "p1", "temp", "2020-06-18", valueQuantity={"value": 37.0, "unit": "Cel"}),
        _obs("t3", "p1", "temp", "2020-06-25", valueQuantity={"value": 40.0, "unit": "Cel"}),
        _obs("i1", "p1", "icu", "2020-06-21", valueBoolean=True),
        {
            "resourceType": "ImagingStudy",
            "id": "s3",
            "status": "available",
            "subject": {"reference": "Patient/p2"},
            "started": "2021-01-01",
        },
        _obs("i2", "p2", "icu", "2021-01-03", valueCodeableConcept={"text": "N"}),
        {
            "resourceType": "ImagingStudy",
            "id": "s4",
            "status": "available",
            "subject": {"reference": "Patient/p3"},
            "started": "2021-01-01",
        },
    ]
    path = tmp_path / "export.json"
    path.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in entries],
            }
        )
    )
    return path


def test_bundle_timelines(tmp_path):
    path = _bundle(tmp_path)
    ds = Dataset(
        "imgs", [Case("img-b", patient_id="p1", attributes={"StudyInstanceUID": "1.2.3.2"})]
    )
    ts = timelines_from_bundle(path, target="icu", features="age,sex,8310-5", dataset=ds)
    assert [t.patient_id for t in ts] == ["p1", "p2"]
    assert ts.excluded == {"patients_without_target": 1}  # p3: a study but no outcome
    p1 = ts[0]
    assert p1.outcome.label == 1 and ts[1].outcome.label == 0
    assert [v.time_days for v in p1.visits] == [0.0, 10.0]  # ordered by ImagingStudy.started
    # the value at each visit: the latest observation on or before it, never a later one
    assert [v.values["8310-5"] for v in p1.visits] == [38.5, 37.0]
    assert [v.values["age"] for v in p1.visits] == [69.0, 70.0]  # birthday in between
    assert p1.visits[0].case is None and p1.visits[1].case.case_id == "img-b"
    assert {v.name: v.kind.value for v in ts.variables}["8310-5"] == "numeric"


def test_bundle_without_outcomes(tmp_path):
    with pytest.raises(InvalidInputError, match="no patient"):
        timelines_from_bundle(_bundle(tmp_path), target="intubated", features="age")
