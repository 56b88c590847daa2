"""PS3.15 options that keep data usable: each option's effect on the header, and the
hospital-analysis profile's round trip (de-identify a study, then analyse it)."""

from __future__ import annotations

import datetime as dt
from importlib.resources import files
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from medsight.privacy.batch import deidentify_folder
from medsight.privacy.dicom_deid import deidentify_dataset
from medsight.privacy.keys import PseudonymKey
from medsight.privacy.profile import DeidConfig, Option, profile_defaults


def _study(patient: str, study_date: str, uid: str) -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID = "ZEBULON^Amara", patient
    ds.PatientAge, ds.PatientSex, ds.PatientSize, ds.PatientWeight = "063Y", "F", "1.68", "61"
    ds.StudyDate = ds.SeriesDate = study_date
    ds.SeriesDescription = "T1 sag ZEBULON"
    ds.ProtocolName = "brain routine"
    ds.Manufacturer, ds.ManufacturerModelName, ds.StationName = "ACME", "Scan 3T", "MR-SOUTH-2"
    ds.DeviceSerialNumber = "SN-99881"
    ds.InstitutionName = "Northfield Clinic"
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid + ".1", uid + ".2"
    return ds


def _codes(ds: Dataset) -> set[str]:
    return {c.CodeValue for c in ds.DeidentificationMethodCodeSequence}


@pytest.mark.parametrize(
    ("option", "code"),
    [
        (Option.CLEAN_DESCRIPTORS, "113105"),
        (Option.RETAIN_MODIFIED_DATES, "113107"),
        (Option.RETAIN_PATIENT_CHARACTERISTICS, "113108"),
        (Option.RETAIN_DEVICE_IDENTITY, "113109"),
    ],
)
def test_each_option_changes_the_header_and_is_recorded(option, code):
    key = PseudonymKey(bytes(range(32)))
    src = _study("P-1", "20240131", "1.2.3.4")
    basic = deidentify_dataset(src, key, DeidConfig()).dataset
    out = deidentify_dataset(src, key, DeidConfig(options=[option])).dataset
    assert out.PatientIdentityRemoved == "YES" and basic.PatientIdentityRemoved == "YES"
    assert _codes(out) == {"113100", code} and _codes(basic) == {"113100"}
    assert "SeriesDescription" not in basic and "PatientAge" not in basic
    if option == Option.CLEAN_DESCRIPTORS:
        assert out.SeriesDescription == "T1 sag" and out.ProtocolName == "brain routine"
    elif option == Option.RETAIN_MODIFIED_DATES:
        shift = key.date_shift_days("P-1")
        shifted = dt.date(2024, 1, 31) + dt.timedelta(days=shift)
        assert out.StudyDate == shifted.strftime("%Y%m%d") != src.StudyDate
        assert out.LongitudinalTemporalInformationModified == "MODIFIED"
        assert basic.LongitudinalTemporalInformationModified == "REMOVED"
    elif option == Option.RETAIN_PATIENT_CHARACTERISTICS:
        assert (out.PatientAge, out.PatientSex) == ("063Y", "F")
        assert (float(out.PatientSize), float(out.PatientWeight)) == (1.68, 61.0)
    else:
        assert out.StationName == "MR-SOUTH-2" and out.DeviceSerialNumber == "SN-99881"
        assert basic.get("StationName") in (None, "", "ANONYMOUS", "ANONYMIZED")
    assert "Northfield" not in str(out.get("InstitutionName", ""))


def test_modified_dates_keep_intervals_across_runs():
    """One keyed shift per patient: the interval between two studies of one patient survives,
    and a second run with the same key (another process or machine) shifts the same."""
    key = PseudonymKey(bytes(range(32)))
    config = DeidConfig(options=[Option.RETAIN_MODIFIED_DATES])
    first = deidentify_dataset(_study("P-7", "20200105", "1.2.3.5"), key, config).dataset
    later = deidentify_dataset(_study("P-7", "20230317", "1.2.3.6"), key, config).dataset
    again = deidentify_dataset(
        _study("P-7", "20200105", "1.2.3.5"), PseudonymKey(bytes(range(32))), config
    )
    other = deidentify_dataset(_study("P-8", "20200105", "1.2.3.7"), key, config).dataset

    def day(value: str) -> dt.date:
        return dt.datetime.strptime(value, "%Y%m%d").date()

    assert (day(later.StudyDate) - day(first.StudyDate)).days == (
        dt.date(2023, 3, 17) - dt.date(2020, 1, 5)
    ).days
    assert again.dataset.StudyDate == first.StudyDate and again.dataset.PatientID == first.PatientID
    assert other.StudyDate != first.StudyDate  # another patient, another shift


def test_hospital_analysis_profile_defaults():
    config = DeidConfig(**profile_defaults("hospital-analysis"))
    assert {
        Option.CLEAN_DESCRIPTORS,
        Option.RETAIN_MODIFIED_DATES,
        Option.RETAIN_PATIENT_CHARACTERISTICS,
        Option.RETAIN_DEVICE_IDENTITY,
    } == set(config.options)
    assert config.scrub_pixels == "flagged"


@pytest.mark.slow
def test_hospital_analysis_study_is_analysed(shared_data, tmp_path):
    """De-identify the brain study with the hospital-analysis profile, then analyse it: the
    hippocampus model finds its series by Series Description and measures both parts."""
    from medsight.analysis.pipeline import analyze
    from medsight.io import read_study
    from medsight.models import ModelPackage

    package_dir = Path(str(files("medsight") / "zoo" / "hippocampus-dynunet"))
    if not package_dir.is_dir():
        pytest.fail("the zoo's hippocampus-dynunet package is missing")
    src = shared_data / "dicom" / "brain_mr_study1"
    deid = tmp_path / "deid"
    config = DeidConfig(**profile_defaults("hospital-analysis"))
    report = deidentify_folder(src, deid, PseudonymKey(bytes(32)), config, workers=2)
    assert report.failed == []
    one = dcmread(next(deid.rglob("*.dcm")))
    assert one.PatientIdentityRemoved == "YES"
    assert {"113100", "113105", "113107", "113108", "113109"} <= _codes(one)
    assert "PatientAge" in one or "PatientSex" in one
    assert "HippoCrop" in {s.description for s in read_study(deid)}
    package = ModelPackage.load(package_dir)
    result = analyze(deid, tmp_path / "out", [package], dicom_outputs=False)
    run = result.report.models[0]
    assert run.status == "ran", run.reason
    assert "HippoCrop" in run.series
    assert {f.note for f in result.report.findings} == {"anterior", "posterior"}
