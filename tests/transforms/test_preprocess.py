"""Preprocessing: numpy path equals the MONAI compilation; intensity modes by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core import Image, InvalidInputError
from medsight.models.spec import Intensity, PreprocessingSpec
from medsight.transforms import to_monai, to_network_input


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
