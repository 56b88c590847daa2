"""Pixel spacing from the right DICOM header, and honest 'unknown' where there is none."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medsight.clinical.measurements import measure_mask
from medsight.core import Image
from medsight.core.codes import AREA, MILLIMETER, SQUARE_MILLIMETER
from medsight.core.image import spacing_known
from medsight.io import read_image, read_study, write_image
from medsight.io.dicom.series import pixel_spacing_of

# examples_rgb_color.dcm: a 320 x 240 RGB ultrasound frame without any calibration
US_FILE = "examples_rgb_color.dcm"


def _region(x0, y0, x1, y1, delta_cm, *, spatial_format=1, units=3) -> Dataset:
    r = Dataset()
    r.RegionSpatialFormat = spatial_format
    r.RegionDataType = 1
    r.RegionFlags = 0
    r.RegionLocationMinX0, r.RegionLocationMinY0 = x0, y0
    r.RegionLocationMaxX1, r.RegionLocationMaxY1 = x1, y1
    r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = units
    r.PhysicalDeltaX = r.PhysicalDeltaY = delta_cm
    return r


def _us(pydicom_file, tmp_path, *regions: Dataset):
    ds = pydicom.dcmread(pydicom_file(US_FILE))
    assert "PixelSpacing" not in ds and (ds.Columns, ds.Rows) == (320, 240)
    if regions:
        ds.SequenceOfUltrasoundRegions = Sequence(list(regions))
    path = tmp_path / "us.dcm"
    ds.save_as(path)
    entry = read_study(path).series[0]
    return entry.load(), entry.problems


def test_ultrasound_region_gives_the_spacing_and_a_lesion_measures_in_mm(pydicom_file, tmp_path):
    img, problems = _us(pydicom_file, tmp_path, _region(10, 20, 309, 229, 0.008))
    np.testing.assert_allclose(img.spacing, [0.08, 0.08])
    assert img.meta["spacing_source"] == "UltrasoundRegion" and spacing_known(img)
    assert problems == []
    mask = np.zeros(img.shape, np.uint8)
    mask[100:200, 50:150] = 1  # 100 x 100 pixels of 0.08 mm = an 8 mm square
    (s,) = measure_mask(img.with_array(mask))
    area, long_axis, short_axis = s.measurements()
    assert (area.concept, area.unit) == (AREA, SQUARE_MILLIMETER)
    assert area.value == pytest.approx(64.0)
    assert long_axis.unit == MILLIMETER and long_axis.value == pytest.approx(8 * np.sqrt(2))
    # a square's short axis is the chord perpendicular to its diagonal: the other diagonal
    assert short_axis.value == pytest.approx(8 * np.sqrt(2), abs=0.08)


def test_tissue_region_is_preferred_and_disagreeing_regions_are_not_used(pydicom_file, tmp_path):
    # a small colour-bar-like region (not 2D tissue) with another calibration is ignored
    img, _ = _us(
        pydicom_file,
        tmp_path,
        _region(0, 0, 20, 20, 0.02, spatial_format=0),
        _region(30, 10, 300, 230, 0.005),
    )
    np.testing.assert_allclose(img.spacing, [0.05, 0.05])
    img, problems = _us(
        pydicom_file, tmp_path, _region(0, 0, 150, 230, 0.005), _region(160, 0, 310, 230, 0.01)
    )
    assert not spacing_known(img) and img.meta["spacing_source"] is None
    assert any("disagree" in p for p in problems)


def test_region_outside_the_image_is_not_used(pydicom_file, tmp_path):
    img, problems = _us(pydicom_file, tmp_path, _region(84, 31, 595, 414, 0.0051))
    assert not spacing_known(img) and img.meta["spacing_source"] is None
    assert any("outside the 320 x 240 image" in p and "not used" in p for p in problems)
    np.testing.assert_allclose(img.spacing, [1.0, 1.0])  # a grid for geometry, not mm


def test_regions_in_other_units_are_ignored(pydicom_file, tmp_path):
    img, problems = _us(pydicom_file, tmp_path, _region(10, 10, 300, 200, 0.01, units=4))
    assert not spacing_known(img)
    assert any("no pixel spacing" in p for p in problems)


def _dx(pydicom_file, tmp_path, **attrs):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    for key in ("PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient"):
        delattr(ds, key)
    ds.Modality = "DX"
    for key, value in attrs.items():
        setattr(ds, key, value)
    path = tmp_path / "dx.dcm"
    ds.save_as(path)
    entry = read_study(path).series[0]
    return entry.load(), entry.problems


def test_imager_pixel_spacing_is_divided_by_the_magnification(pydicom_file, tmp_path):
    img, problems = _dx(
        pydicom_file,
        tmp_path,
        ImagerPixelSpacing=[0.12, 0.096],
        EstimatedRadiographicMagnificationFactor=1.2,
    )
    # spacing is (between columns, between rows) in index order; PixelSpacing is (rows, cols)
    np.testing.assert_allclose(img.spacing, [0.08, 0.1])
    assert img.meta["spacing_source"] == "ImagerPixelSpacing/magnification"
    assert problems == []


def test_imager_pixel_spacing_without_magnification_says_detector(pydicom_file, tmp_path):
    img, problems = _dx(pydicom_file, tmp_path, ImagerPixelSpacing=[0.1, 0.1])
    np.testing.assert_allclose(img.spacing, [0.1, 0.1])
    assert img.meta["spacing_source"] == "ImagerPixelSpacing" and spacing_known(img)
    assert any("at the detector" in p for p in problems)


def test_pixel_spacing_wins_and_rt_image_plane_spacing_is_last():
    ds = Dataset()
    ds.Rows, ds.Columns = 10, 10
    ds.PixelSpacing, ds.ImagerPixelSpacing = [0.5, 0.5], [0.6, 0.6]
    assert pixel_spacing_of(ds)[:2] == ((0.5, 0.5), "PixelSpacing")
    rt = Dataset()
    rt.Rows, rt.Columns = 10, 10
    rt.ImagePlanePixelSpacing = [0.4, 0.4]
    assert pixel_spacing_of(rt)[:2] == ((0.4, 0.4), "ImagePlanePixelSpacing")
    zero = Dataset()
    zero.PixelSpacing = [0, 0]  # invalid: treated as absent, not as a singular affine
    assert pixel_spacing_of(zero) == (None, None, [])


def test_no_spacing_at_all_is_unknown(pydicom_file, tmp_path):
    img, problems = _dx(pydicom_file, tmp_path)
    assert not spacing_known(img) and img.meta["spacing_source"] is None
    assert any("sizes are in pixels" in p for p in problems)


def test_pydicom_ultrasound_files(pydicom_file):
    """What pydicom's own ultrasound files get: none has a usable calibration."""
    rgb = read_image(pydicom_file("examples_rgb_color.dcm"))  # no regions, no spacing
    assert not spacing_known(rgb)
    for name in ("examples_ybr_color.dcm", "examples_palette.dcm"):
        entry = read_study(pydicom_file(name)).series[0]
        # their regions extend past the (downsized) pixel matrix
        assert not spacing_known(entry.load()), name
        assert any("lies outside" in p for p in entry.problems), name


def test_classic_and_enhanced_series_keep_pixel_spacing(pydicom_file):
    ct = read_image(pydicom_file("CT_small.dcm"))
    assert ct.meta["spacing_source"] == "PixelSpacing" and spacing_known(ct)
    # the enhanced (multi-frame) case: tests/io/test_dicom_geometry.py, enhanced vs classic


def test_png_spacing_unknown_and_nifti_known(tmp_path):
    PILImage.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "a.png")
    png = read_image(tmp_path / "a.png")
    assert not spacing_known(png) and png.meta["spacing_source"] is None
    nii = read_image(write_image(Image(np.zeros((3, 3, 3), np.int16)), tmp_path / "a.nii.gz"))
    assert spacing_known(nii) and nii.meta["spacing_source"] == "NIfTI"
    assert spacing_known(Image(np.zeros((2, 2))))  # hand-built Images are in mm
    assert not spacing_known(png.with_array(np.ones(png.shape, np.uint8)))  # meta is kept
