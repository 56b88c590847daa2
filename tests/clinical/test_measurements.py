"""Measurements on synthetic masks with known geometry (hand-computed references)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medsight.clinical.measurements import diameters_2d, measure_mask
from medsight.core import Image
from medsight.core.codes import LONG_AXIS, MILLILITER, SHORT_AXIS, VOLUME


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
