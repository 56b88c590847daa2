"""Derived DICOM series: new UIDs in the same study, DERIVED image type, source references,
stored values back in the source's range; checked with dciodvfy when it is installed."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medsight.core.errors import InvalidInputError
from medsight.io import read_image
from medsight.io.dicom.derived import write_derived_series

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def write_series(folder, *, modality="CT", n=3, size=16, seed=0):
    """A small, valid-enough CT or MR series (CT: stored = HU + 1024)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    ct = modality == "CT"
    for k in range(n):
        uid = generate_uid()
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CT_STORAGE if ct else MR_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID = modality, "Test^Phantom", "P1"
        ds.PatientBirthDate, ds.PatientSex, ds.StudyID, ds.AccessionNumber = "", "O", "1", ""
        ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "20260101", "120000", ""
        ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 3, k + 1, "phantom"
        ds.Manufacturer, ds.PositionReferenceIndicator, ds.BodyPartExamined = "", "", "HEAD"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientPosition = "HFS"
        ds.Rows = ds.Columns = size
        ds.PixelSpacing, ds.SliceThickness = [0.9, 0.8], 2.0
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 2.0 * k], [1, 0, 0, 0, 1, 0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        if ct:
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
            ds.KVP, ds.AcquisitionNumber = 120, 1
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
            ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime = "2D", 10, 500
            ds.EchoTrainLength, ds.AcquisitionNumber = 1, 1
        pixels = rng.integers(800, 1400, (size, size)).astype(np.uint16)
        pixels[4:12, 4:12] += 500
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return folder


def test_derived_series_keeps_study_and_geometry_with_new_uids(tmp_path):
    src = read_image(write_series(tmp_path / "ct"))
    assert src.modality == "CT" and int(src.array.min()) < 0  # HU
    new = np.asarray(src.array, np.float32) + 10.4  # "denoised" pixels, in HU
    files = write_derived_series(src.with_array(new), tmp_path / "out", derivation="model m@1")
    assert [f.name for f in files] == ["0001.dcm", "0002.dcm", "0003.dcm"]
    back = read_image(tmp_path / "out")
    assert back.shape == src.shape and np.allclose(back.affine, src.affine)
    np.testing.assert_array_equal(back.array, np.round(new))
    assert back.source.study_instance_uid == src.source.study_instance_uid
    assert back.source.frame_of_reference_uid == src.source.frame_of_reference_uid
    assert back.source.series_instance_uid != src.source.series_instance_uid
    assert not set(back.source.sop_instance_uids) & set(src.source.sop_instance_uids)
    ds = pydicom.dcmread(files[1])
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert ds.DerivationDescription == "model m@1" and ds.SeriesDescription == "phantom denoised"
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.source.sop_instance_uids[1]
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_values_are_clipped_into_the_stored_range_and_nothing_half_written(tmp_path):
    src = read_image(write_series(tmp_path / "ct", n=2))
    wild = np.full(src.shape, 99999.0, np.float32)
    write_derived_series(src.with_array(wild), tmp_path / "out", derivation="x")
    assert int(pydicom.dcmread(tmp_path / "out" / "0001.dcm").pixel_array.max()) == 4095
    with pytest.raises(InvalidInputError, match="already exists"):
        write_derived_series(src, tmp_path / "out", derivation="x")
    bad = src.with_array(np.zeros((*src.shape[:2], 5)))
    with pytest.raises(InvalidInputError, match="5 slices but 2 source"):
        write_derived_series(bad, tmp_path / "bad", derivation="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct", "out"]


def _dciodvfy_errors(path) -> set[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    return {line.split(" - ", 1)[-1] for line in lines if line.startswith("Error")}


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy is not installed")
@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_dciodvfy_finds_no_error_the_source_did_not_have(tmp_path, modality):
    folder = write_series(tmp_path / "src", modality=modality, n=1)
    src = read_image(folder)
    out = write_derived_series(src, tmp_path / "out", derivation="medsight model m@1")
    before, after = _dciodvfy_errors(folder / "000.dcm"), _dciodvfy_errors(out[0])
    assert after <= before, after - before
