"""SUVbw from synthetic PET headers (QIBA vendor-neutral pseudo-code), and every refusal.

Reference values: SUVbw factor = weight [g] / (dose * 2 ** (-decay time / half-life)), the
QIBA "SUV calculation" pseudo-code; F-18 half-life 6586.2 s (109.77 min, NIST).
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medsight.io import read_image
from medsight.io.dicom.suv import suv_bw

F18 = 6586.2
DOSE = 370e6


def pet_header(**changes) -> Dataset:
    ds = Dataset()
    ds.Modality, ds.Units = "PT", "BQML"
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT"]
    ds.DecayCorrection = "START"
    ds.PatientWeight = 70
    ds.SeriesDate, ds.SeriesTime = "20260101", "110000"
    ds.AcquisitionDate, ds.AcquisitionTime = "20260101", "110000"
    item = Dataset()
    item.RadionuclideTotalDose, item.RadionuclideHalfLife = DOSE, F18
    item.RadiopharmaceuticalStartDateTime = "20260101100000"
    ds.RadiopharmaceuticalInformationSequence = Sequence([item])
    for key, value in changes.items():
        if key.startswith("rp_"):
            if value is None:
                delattr(item, key[3:])
            else:
                setattr(item, key[3:], value)
        elif value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def expected(decay_s: float, weight: float = 70.0) -> float:
    return weight * 1000.0 / (DOSE * 2.0 ** (-decay_s / F18))


def test_start_decay_correction_one_hour_after_injection():
    result = suv_bw(pet_header())
    assert result.available and result.scan_time_source == "SeriesTime"
    assert result.decay_time_s == pytest.approx(3600.0)
    assert result.factor == pytest.approx(expected(3600.0), rel=1e-9)
    # 370 MBq, 70 kg, 1 h of F-18: decayed dose 253.3 MBq -> 2.763e-4 g/Bq (by hand)
    assert result.factor == pytest.approx(2.7634e-4, rel=1e-3)


def test_start_time_without_date_and_midnight():
    result = suv_bw(
        pet_header(
            rp_RadiopharmaceuticalStartDateTime=None, rp_RadiopharmaceuticalStartTime="101500"
        )
    )
    assert result.decay_time_s == pytest.approx(2700.0)
    crossed = suv_bw(
        pet_header(
            SeriesTime="003000",
            AcquisitionTime="003000",
            rp_RadiopharmaceuticalStartDateTime=None,
            rp_RadiopharmaceuticalStartTime="234500",
        )
    )
    assert crossed.decay_time_s == pytest.approx(2700.0) and "midnight" in crossed.notes[0]


def test_series_time_after_acquisition_uses_earliest_acquisition():
    ds = pet_header(SeriesTime="130000")  # a post-processed series: created later
    result = suv_bw(ds, acquisition_s=[])
    assert result.scan_time_source == "earliest AcquisitionTime"
    assert result.decay_time_s == pytest.approx(3600.0)


def test_admin_decay_correction_has_no_decay():
    result = suv_bw(pet_header(DecayCorrection="ADMIN"))
    assert result.factor == pytest.approx(70000.0 / DOSE)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"Modality": "CT"}, "modality CT"),
        ({"Units": "CNTS"}, "Units is CNTS"),
        ({"Units": None}, "Units is absent"),
        ({"CorrectedImage": ["ATTN"]}, "lacks DECY"),
        ({"DecayCorrection": "NONE"}, "DecayCorrection is NONE"),
        ({"PatientWeight": None}, "PatientWeight"),
        ({"PatientWeight": 0}, "PatientWeight"),
        ({"RadiopharmaceuticalInformationSequence": None}, "RadiopharmaceuticalInformation"),
        ({"rp_RadionuclideTotalDose": None}, "RadionuclideTotalDose"),
        ({"rp_RadionuclideHalfLife": None}, "RadionuclideHalfLife"),
        ({"rp_RadiopharmaceuticalStartDateTime": None}, "StartTime is missing"),
        ({"SeriesTime": None}, "SeriesTime is missing"),
        ({"rp_RadiopharmaceuticalStartDateTime": "20260101120000"}, "after the scan"),
    ],
)
def test_no_suv_names_what_is_missing(changes, named):
    result = suv_bw(pet_header(**changes))
    assert result.factor is None
    assert result.reason.startswith("no SUV") and named in result.reason


def test_gml_is_already_suv():
    assert suv_bw(pet_header(Units="GML")).factor == 1.0


def _write_pet(folder, header: Dataset, n=2):
    folder.mkdir()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(n):
        ds = Dataset()
        ds.update(header)
        uid = generate_uid()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.128"
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID = "P1"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 4.0 * k]
        ds.PixelSpacing = [4.0, 4.0]
        ds.Rows = ds.Columns = 4
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 2.0, 0.0
        ds.PixelData = np.full((4, 4), 1000, np.uint16).tobytes()
        ds.save_as(folder / f"pt{k}.dcm", enforce_file_format=True)
    return folder


def test_read_image_carries_the_suv_factor(tmp_path):
    img = read_image(_write_pet(tmp_path / "pet", pet_header()))
    assert img.meta["suv_status"] == "SUVbw available"
    suv = np.asarray(img.array) * img.meta["suv_bw_factor"]  # 2000 Bq/mL -> g/mL
    assert float(suv.max()) == pytest.approx(2000 * expected(3600.0), rel=1e-6)
    refused = read_image(_write_pet(tmp_path / "pet2", pet_header(DecayCorrection="NONE")))
    assert refused.meta["suv_bw_factor"] is None
    assert "DecayCorrection is NONE" in refused.meta["suv_status"]
