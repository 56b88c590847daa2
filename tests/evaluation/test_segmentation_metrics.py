"""Segmentation metrics against hand-computed values and against MONAI's implementations.

Reference sources: the hand computations are in the comments; the independent implementation
is MONAI 1.x ``monai.metrics.compute_hausdorff_distance`` (percentile=95) and
``compute_average_surface_distance`` (symmetric=True).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from medsight.core.errors import InvalidInputError
from medsight.evaluation.segmentation import (
    average_surface_distance,
    case_metrics,
    dice,
    hd95,
    summarize,
    volume_difference_ml,
)


def test_dice_hand_computed():
    ref = np.zeros((10, 10), bool)
    ref[0:10, 0:4] = True  # 40 voxels
    pred = np.zeros((10, 10), bool)
    pred[0:10, 2:6] = True  # 40 voxels, 20 shared
    assert dice(pred, ref) == pytest.approx(2 * 20 / 80)
    assert dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert dice(pred, np.zeros_like(ref)) == 0.0


def test_distances_single_voxels_with_spacing():
    # one voxel each, 3 voxels apart along axis 0 with 2 mm spacing: every distance is 6 mm
    a = np.zeros((8, 8), bool)
    b = np.zeros((8, 8), bool)
    a[1, 4] = True
    b[4, 4] = True
    assert hd95(a, b, (2.0, 1.0)) == pytest.approx(6.0)
    assert average_surface_distance(a, b, (2.0, 1.0)) == pytest.approx(6.0)


def test_shifted_square_hand_computed():
    # a 4x4 square shifted by one voxel along axis 1 (2 mm).  Of the 12 boundary voxels of the
    # prediction, 6 lie on the reference's boundary (0 mm), 2 lie inside the reference one row
    # from its boundary (1 mm) and 4 are one column (2 mm) away: sum 10 mm; the same holds the
    # other way round.  HD95 = 2 mm; ASD = 20 / 24 mm.
    ref = np.zeros((10, 10), bool)
    ref[2:6, 2:6] = True
    pred = np.zeros((10, 10), bool)
    pred[2:6, 3:7] = True
    assert hd95(pred, ref, (1.0, 2.0)) == pytest.approx(2.0)
    assert average_surface_distance(pred, ref, (1.0, 2.0)) == pytest.approx(20 / 24)


def test_empty_cases():
    a = np.zeros((5, 5), bool)
    b = a.copy()
    b[2, 2] = True
    assert hd95(a, a) == 0.0
    assert math.isnan(hd95(a, b))
    assert math.isnan(average_surface_distance(b, a))


def test_volume_difference():
    a = np.ones((10, 10, 10), bool)  # 1000 voxels of 2 mm^3 = 2 mL
    b = np.zeros_like(a)
    b[:5] = True  # 1 mL
    assert volume_difference_ml(a, b, (1.0, 1.0, 2.0)) == pytest.approx(1.0)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(InvalidInputError, match="shapes differ"):
        dice(np.zeros((3, 3)), np.zeros((3, 4)))


def test_against_monai_on_blobs():
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:24, :24, :20]
    ref = (zz - 12) ** 2 + (yy - 11) ** 2 / 2 + (xx - 9) ** 2 < 49
    pred = (zz - 13) ** 2 + (yy - 12) ** 2 / 1.5 + (xx - 10) ** 2 < 40 + rng.random(ref.shape)
    spacing = (1.0, 0.8, 2.5)
    p = pred[None, None].astype(np.float32)
    r = ref[None, None].astype(np.float32)
    want_hd = float(compute_hausdorff_distance(p, r, percentile=95, spacing=spacing)[0, 0])
    want_asd = float(compute_average_surface_distance(p, r, symmetric=True, spacing=spacing)[0, 0])
    assert hd95(pred, ref, spacing) == pytest.approx(want_hd, rel=1e-5)
    assert average_surface_distance(pred, ref, spacing) == pytest.approx(want_asd, rel=1e-5)


def test_case_metrics_and_summary_per_label():
    ref = np.zeros((12, 12), int)
    ref[1:5, 1:5] = 1
    ref[7:11, 7:11] = 2
    pred = ref.copy()
    pred[1:5, 1] = 0  # label 1 loses 4 of 16 voxels: Dice 24/28
    rows = case_metrics(pred, ref, [1, 2], case_id="a") + case_metrics(
        ref, ref, [1, 2], case_id="b"
    )
    assert rows[0].dice == pytest.approx(24 / 28)
    assert rows[1].dice == 1.0
    rep = summarize(rows, {1: "one", 2: "two"}, n_resamples=100)
    one = rep[0].metrics["dice"]
    assert one["value"] == pytest.approx((24 / 28 + 1) / 2)
    assert one["low"] <= one["value"] <= one["high"]
