"""One report per study, never two patients in one report (the clinical-safety issue)."""

from __future__ import annotations

import json

import pydicom
import pytest
from pydicom.uid import generate_uid

from medsight.analysis.pipeline import analyze, analyze_studies
from medsight.core import InvalidInputError


def _copy(src, dest, *, patient, name, study_uid, series_uid=None):
    ds = pydicom.dcmread(src)
    ds.PatientID, ds.PatientName = patient, name
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return ds


def _two_patients(folder, ct):
    a = _copy(
        ct, folder / "a" / "1.dcm", patient="PAT-A", name="Alpha^Ann", study_uid=generate_uid()
    )
    b = _copy(
        ct, folder / "b" / "1.dcm", patient="PAT-B", name="Beta^Bob", study_uid=generate_uid()
    )
    return a, b


def test_folder_with_two_patients_gives_one_report_per_study(
    tmp_path, pydicom_file, tiny_classifier
):
    a, b = _two_patients(tmp_path / "in", pydicom_file("CT_small.dcm"))
    out = tmp_path / "out"
    outcomes = analyze_studies(tmp_path / "in", out, [tiny_classifier()])
    assert len(outcomes) == 2 and all(o.result is not None for o in outcomes)
    seen = {}
    for o in outcomes:
        report = json.loads((o.out_dir / "report.json").read_text())
        bundle = json.loads((o.out_dir / "fhir_bundle.json").read_text())
        patient = report["study"]["PatientID"]
        seen[report["study"]["StudyInstanceUID"]] = patient
        subjects = {
            e["resource"]["subject"]["reference"]
            for e in bundle["entry"]
            if "subject" in e["resource"]
        }
        patients = [
            e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
        ]
        ids = {i["value"] for p in patients for i in p.get("identifier", [])}
        assert ids == {patient}, "the Bundle names only this study's patient"
        assert len(subjects) == 1
        sr = pydicom.dcmread(o.out_dir / report["outputs"]["DICOM SR"])
        assert sr.PatientID == patient and sr.StudyInstanceUID == o.group.study_uid
    assert seen == {a.StudyInstanceUID: "PAT-A", b.StudyInstanceUID: "PAT-B"}
    index = json.loads((out / "index.json").read_text())
    assert sorted(r["patient_id"] for r in index["studies"]) == ["PAT-A", "PAT-B"]
    assert not (out / "report.json").exists(), "no report covering both studies"
    page = (out / "index.html").read_text()
    assert "2 of 2 studies analysed" in page and page.count('/report.html"') == 2


def test_analyze_refuses_a_folder_with_two_studies(tmp_path, pydicom_file, tiny_classifier):
    _two_patients(tmp_path / "in", pydicom_file("CT_small.dcm"))
    with pytest.raises(InvalidInputError, match="holds 2 studies"):
        analyze(tmp_path / "in", tmp_path / "out", [tiny_classifier()])
    assert not (tmp_path / "out").exists()


def test_one_study_uid_with_two_patients_is_not_analysed(tmp_path, pydicom_file, tiny_classifier):
    ct = pydicom_file("CT_small.dcm")
    pkg = tiny_classifier()
    uid = generate_uid()
    _copy(ct, tmp_path / "in" / "a.dcm", patient="PAT-A", name="Alpha^Ann", study_uid=uid)
    _copy(ct, tmp_path / "in" / "b.dcm", patient="PAT-B", name="Beta^Bob", study_uid=uid)
    with pytest.raises(InvalidInputError, match="2 different patients"):
        analyze(tmp_path / "in", tmp_path / "out", [pkg])
    # beside a good study, the conflicting one is listed as not analysed, the good one finishes
    _copy(ct, tmp_path / "in" / "c.dcm", patient="PAT-C", name="Gamma^C", study_uid=generate_uid())
    outcomes = analyze_studies(tmp_path / "in", tmp_path / "out2", [pkg])
    status = sorted((o.group.patient_id, o.result is not None) for o in outcomes)
    assert status == [("PAT-A", False), ("PAT-C", True)]
    assert "a report must name one patient" in next(o.error for o in outcomes if o.error)


def test_files_of_two_patients_in_one_series_are_refused(tmp_path, pydicom_file, tiny_classifier):
    ct = pydicom_file("CT_small.dcm")
    uid, series = generate_uid(), generate_uid()
    _copy(
        ct, tmp_path / "in" / "a.dcm", patient="PAT-A", name="A", study_uid=uid, series_uid=series
    )
    b = pydicom.dcmread(tmp_path / "in" / "a.dcm")
    b.PatientID = "PAT-B"
    b.SOPInstanceUID = generate_uid()
    b.ImagePositionPatient = [float(v) + 5 for v in b.ImagePositionPatient]
    b.save_as(tmp_path / "in" / "b.dcm")
    with pytest.raises(InvalidInputError, match="several patients"):
        analyze(tmp_path / "in", tmp_path / "out", [tiny_classifier()])


def test_identity_less_files_are_reported_apart(tmp_path, tiny_classifier):
    import numpy as np
    from PIL import Image as PILImage

    for k in range(2):
        arr = (np.random.default_rng(k).random((32, 32)) * 255).astype(np.uint8)
        PILImage.fromarray(arr).save(tmp_path / f"img{k}.png")
    outcomes = analyze_studies(tmp_path, tmp_path / "out", [tiny_classifier()])
    assert [o.out_dir.name for o in outcomes] == ["img0.png", "img1.png"]
    assert all((o.out_dir / "report.html").is_file() for o in outcomes)
