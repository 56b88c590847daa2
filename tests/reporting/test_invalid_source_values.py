"""A source header value invalid for its VR (Patient's Age "42") is not copied into derived
objects: left out (empty when type 2), never repaired, and the report says so."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from medsight.analysis.pipeline import analyze
from medsight.io import read_image
from medsight.models.spec import LabelSpec
from medsight.reporting.dicom_seg import build_segmentation
from medsight.reporting.sources import source_datasets, source_header_problems
from medsight.reporting.validate import dciodvfy


@pytest.fixture
def bad_ct(tmp_path, pydicom_file):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    with pytest.warns(UserWarning):  # pydicom warns on writing an invalid value, and keeps it
        ds.PatientAge, ds.StudyDate = "42", "2004-01-19"
    ds.PatientWeight = "70"
    path = tmp_path / "bad.dcm"
    ds.save_as(path)
    return path


def test_seg_and_sr_of_a_bad_source_pass_dciodvfy(tmp_path, bad_ct, debian_tool, tiny_classifier):
    debian_tool("dciodvfy")
    image = read_image(bad_ct)
    assert pydicom.dcmread(bad_ct).PatientAge == "42"  # the source file itself is untouched
    problems = source_header_problems(image)
    assert len(problems) == 2 and "Patient's Age (0010,1010): '42'" in problems[0] + problems[1]
    assert any("Study Date" in p and "set empty" in p for p in problems)
    source = source_datasets(image)
    assert "PatientAge" not in source[0] and source[0].StudyDate == ""
    assert source[0].PatientWeight == 70  # a valid value is copied as it is
    mask = image.with_array((np.asarray(image.array) > np.median(image.array)).astype(np.uint8))
    labels = [LabelSpec(index=0, name="background"), LabelSpec(index=1, name="bright")]
    seg = build_segmentation(mask, image, labels, algorithm_name="t", algorithm_version="1")
    assert "PatientAge" not in seg and seg.PatientWeight == 70
    seg.save_as(tmp_path / "seg.dcm")
    assert dciodvfy(tmp_path / "seg.dcm")[0] == []

    result = analyze(bad_ct, tmp_path / "out", [tiny_classifier()], explain=False)
    assert result.dicom_errors == {}  # the SR and SC, checked by dciodvfy
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    sr = pydicom.dcmread(tmp_path / "out" / report["outputs"]["DICOM SR"])
    assert "PatientAge" not in sr and sr.PatientID == "1CT1"
    assert dciodvfy(tmp_path / "out" / report["outputs"]["DICOM SR"])[0] == []
    assert any("Patient's Age" in w and "never guessed" in w for w in report["warnings"])


def test_an_unparseable_number_is_left_out_too(tmp_path, pydicom_file):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.PatientWeight = "99.9999"
    ds.save_as(tmp_path / "x.dcm")
    raw = (tmp_path / "x.dcm").read_bytes()
    assert raw.count(b"99.9999 ") == 1
    (tmp_path / "x.dcm").write_bytes(raw.replace(b"99.9999 ", b"9.9.9.9 "))  # not a number
    image = read_image(tmp_path / "x.dcm")
    assert source_header_problems(image) == [
        "source DICOM header: Patient's Weight (0010,1030): '9.9.9.9' is not a valid DS "
        "value; left out (never guessed)"
    ]
    assert "PatientWeight" not in source_datasets(image)[0]


def test_shared_fmri_patient_age_42_gives_a_valid_seg(tmp_path, shared_data, debian_tool):
    debian_tool("dciodvfy")
    first = sorted((shared_data / "fmri_dicom" / "dicoms").iterdir())[0]
    assert pydicom.dcmread(first, stop_before_pixels=True).PatientAge == "42"
    image = read_image(first)
    assert any("Patient's Age" in p for p in source_header_problems(image))
    mask = image.with_array((np.asarray(image.array) > np.median(image.array)).astype(np.uint8))
    seg = build_segmentation(
        mask, image, [LabelSpec(index=1, name="bright")], algorithm_name="t", algorithm_version="1"
    )
    seg.save_as(tmp_path / "seg.dcm")
    assert "PatientAge" not in seg and dciodvfy(tmp_path / "seg.dcm")[0] == []
