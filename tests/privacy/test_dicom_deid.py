"""One dataset: planted PHI in private tags, nested sequences and free text is gone; options."""

from __future__ import annotations

import io
import shutil
from copy import deepcopy

import numpy as np
import pytest
from pydicom import dcmread, examples
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medsight.privacy.batch import deidentify_folder
from medsight.privacy.dicom_deid import deidentify_dataset
from medsight.privacy.leaks import verify
from medsight.privacy.profile import DeidConfig

PLANTED = [
    "zebulon",
    "quixote",
    "mrn-4451-xy",
    "4451",
    "12 elm street",
    "867-5309",
    "springfield",
    "hibbert",
    "19500203",
    "1950",
    "acc99812345",
    "st. elsewhere",
]


def planted_dataset() -> Dataset:
    ds = examples.ct  # a fresh copy of pydicom's CT_small
    ds.PatientName = "Quixote^Zebulon"
    ds.PatientID = "MRN-4451-XY"
    ds.PatientBirthDate = "19500203"
    ds.PatientAddress = "12 Elm Street, Springfield"
    ds.PatientTelephoneNumbers = "555-867-5309"
    ds.InstitutionName = "Springfield General"
    ds.InstitutionAddress = "1 Hospital Road, Springfield"
    ds.ReferringPhysicianName = "Hibbert^Julius"
    ds.EvaluatorName = "Hibbert^J"  # a person name Table E.1-1 does not list
    ds.AccessionNumber = "ACC99812345"
    # free text
    ds.ImageComments = "Zebulon Quixote, DOB 03/02/1950, ward St. Elsewhere"
    ds.AdditionalPatientHistory = "Referred by Dr Hibbert, phone 555-867-5309"
    # private tags: text, bytes and a private sequence holding a person name
    block = ds.private_block(0x0011, "ACME PACS 1.0", create=True)
    block.add_new(0x01, "LO", "Zebulon Quixote MRN-4451-XY")
    block.add_new(0x02, "OB", b"ACC99812345\x00St. Elsewhere\x00")
    inner = Dataset()
    inner.PatientName = "Quixote^Zebulon"
    inner.add_new(0x00091001, "LO", "12 Elm Street")
    block.add_new(0x03, "SQ", Sequence([inner]))
    # nested public sequences, two levels deep
    other = Dataset()
    other.PatientID = "MRN-4451-XY"
    other.IssuerOfPatientID = "Springfield General"
    ds.OtherPatientIDsSequence = Sequence([other])
    source = Dataset()
    source.ReferencedSOPClassUID = ds.SOPClassUID
    source.ReferencedSOPInstanceUID = "1.2.840.99999.4451.7"
    purpose = Dataset()
    purpose.CodeValue = "121320"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Uncompressed predecessor"
    source.PurposeOfReferenceCodeSequence = Sequence([purpose])
    ds.SourceImageSequence = Sequence([source])
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.TextValue = "Seen Zebulon Quixote at St. Elsewhere on 1950-02-03"
    ds.ContentSequence = Sequence([text])
    # a curve and an overlay
    ds.add_new(0x50000005, "US", 2)
    ds.add_new(0x60000010, "US", 128)
    ds.add_new(0x60003000, "OW", b"\x00" * 2048)
    ds.add_new(0x60004000, "LT", "overlay by Hibbert")
    return ds


def _text_bytes(ds: Dataset) -> bytes:
    """Every byte of the file except Pixel Data, lower-cased."""
    copy = deepcopy(ds)
    del copy[0x7FE00010]
    buf = io.BytesIO()
    copy.save_as(buf, enforce_file_format=True)
    return buf.getvalue().lower()


def test_planted_phi_is_gone_everywhere(key):
    ds = planted_dataset()
    assert all(p.encode() in _text_bytes(ds) for p in PLANTED)  # the plant worked
    out = deidentify_dataset(ds, key, DeidConfig()).dataset
    data = _text_bytes(out)
    assert [p for p in PLANTED if p.encode() in data] == []
    groups = [e.tag.group for e in out]
    assert not [g for g in groups if g == 0x0011 or g & 0xFF00 in (0x5000, 0x6000)]
    assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == key.uid("1.2.840.99999.4451.7")
    assert out.ContentSequence[0].TextValue == "REMOVED"  # a dummy, not empty (Type 1C)
    assert out.EvaluatorName == "ANONYMOUS"


def test_planted_phi_leak_checker_agrees(key, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    planted_dataset().save_as(src / "planted.dcm", enforce_file_format=True)
    report = deidentify_folder(src, out, key, DeidConfig(), workers=1)
    assert report.failed == []
    leaks = verify(src, out)
    assert leaks.ok, [str(h) for h in leaks.hits]
    # the checker can fail: an untouched copy is full of hits, in private tags and sequences too
    shutil.copytree(src, tmp_path / "copy")
    hits = verify(src, tmp_path / "copy").hits
    where = " ".join(h.location for h in hits)
    assert "private" in where and "OtherPatientIDsSequence[0]" in where
    assert {"zebulon", "mrn-4451-xy", "03/02/1950"} <= {h.value for h in hits}


def test_pixels_untouched_and_input_not_modified(key):
    ds = examples.ct
    before = ds.PixelData
    out = deidentify_dataset(ds, key, DeidConfig()).dataset
    assert out.PixelData == before and ds.PixelData == before
    assert str(ds.PatientName) == "CompressedSamples^CT1"
    np.testing.assert_array_equal(out.pixel_array, ds.pixel_array)
    for attr in (
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PixelSpacing",
        "SliceThickness",
    ):
        assert out[attr].value == ds[attr].value


def test_identity_attributes(key):
    result = deidentify_dataset(examples.ct, key, DeidConfig())
    out = result.dataset
    assert out.PatientIdentityRemoved == "YES"
    assert out.PatientID == result.pseudonym_id == key.patient_id("1CT1")
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == ["113100"]
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert "2024c" in out.DeidentificationMethod
    assert "SourceApplicationEntityTitle" not in out.file_meta


def test_modified_dates_keep_intervals_and_patient_characteristics(key):
    ds = examples.ct
    ds.AcquisitionDate = "20200105"
    ds.StudyDate = "20200119"
    ds.PatientAge = "072Y"
    ds.PatientSex = "M"
    config = DeidConfig(options=["retain-modified-dates", "retain-patient-characteristics"])
    result = deidentify_dataset(ds, key, config)
    out = result.dataset
    shift = result.date_shift_days
    assert shift == key.date_shift_days("1CT1") and shift < 0
    import datetime as dt

    def day(text: str) -> dt.date:
        return dt.datetime.strptime(text, "%Y%m%d").date()

    assert (day(out.StudyDate) - day("20200119")).days == shift
    assert (day(out.StudyDate) - day(out.AcquisitionDate)).days == 14
    assert out.PatientAge == "072Y" and out.PatientSex == "M"
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == [
        "113100",
        "113107",
        "113108",
    ]
    plain = deidentify_dataset(ds, key, DeidConfig()).dataset
    assert not plain.StudyDate and "PatientAge" not in plain
    ds.PatientAge = "093Y"  # HIPAA Safe Harbor: ages over 89 are grouped
    assert deidentify_dataset(ds, key, config).dataset.PatientAge == "090Y"


def test_clean_descriptors_keeps_descriptions_without_identifiers(key):
    ds = examples.ct
    ds.PatientName = "Quixote^Zebulon"
    ds.StudyDescription = "CT head Quixote 2020-01-19"
    ds.SeriesDescription = "AXIAL 5mm"
    out = deidentify_dataset(ds, key, DeidConfig(options=["clean-descriptors"])).dataset
    assert out.StudyDescription == "CT head" and out.SeriesDescription == "AXIAL 5mm"
    assert "StudyDescription" not in deidentify_dataset(ds, key, DeidConfig()).dataset


def test_retain_safe_private_keeps_only_the_whitelist(key):
    ds = examples.mr
    block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    block.add_new(0x9C, "LO", "t1memp")
    block.add_new(0x9D, "LO", "Zebulon")
    config = DeidConfig(options=["retain-safe-private"], safe_private=["0019,[GEMS_ACQU_01]9C"])
    out = deidentify_dataset(ds, key, config).dataset
    kept = out.private_block(0x0019, "GEMS_ACQU_01")
    assert kept[0x9C].value == "t1memp"
    assert 0x9D not in [
        t.element & 0xFF for t in (e.tag for e in out) if t.group == 0x19 and t.element > 0xFF
    ]
    assert not [t for t in (e.tag for e in out) if t.is_private and t.group != 0x19]
    none_kept = deidentify_dataset(ds, key, DeidConfig(options=["retain-safe-private"])).dataset
    assert not [t for t in (e.tag for e in none_kept) if t.is_private]


@pytest.mark.parametrize("name", ["rtstruct.dcm", "test-SR.dcm", "reportsi.dcm"])
def test_references_in_sequences_are_remapped(key, pydicom_file, name):
    ds = dcmread(pydicom_file(name), force=True)
    originals, remapped = [], []

    def collect(data: Dataset, into: list[str]) -> None:
        for elem in data:
            if elem.VR == "SQ":
                for item in elem.value:
                    collect(item, into)
            elif elem.keyword in ("ReferencedSOPInstanceUID", "ReferencedFrameOfReferenceUID"):
                into.append(str(elem.value))

    collect(ds, originals)
    collect(deidentify_dataset(ds, key, DeidConfig()).dataset, remapped)
    assert originals and remapped == [key.uid(u) for u in originals]


def test_retain_uids_full_dates_institution_and_clean_structured_content(key):
    ds = planted_dataset()
    ds.StudyDate = "20200119"
    options = [
        "retain-uids",
        "retain-full-dates",
        "retain-institution-identity",
        "clean-structured-content",
    ]
    out = deidentify_dataset(ds, key, DeidConfig(options=options)).dataset
    assert out.StudyInstanceUID == ds.StudyInstanceUID and out.SOPInstanceUID == ds.SOPInstanceUID
    assert out.StudyDate == "20200119"
    assert out.InstitutionName == "Springfield General"
    # structured content is cleaned (the dataset's identifiers and dates go), not replaced by a
    # dummy; a place named only in the free text stays: cleaning cannot know it (the limit)
    assert out.ContentSequence[0].TextValue == "Seen at St. Elsewhere on"
    assert "PatientAddress" not in out and str(out.PatientName) != "Quixote^Zebulon"
