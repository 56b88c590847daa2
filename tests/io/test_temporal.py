"""4D reading: time points vs echoes on the channel axis, repetition and frame times.

Classic DICOM (the shared fMRI excerpt and small synthetic series), enhanced multi-frame
(FrameContentSequence TemporalPositionIndex, built with pydicom) and 4D NIfTI (pixdim[4] with
its xyzt_units time unit).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medsight.core.image import Image
from medsight.io import read_image, read_study
from medsight.io.nifti import read_nifti, write_nifti

MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def _base(sop_class: str, uids: dict[str, str], rows: int = 4, cols: int = 5) -> Dataset:
    uid = generate_uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.Modality, ds.PatientID, ds.PatientName = "MR", "P1", "Test^Phantom"
    ds.StudyDate, ds.SeriesDate, ds.SeriesDescription = "20260101", "20260101", "bold"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def write_classic(folder, n_slices, n_channels, per_channel, *, common=None):
    """``n_slices`` x ``n_channels`` single-frame files; ``per_channel(c)`` gives attributes.

    Pixel value = 100 * channel + slice, so the channel order can be checked.
    """
    folder.mkdir(parents=True, exist_ok=True)
    uids = {"study": generate_uid(), "series": generate_uid(), "frame": generate_uid()}
    number = 0
    for c in range(n_channels):
        for k in range(n_slices):
            ds = _base(MR, uids)
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [0.0, 0.0, 3.0 * k]
            ds.PixelSpacing = [2.0, 2.0]
            number += 1
            ds.InstanceNumber = number
            for key, value in {**(common or {}), **per_channel(c)}.items():
                setattr(ds, key, value)
            ds.PixelData = np.full((4, 5), 100 * c + k, np.uint16).tobytes()
            ds.save_as(folder / f"im{number:04d}.dcm", enforce_file_format=True)
    return folder


def test_time_series_without_temporal_ids_uses_acquisition_time(tmp_path):
    folder = write_classic(
        tmp_path / "bold",
        3,
        4,
        lambda c: {"AcquisitionTime": f"1200{c * 3:02d}.5", "EchoTime": 30},
        common={"RepetitionTime": 3000},
    )
    img = read_image(folder)
    assert img.shape == (5, 4, 3) and img.n_channels == 4
    assert img.meta["channel_axis"] == "time" and img.meta["n_volumes"] == 4
    assert img.meta["repetition_time_s"] == pytest.approx(3.0)
    assert img.meta["frame_times_s"] == pytest.approx((0.0, 3.0, 6.0, 9.0))
    assert img.meta["frame_times_source"] == "AcquisitionTime"
    assert np.asarray(img.array)[0, 0, 2].tolist() == [2, 102, 202, 302]  # slice 2, t = 0..3
    assert img.meta["problems"] == ()


def test_frame_step_unlike_tr_is_reported(tmp_path):
    folder = write_classic(
        tmp_path / "dce",
        2,
        3,
        lambda c: {"AcquisitionTime": f"12{c:02d}00", "TemporalPositionIdentifier": c + 1},
        common={"RepetitionTime": 5.0, "NumberOfTemporalPositions": 3},
    )
    img = read_image(folder)
    assert img.meta["frame_times_s"] == pytest.approx((0.0, 60.0, 120.0))
    assert img.meta["repetition_time_s"] == pytest.approx(0.005)
    assert any("60 s apart" in p and "0.005 s" in p for p in img.meta["problems"])


def test_echoes_are_not_time_points(tmp_path):
    folder = write_classic(
        tmp_path / "me",
        3,
        2,
        lambda c: {"EchoTime": 10.0 * (c + 1), "EchoNumbers": c + 1, "AcquisitionTime": "120000"},
        common={"RepetitionTime": 800},
    )
    img = read_image(folder)
    assert img.n_channels == 2
    assert img.meta["channel_axis"] == "echo"
    assert img.meta["echo_times_ms"] == (10.0, 20.0)
    assert "repetition_time_s" not in img.meta and "frame_times_s" not in img.meta


def test_multi_echo_time_series_is_flagged(tmp_path):
    folder = write_classic(
        tmp_path / "mebold",
        2,
        4,
        lambda c: {"TemporalPositionIdentifier": c // 2 + 1, "EchoTime": 12.0 + 20 * (c % 2)},
        common={"RepetitionTime": 2000},
    )
    img = read_image(folder)
    assert img.meta["channel_axis"] == "echo+time"
    assert any("select one echo" in p for p in img.meta["problems"])


def test_interrupted_run_keeps_the_complete_volumes(tmp_path):
    folder = write_classic(
        tmp_path / "cut",
        3,
        4,
        lambda c: {"TemporalPositionIdentifier": c + 1, "AcquisitionTime": f"1200{2 * c:02d}"},
        common={"RepetitionTime": 2000},
    )
    sorted(folder.iterdir())[-1].unlink()  # the last volume lacks its last slice
    img = read_image(folder)
    assert img.shape == (5, 4, 3) and img.n_channels == 3
    assert img.meta["channel_axis"] == "time" and img.meta["frame_times_s"] == (0.0, 2.0, 4.0)
    assert any(
        "temporal position 4" in p and "3 complete volumes" in p for p in img.meta["problems"]
    )


def test_siemens_mosaic_is_not_called_a_time_series(tmp_path):
    folder = write_classic(
        tmp_path / "mosaic",
        1,
        3,
        lambda c: {"AcquisitionNumber": c + 1, "AcquisitionTime": f"1200{2 * c:02d}"},
        common={"ImageType": ["ORIGINAL", "PRIMARY", "M", "MOSAIC"], "RepetitionTime": 2000},
    )
    img = read_image(folder)
    assert img.meta["channel_axis"] is None and "mosaic" in img.meta["problems"][0]


def test_shared_fmri_is_one_4d_image(shared_data, tmp_path):
    import SimpleITK as sitk

    folder = shared_data / "fmri_dicom" / "dicoms"
    study = read_study(folder)
    assert len(study) == 1
    entry = study.series[0]
    temporal = entry.dicom.temporal
    assert temporal.channel_axis == "time" and temporal.n_channels == 18
    img = entry.load()
    assert img.shape == (80, 80, 35) and img.n_channels == 18
    assert img.meta["repetition_time_s"] == pytest.approx(2.0, abs=1e-5)
    assert img.meta["frame_times_s"] == pytest.approx(tuple(2.0 * t for t in range(18)))
    # the header says 156 temporal positions (the full run); the excerpt holds 18
    assert any("156" in p and "18 volumes" in p for p in img.meta["problems"])
    # volume 1 against SimpleITK (GDCM sorts the slices itself)
    first = tmp_path / "t1"
    first.mkdir()
    for path in folder.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if int(ds.TemporalPositionIdentifier) == 1:
            (first / path.name).symlink_to(path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(first)))
    ref = reader.Execute()
    assert len(list(first.iterdir())) == 35
    np.testing.assert_allclose(img.origin, ref.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(img.spacing, ref.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(img.direction.ravel(), ref.GetDirection(), atol=1e-5)
    ref_arr = sitk.GetArrayFromImage(ref).transpose(2, 1, 0)
    np.testing.assert_array_equal(np.asarray(img.array)[..., 0], ref_arr)


def _enhanced(path, n_slices, n_times, tr_ms):
    uids = {"study": generate_uid(), "series": generate_uid(), "frame": generate_uid()}
    ds = _base(ENHANCED_MR, uids, rows=3, cols=3)
    ds.NumberOfFrames = n_slices * n_times
    shared = Dataset()
    orient, measures, timing = Dataset(), Dataset(), Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = [1.5, 1.5], 4.0
    timing.RepetitionTime = tr_ms
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    echo = Dataset()
    echo.EffectiveEchoTime = 30.0
    shared.MREchoSequence = Sequence([echo])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, pixels = [], []
    for t in range(n_times):  # frames time-major, as scanners often store them
        for k in range(n_slices):
            item, content, plane = Dataset(), Dataset(), Dataset()
            content.TemporalPositionIndex = t + 1
            seconds = t * tr_ms / 1000.0
            content.FrameAcquisitionDateTime = f"202601011200{seconds:09.6f}"
            plane.ImagePositionPatient = [0.0, 0.0, 4.0 * k]
            item.FrameContentSequence = Sequence([content])
            item.PlanePositionSequence = Sequence([plane])
            frames.append(item)
            pixels.append(np.full((3, 3), 10 * t + k, np.uint16))
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.stack(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_enhanced_multiframe_time_series(tmp_path):
    path = _enhanced(tmp_path / "enh.dcm", n_slices=2, n_times=3, tr_ms=1500.0)
    img = read_image(path)
    assert img.shape == (3, 3, 2) and img.n_channels == 3
    assert img.meta["channel_axis"] == "time"
    assert img.meta["repetition_time_s"] == pytest.approx(1.5)
    assert img.meta["frame_times_s"] == pytest.approx((0.0, 1.5, 3.0))
    assert np.asarray(img.array)[0, 0, 1].tolist() == [1, 11, 21]  # slice 1, t = 0, 1, 2


@pytest.mark.parametrize(
    ("unit", "pixdim4", "expected"), [("msec", 2000.0, 2.0), ("sec", 2.5, 2.5), ("usec", 8e5, 0.8)]
)
def test_nifti_time_units(tmp_path, unit, pixdim4, expected):
    data = np.zeros((4, 4, 3, 5), np.float32)
    nii = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    nii.header.set_xyzt_units("mm", unit)
    nii.header.set_zooms((2.0, 2.0, 3.0, pixdim4))
    nib.save(nii, tmp_path / "bold.nii.gz")
    img = read_nifti(tmp_path / "bold.nii.gz")
    assert img.n_channels == 5 and img.meta["channel_axis"] == "time"
    assert img.meta["repetition_time_s"] == pytest.approx(expected)
    assert img.meta["frame_times_s"] == pytest.approx(tuple(expected * t for t in range(5)))


def test_nifti_without_time_unit_leaves_tr_unknown(tmp_path):
    nii = nib.Nifti1Image(np.zeros((4, 4, 3, 5), np.float32), np.eye(4))
    nii.header.set_zooms((1.0, 1.0, 1.0, 2.0))  # xyzt_units left unknown
    nib.save(nii, tmp_path / "bold.nii")
    img = read_nifti(tmp_path / "bold.nii")
    assert img.meta["channel_axis"] == "time" and img.meta["repetition_time_s"] is None
    assert "no time unit" in img.meta["problems"][0]


def test_time_image_round_trips_through_nifti(tmp_path):
    meta = {"channel_axis": "time", "repetition_time_s": 1.25}
    img = Image(
        np.arange(4 * 4 * 3 * 6, dtype=np.float32).reshape(4, 4, 3, 6), spatial_ndim=3, meta=meta
    )
    out = write_nifti(img, tmp_path / "t.nii.gz")
    assert nib.load(out).shape == (4, 4, 3, 6)  # time on the 4th NIfTI axis, not the 5th
    back = read_nifti(out)
    assert back.meta["repetition_time_s"] == pytest.approx(1.25)
    np.testing.assert_array_equal(back.array, img.array)
