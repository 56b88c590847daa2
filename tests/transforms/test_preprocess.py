"""Preprocessing: numpy path equals the MONAI compilation; intensity modes by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core import Image, InvalidInputError
from medsight.models.spec import Intensity, PreprocessingSpec
from medsight.transforms import to_monai, to_network_input
from medsight.transforms.preprocess import normalize_intensity


@pytest.mark.parametrize(
    ("intensity", "args"),
    [
        (Intensity.NONE, {}),
        (Intensity.SCALE_0_1, {"max": 255.0}),
        (Intensity.ZSCORE, {}),
        (Intensity.CT_WINDOW, {"lower": -100.0, "upper": 300.0}),
        (Intensity.DATASET_ZSCORE, {"mean": 40.0, "std": 12.0}),
    ],
)
@pytest.mark.parametrize("shape", [(12, 10), (8, 6, 4)])
def test_numpy_path_equals_monai(intensity, args, shape):
    rng = np.random.default_rng(0)
    arr = rng.uniform(-300, 500, shape).astype(np.float32)
    size = [s // 2 for s in shape]
    spec = PreprocessingSpec(size=size, intensity=intensity, intensity_args=args)
    ours = to_network_input(Image(arr), spec)
    theirs = to_monai(spec)(arr[None])
    assert ours.shape == (1, *size)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_intensity_values_by_hand():
    arr = np.array([[-2000.0, 0.0], [500.0, 3000.0]], np.float32)
    spec = PreprocessingSpec(intensity=Intensity.CT_WINDOW,
                             intensity_args={"lower": -1000, "upper": 1000})  # fmt: skip
    np.testing.assert_allclose(to_network_input(Image(arr), spec)[0], [[-1, 0], [0.5, 1]])
    spec = PreprocessingSpec(intensity=Intensity.DATASET_ZSCORE,
                             intensity_args={"mean": 500, "std": 250})  # fmt: skip
    np.testing.assert_allclose(to_network_input(Image(arr), spec)[0], [[-10, -2], [0, 10]])


def test_rgb_and_channel_matching():
    rgb = Image(np.zeros((4, 4, 3), np.uint8), spatial_ndim=2)
    assert to_network_input(rgb, PreprocessingSpec(channels=3)).shape == (3, 4, 4)
    assert to_network_input(rgb, PreprocessingSpec(channels=1)).shape == (1, 4, 4)
    grey = Image(np.zeros((4, 4), np.uint8))
    assert to_network_input(grey, PreprocessingSpec(channels=3)).shape == (3, 4, 4)
    with pytest.raises(InvalidInputError, match="3 axes"):
        to_network_input(grey, PreprocessingSpec(size=[2, 2, 2]))
    with pytest.raises(InvalidInputError, match="mean"):
        to_network_input(grey, PreprocessingSpec(intensity=Intensity.DATASET_ZSCORE))


@pytest.mark.parametrize("intensity", [Intensity.ZSCORE, Intensity.ZSCORE_NONZERO])
@pytest.mark.parametrize("per_channel", [False, True])
def test_zscore_modes_equal_monai_per_channel_or_jointly(intensity, per_channel):
    rng = np.random.default_rng(1)
    arr = rng.uniform(-300, 500, (10, 12, 3)).astype(np.float32)
    arr[:3] = 0
    arr[..., 1] *= 9
    spec = PreprocessingSpec(intensity=intensity, per_channel=per_channel, channels=3)
    ours = to_network_input(Image(arr, spatial_ndim=2), spec)
    theirs = to_monai(spec.model_copy(update={"channels": 1}))(np.moveaxis(arr, -1, 0))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_per_channel_and_joint_zscore():
    from medsight.transforms import normalize_intensity

    x = np.stack([np.arange(12.0).reshape(3, 4), 100 + 10 * np.arange(12.0).reshape(3, 4)])
    x = x.astype(np.float32)
    joint = normalize_intensity(x, PreprocessingSpec(intensity=Intensity.ZSCORE))
    each = normalize_intensity(x, PreprocessingSpec(intensity=Intensity.ZSCORE, per_channel=True))
    # jointly (classification): one mean/std over both channels, so channel 0 is all negative
    assert joint.mean() == pytest.approx(0, abs=1e-6) and float(joint[0].max()) < 0
    np.testing.assert_allclose(joint, (x - x.mean()) / x.std(), rtol=1e-6)
    # per channel (segmentation): both channels end up identical
    np.testing.assert_allclose(each[0], each[1], atol=1e-6)
    np.testing.assert_allclose(each[0], (x[0] - x[0].mean()) / x[0].std(), rtol=1e-6)
    # zscore_nonzero: statistics of the non-zero voxels, zeros stay zero
    x[:, 0] = 0
    nz = normalize_intensity(
        x, PreprocessingSpec(intensity=Intensity.ZSCORE_NONZERO, per_channel=True)
    )
    assert (nz[:, 0] == 0).all()
    assert nz[1, 1:].mean() == pytest.approx(0, abs=1e-6)
    assert nz[1, 1:].std() == pytest.approx(1, abs=1e-6)
    # a constant channel is centred, never divided by ~0
    flat = normalize_intensity(
        np.full((1, 3, 3), 7.0, np.float32), PreprocessingSpec(intensity=Intensity.ZSCORE)
    )
    assert np.array_equal(flat, np.zeros((1, 3, 3), np.float32))


def test_resize_linear_and_nearest():
    from medsight.transforms import resize

    labels = np.array([[[0, 1], [2, 3]]], np.float32)
    near = resize(labels, [4, 4], nearest=True)
    assert near.shape == (1, 4, 4) and set(np.unique(near)) == {0, 1, 2, 3}
    assert near[0, :2, :2].tolist() == [[0, 0], [0, 0]]
    lin = resize(labels, [4, 4])
    assert 0 < lin[0, 1, 1] < 3 and lin[0, 0, 0] == 0
    assert resize(labels, [2, 2]) is labels  # same size: unchanged
    assert resize(np.zeros((2, 4, 4, 4), np.float32), [2, 3, 5]).shape == (2, 2, 3, 5)


def test_robust_percentile_matches_the_denoisers_scaling_and_monai():
    from medsight.transforms.noise import scale_to_unit

    x = np.random.default_rng(0).gamma(2.0, 50.0, (1, 20, 16)).astype(np.float32)
    spec = PreprocessingSpec(intensity=Intensity.ROBUST_PERCENTILE)
    ours = normalize_intensity(x, spec)
    np.testing.assert_allclose(ours, scale_to_unit(x)[0], rtol=1e-5, atol=1e-6)
    monai = np.asarray(to_monai(PreprocessingSpec(intensity=Intensity.ROBUST_PERCENTILE))(x))
    np.testing.assert_allclose(ours, monai, rtol=1e-4, atol=1e-5)
    flat = normalize_intensity(np.full((1, 4, 4), 7.0, np.float32), spec)
    assert np.isfinite(flat).all()
