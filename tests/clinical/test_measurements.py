"""Measurements on synthetic masks with known geometry (hand-computed references)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medsight.clinical.measurements import diameters_2d, measure_mask
from medsight.core import Image
from medsight.core.codes import (
    AREA,
    LONG_AXIS,
    MILLILITER,
    PIXELS,
    SHORT_AXIS,
    SQUARE_MILLIMETER,
    SQUARE_PIXELS,
    VOLUME,
    VOXELS,
)


def _sphere(radius_mm: float, spacing: float, n: int) -> np.ndarray:
    c = (n - 1) / 2
    g = np.mgrid[:n, :n, :n] - c
    return (np.sqrt((g**2).sum(0)) * spacing <= radius_mm).astype(np.uint8)


def test_sphere_volume_and_diameters():
    # sphere of radius 10 mm on a 0.5 mm grid: V = 4/3 pi r^3 = 4.18879 mL, diameter 20 mm
    img = Image(_sphere(10.0, 0.5, 45), spacing=(0.5, 0.5, 0.5), origin=(10.0, -5.0, 3.0))
    (s,) = measure_mask(img)
    assert s.n_lesions == 1
    assert s.volume_ml == pytest.approx(4 / 3 * math.pi * 1000 / 1000, rel=0.01)
    lesion = s.lesions[0]
    assert lesion.long_axis_mm == pytest.approx(20.0, abs=1.0)  # up to one voxel (corners)
    assert lesion.short_axis_mm == pytest.approx(20.0, abs=1.0)
    # centroid at the grid centre (22 voxels of 0.5 mm from the origin along each axis)
    assert lesion.centroid_lps_mm == pytest.approx((21.0, 6.0, 14.0))
    assert lesion.slice_index == 22


def test_rectangle_diameters_2d():
    # 20 x 8 voxels of 0.5 mm = 10 x 4 mm: long axis = diagonal sqrt(116) = 10.770 mm;
    # the longest chord perpendicular to it is min(10*d/4, 4*d/10) = 4.308 mm
    m = np.zeros((40, 40), bool)
    m[5:25, 10:18] = True
    long_axis, short_axis = diameters_2d(m, (0.5, 0.5))
    assert long_axis == pytest.approx(math.sqrt(116), abs=1e-6)
    assert short_axis == pytest.approx(4 * math.sqrt(116) / 10, abs=0.5)  # within one voxel


def test_lesions_bbox_and_coded_measurements():
    m = np.zeros((30, 30, 6), np.uint8)
    m[2:12, 2:6, 1:3] = 1  # 10 x 4 x 2 voxels = 80
    m[20:23, 20:23, 4:5] = 1  # a second, smaller lesion (9 voxels)
    m[25:28, 2:4, 0:2] = 2  # another label
    img = Image(m, spacing=(1.0, 1.0, 3.0))
    s1, s2 = measure_mask(img, {1: "lesion", 2: "other"})
    assert (s1.n_lesions, s2.n_lesions) == (2, 1)
    assert s1.volume_ml == pytest.approx(89 * 3 / 1000)
    big = s1.lesions[0]
    assert big.n_voxels == 80
    assert big.bbox_index == ((2, 11), (2, 5), (1, 2))
    assert big.bbox_size_mm == (10.0, 4.0, 6.0)
    vol, la, sa = big.measurements()
    assert (vol.concept, vol.unit, la.concept, sa.concept) == (
        VOLUME,
        MILLILITER,
        LONG_AXIS,
        SHORT_AXIS,
    )
    assert la.unit.value == "mm" and la.value == pytest.approx(math.sqrt(116))


def test_empty_label_and_2d():
    img = Image(np.zeros((8, 8), np.uint8))
    assert measure_mask(img, {1: "x"})[0].n_lesions == 0
    m = np.zeros((8, 8), np.uint8)
    m[2:4, 2:4] = 1
    (s,) = measure_mask(Image(m, spacing=(0.5, 0.5)))
    assert s.lesions[0].slice_index is None
    assert s.lesions[0].long_axis_mm == pytest.approx(math.sqrt(2))


def _units(measurements) -> list[str]:
    return [m.unit.value for m in measurements]


def test_2d_mask_has_an_area_and_diameters_but_no_volume():
    m = np.zeros((30, 30), np.uint8)
    m[5:25, 10:18] = 1  # 20 x 8 pixels of 0.5 mm = 10 x 4 mm = 40 mm2
    (s,) = measure_mask(Image(m, spacing=(0.5, 0.5)))
    assert s.area_mm2 == pytest.approx(40.0) and s.volume_ml is None
    assert s.lesions[0].area_mm2 == pytest.approx(40.0) and s.lesions[0].volume_ml is None
    area, la, sa = s.measurements()
    assert (area.concept, area.unit) == (AREA, SQUARE_MILLIMETER)
    assert (la.concept, sa.concept) == (LONG_AXIS, SHORT_AXIS)
    assert la.value == pytest.approx(math.sqrt(116))
    assert VOLUME not in [x.concept for x in (*s.measurements(), *s.lesions[0].measurements())]
    assert str(area) == "Area: 40 mm2"


def test_single_slice_volume_is_planar_and_3d_has_a_volume():
    m = np.zeros((20, 20, 1), np.uint8)
    m[2:6, 2:6, 0] = 1
    (s,) = measure_mask(Image(m, spacing=(0.5, 0.5, 5.0)))  # one CT slice: no thickness known
    assert s.planar and s.area_mm2 == pytest.approx(4.0) and s.volume_ml is None
    assert s.measurements()[0].concept == AREA
    (v,) = measure_mask(Image(np.repeat(m, 3, axis=2), spacing=(0.5, 0.5, 5.0)))
    assert not v.planar and v.volume_ml == pytest.approx(48 * 1.25 / 1000) and v.area_mm2 is None
    assert (v.measurements()[0].concept, v.measurements()[0].unit) == (VOLUME, MILLILITER)


@pytest.mark.parametrize("shape", [(30, 30), (30, 30, 4)])
def test_unknown_spacing_measures_in_pixels_never_mm(shape):
    m = np.zeros(shape, np.uint8)
    m[5:25, 10:18] = 1  # 20 x 8 pixels
    # the affine says 0.5 (as a reader might leave it) but meta says it is not a known size
    (s,) = measure_mask(Image(m, spacing=(0.5,) * len(shape), meta={"spacing_known": False}))
    lesion = s.lesions[0]
    assert (lesion.long_axis_mm, lesion.area_mm2, lesion.volume_ml, s.volume_ml) == (None,) * 4
    assert lesion.centroid_lps_mm is None and lesion.bbox_size_mm is None
    assert lesion.long_axis == pytest.approx(math.hypot(20, 8))  # in pixels
    all_m = (*s.measurements(), *lesion.measurements())
    units = set(_units(all_m))
    assert units <= {PIXELS.value, SQUARE_PIXELS.value, VOXELS.value}
    assert not {"mm", "mm2", "mL"} & units
    assert all("pixel spacing unknown" in x.qualifier for x in all_m)
    text = " ".join(str(x) for x in all_m)
    assert "mm" not in text and "mL" not in text and "pixels" in text
    if len(shape) == 2:
        assert s.measurements()[0].value == 160 and s.measurements()[0].unit == SQUARE_PIXELS
    else:
        assert s.measurements()[0].value == 640 and s.measurements()[0].unit == VOXELS


def test_png_mask_measures_in_pixels(tmp_path):
    from PIL import Image as PILImage

    from medsight.io import read_image

    PILImage.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "us.png")
    img = read_image(tmp_path / "us.png")
    m = np.zeros(img.shape, np.uint8)
    m[10:20, 10:20] = 1
    (s,) = measure_mask(img.with_array(m))
    assert str(s.measurements()[0]) == "Area: 100 square pixels"


def test_cine_frames_give_no_volume_in_ml():
    import numpy as np

    from medsight.clinical.measurements import measure_mask
    from medsight.core import Image

    m = np.zeros((20, 20, 6), np.uint8)
    m[5:10, 5:10, 1:4] = 1
    frames = Image(m, spacing=(0.3, 0.3, 1.0), meta={"slice_spacing_known": False})
    units = {x.unit.value for x in measure_mask(frames)[0].measurements()}
    assert "mL" not in units and "mm" not in units
    assert measure_mask(Image(m, spacing=(0.3, 0.3, 1.0)))[0].volume_ml is not None


def test_an_anatomical_structure_is_a_whole_structure_not_all_lesions():
    arr = np.zeros((20, 20, 4), np.int16)
    arr[2:6, 2:6, 1:3] = 1
    arr[10:14, 10:14, 1:3] = 1  # two parts of one structure
    found = measure_mask(Image(arr, np.eye(4)), {1: "hippocampus"})[0]
    assert found.measurements()[0].qualifier == "all lesions"
    total = found.measurements(anatomy=True)[0]
    assert total.qualifier == "whole structure"
    assert total.value == found.measurements()[0].value
