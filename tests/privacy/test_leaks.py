"""The leak checker finds identifiers wherever they hide in the output, in any date format."""

from __future__ import annotations

import shutil

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medsight.core.errors import EmptyInputError
from medsight.privacy.batch import deidentify_folder
from medsight.privacy.leaks import date_variants, verify
from medsight.privacy.profile import DeidConfig


@pytest.fixture
def clean_pair(pydicom_file, key, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    ds = dcmread(pydicom_file("CT_small.dcm"))
    ds.PatientName = "Quixote^Zebulon"
    ds.PatientBirthDate = "19500203"
    ds.OtherPatientIDs = "MRN-4451-XY"
    ds.InstitutionName = "Springfield General"
    ds.save_as(src / "ct.dcm")
    out = tmp_path / "out"
    report = deidentify_folder(src, out, key, DeidConfig(layout="mirror"), workers=1)
    assert verify(src, out).ok
    return src, out, report


def _plant(out, change):
    path = out / "ct.dcm"
    ds = dcmread(path)
    change(ds)
    ds.save_as(path)


@pytest.mark.parametrize("written", ["03/02/1950", "02/03/1950", "1950-02-03", "3 Feb 1950"])
def test_dates_found_in_other_formats(clean_pair, written):
    src, out, _ = clean_pair
    _plant(out, lambda ds: setattr(ds, "ImageComments", f"born {written}"))
    hits = verify(src, out).hits
    assert [(h.location, h.origin) for h in hits] == [
        ("(0020,4000) ImageComments", "(0010,0030) PatientBirthDate")
    ]


def test_name_part_in_nested_private_sequence_found(clean_pair):
    src, out, _ = clean_pair

    def plant(ds: Dataset) -> None:
        inner = Dataset()
        inner.add_new(0x00091001, "LO", "seen by ZEBULON")  # case does not matter
        block = ds.private_block(0x0029, "SOME VENDOR", create=True)
        block.add_new(0x10, "SQ", Sequence([inner]))

    _plant(out, plant)
    (hit,) = verify(src, out).hits
    assert hit.value == "zebulon" and "(0029,1010) private[0] >" in hit.location
    assert "ct.dcm: (0029,1010)" in str(hit)


def test_old_uid_and_file_path_found(clean_pair):
    src, out, _ = clean_pair
    original = dcmread(src / "ct.dcm")
    _plant(out, lambda ds: setattr(ds, "FrameOfReferenceUID", original.FrameOfReferenceUID))
    shutil.copy(out / "ct.dcm", out / "Springfield General.dcm")
    hits = verify(src, out).hits
    assert {h.location for h in hits} == {"(0020,0052) FrameOfReferenceUID", "file path"}


def test_retained_values_are_not_reported(clean_pair):
    src, out, _ = clean_pair
    hits = verify(src, out, DeidConfig(options=["retain-patient-characteristics"])).hits
    assert hits == []
    assert date_variants("20200230") == ["20200230"]  # not a date: searched as written
    empty = out.parent / "empty"
    empty.mkdir()
    with pytest.raises(EmptyInputError):
        verify(src, empty)


def test_whitelisted_private_value_is_not_a_leak(pydicom_file, key, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    ds = dcmread(pydicom_file("MR_small.dcm"))
    block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    block.add_new(0x9C, "LO", "t1memp_sequence")
    ds.save_as(src / "mr.dcm")
    config = DeidConfig(
        options=["retain-safe-private"], safe_private=["0019,[GEMS_ACQU_01]9C"], layout="mirror"
    )
    out = tmp_path / "out"
    deidentify_folder(src, out, key, config, workers=1)
    assert dcmread(out / "mr.dcm").private_block(0x0019, "GEMS_ACQU_01")[0x9C].value
    assert verify(src, out, config).ok
    (hit,) = verify(src, out).hits  # without the whitelist it counts as a leak
    assert hit.value == "t1memp_sequence"
