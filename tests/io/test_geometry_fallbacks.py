"""Geometry fallbacks: RT Image plane spacing at the isocentre, and every 1 mm fallback said."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medsight.io import read_study
from medsight.io.dicom.series import pixel_spacing_of


def test_rt_image_plane_spacing_is_scaled_to_the_isocentre_plane():
    rt = Dataset()
    rt.Rows, rt.Columns = 10, 10
    rt.ImagePlanePixelSpacing = [0.4, 0.5]  # at the receptor, RT Image SID from the source
    rt.RTImageSID, rt.RadiationMachineSAD = 1500.0, 1000.0
    spacing, source, notes = pixel_spacing_of(rt)
    np.testing.assert_allclose(spacing, [0.4 * 1000 / 1500, 0.5 * 1000 / 1500])
    assert source == "ImagePlanePixelSpacing/SAD:SID" and notes == []


@pytest.mark.parametrize("missing", ["RTImageSID", "RadiationMachineSAD"])
def test_rt_image_plane_spacing_without_sad_or_sid_stays_at_the_receptor_and_says_so(missing):
    rt = Dataset()
    rt.Rows, rt.Columns = 10, 10
    rt.ImagePlanePixelSpacing = [0.4, 0.4]
    rt.RTImageSID, rt.RadiationMachineSAD = 1500.0, 1000.0
    delattr(rt, missing)
    spacing, source, notes = pixel_spacing_of(rt)
    assert spacing == (0.4, 0.4) and source == "ImagePlanePixelSpacing"
    assert len(notes) == 1 and "at the image receptor" in notes[0]


def test_rt_image_file_records_the_spacing_source(pydicom_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    for key in ("PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient"):
        delattr(ds, key)
    ds.Modality = "RTIMAGE"
    ds.ImagePlanePixelSpacing = [0.6, 0.6]
    ds.RTImageSID, ds.RadiationMachineSAD = 1200.0, 1000.0
    path = tmp_path / "rtimage.dcm"
    ds.save_as(path)
    entry = read_study(path).series[0]
    img = entry.load()
    np.testing.assert_allclose(img.spacing, [0.5, 0.5])
    assert img.meta["spacing_source"] == "ImagePlanePixelSpacing/SAD:SID"


def test_single_slice_without_spacing_between_slices_reports_the_1_mm(pydicom_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))  # SpacingBetweenSlices 5, thickness 5
    entry = read_study(pydicom_file("CT_small.dcm")).series[0]
    assert entry.load().spacing[2] == pytest.approx(5.0)
    assert not any("1 mm" in p for p in entry.problems)
    del ds.SpacingBetweenSlices
    path = tmp_path / "ct.dcm"
    ds.save_as(path)
    entry = read_study(path).series[0]
    assert entry.load().spacing[2] == 1.0  # as GDCM: SliceThickness is not a slice distance
    assert any("1 mm is used along the slice normal" in p for p in entry.problems)


def test_missing_pixel_spacing_on_a_slice_stack_is_a_problem(pydicom_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds.PixelSpacing
    path = tmp_path / "ct.dcm"
    ds.save_as(path)
    entry = read_study(path).series[0]
    img = entry.load()
    assert not img.meta["spacing_known"]
    assert any("no pixel spacing in the header" in p for p in entry.problems)


def test_capture_without_spacing_says_sizes_are_in_pixels(pydicom_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("SC_rgb_rle.dcm"))  # an OT secondary capture
    del ds.PixelSpacing
    path = tmp_path / "sc.dcm"
    ds.save_as(path)
    entry = read_study(path).series[0]
    assert not entry.load().meta["spacing_known"]
    assert any("sizes are in pixels" in p for p in entry.problems)


def test_single_frame_functional_groups_without_number_of_frames(pydicom_file, tmp_path):
    """Geometry only in the functional groups and no Number of Frames: still CT_small's."""
    classic = read_study(pydicom_file("CT_small.dcm")).series[0].load()
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    frame, shared = Dataset(), Dataset()
    pos, orient, meas = Dataset(), Dataset(), Dataset()
    pos.ImagePositionPatient = ds.ImagePositionPatient
    orient.ImageOrientationPatient = ds.ImageOrientationPatient
    meas.PixelSpacing, meas.SpacingBetweenSlices = ds.PixelSpacing, ds.SpacingBetweenSlices
    frame.PlanePositionSequence = Sequence([pos])
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([meas])
    ds.PerFrameFunctionalGroupsSequence = Sequence([frame])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        delattr(ds, key)
    assert "NumberOfFrames" not in ds
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path)
    img = read_study(path).series[0].load()
    np.testing.assert_allclose(img.affine, classic.affine)
    np.testing.assert_array_equal(img.array, classic.array)


def test_multiframe_functional_groups_without_number_of_frames(pydicom_file, tmp_path):
    """Two frames described only by their functional groups, Number of Frames left out."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    frames = []
    for k in range(2):
        pos, item = Dataset(), Dataset()
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        pos.ImagePositionPatient = [x, y, z + 3.0 * k]
        item.PlanePositionSequence = Sequence([pos])
        frames.append(item)
    shared, orient, meas = Dataset(), Dataset(), Dataset()
    orient.ImageOrientationPatient = ds.ImageOrientationPatient
    meas.PixelSpacing = ds.PixelSpacing
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([meas])
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        delattr(ds, key)
    single = ds.pixel_array
    ds.PixelData = np.concatenate([single, single[::-1]]).tobytes()
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path)
    entry = read_study(path).series[0]
    img = entry.load()
    assert img.shape == (128, 128, 2)
    np.testing.assert_allclose(img.spacing[2], 3.0)
    assert any("Number of Frames (0028,0008) is missing: 2 frames" in p for p in entry.problems)
    raw = np.asarray(img.array)
    np.testing.assert_array_equal(raw[:, :, 1], raw[:, ::-1, 0])
