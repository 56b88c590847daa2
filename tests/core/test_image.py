"""Image: construction rules, immutability and geometry-preserving conversions."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core import GeometryError, Image, InvalidInputError
from medsight.core.geometry import LPS_TO_RAS


def _oblique_image(channels: int = 0) -> Image:
    theta = np.radians(20)
    direction = np.array(
        [[np.cos(theta), 0, np.sin(theta)], [0, 1, 0], [-np.sin(theta), 0, np.cos(theta)]]
    )
    rng = np.random.default_rng(0)
    shape = (5, 6, 7) + ((channels,) if channels else ())
    return Image(
        rng.normal(size=shape).astype(np.float32),
        spacing=(0.8, 0.9, 2.5),
        direction=direction,
        origin=(-10.0, 20.0, 35.5),
        spatial_ndim=3,
        modality="MR",
    )


def test_array_is_read_only_and_with_array_keeps_geometry():
    img = _oblique_image()
    with pytest.raises(ValueError):
        img.array[0, 0, 0] = 1
    other = img.with_array(np.zeros(img.shape, dtype=np.uint8))
    assert other.array.dtype == np.uint8
    np.testing.assert_array_equal(other.affine, img.affine)
    assert other.modality == "MR"


def test_caller_array_is_not_frozen_by_construction():
    data = np.zeros((3, 3))
    Image(data)
    data[0, 0] = 1  # the caller's own array stays writeable


def test_shape_channels_and_spatial_ndim_rules():
    rgb = Image(np.zeros((10, 8, 3), np.uint8), spatial_ndim=2)
    assert rgb.shape == (10, 8) and rgb.n_channels == 3 and rgb.orientation == "LP"
    with pytest.raises(InvalidInputError, match="spatial_ndim"):
        Image(np.zeros((2, 2, 2, 2)))
    with pytest.raises(InvalidInputError):
        Image(np.zeros((2, 2, 2, 2, 2)), spatial_ndim=3)
    with pytest.raises(GeometryError):
        Image(np.zeros((2, 2)), np.zeros((4, 4)))


def test_index_to_world_matches_affine():
    img = _oblique_image()
    idx = np.array([[1, 2, 3], [4, 0, 6]])
    expected = (img.affine @ np.c_[idx, np.ones(2)].T).T[:, :3]
    np.testing.assert_allclose(img.index_to_world(idx), expected)


@pytest.mark.parametrize("channels", [0, 3])
def test_sitk_round_trip(channels):
    img = _oblique_image(channels)
    sitk_img = img.to_sitk()
    assert sitk_img.GetSize() == img.shape
    # the physical point of voxel (1, 2, 3) must agree with medsight's affine
    point = sitk_img.TransformIndexToPhysicalPoint((1, 2, 3))
    np.testing.assert_allclose(point, img.index_to_world([1, 2, 3]), atol=1e-9)
    back = Image.from_sitk(sitk_img)
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-12)


def test_sitk_2d_round_trip():
    img = Image(np.arange(12, dtype=np.int16).reshape(3, 4), spacing=(0.5, 0.25), origin=(1, 2, 0))
    back = Image.from_sitk(img.to_sitk())
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_allclose(back.affine, img.affine)


@pytest.mark.parametrize("channels", [0, 2])
def test_nibabel_round_trip_uses_ras(channels):
    img = _oblique_image(channels)
    nii = img.to_nibabel()
    np.testing.assert_allclose(nii.affine, LPS_TO_RAS @ img.affine)
    back = Image.from_nibabel(nii)
    assert back.spatial_ndim == 3 and back.n_channels == img.n_channels
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-12)


def test_nibabel_2d_rgb_round_trip():
    img = Image(np.arange(60, dtype=np.uint8).reshape(5, 4, 3), spatial_ndim=2, spacing=(2, 3))
    back = Image.from_nibabel(img.to_nibabel())
    assert back.spatial_ndim == 2 and back.n_channels == 3
    np.testing.assert_array_equal(back.array, img.array)


@pytest.mark.parametrize("channels", [0, 3])
def test_metatensor_round_trip(channels):
    pytest.importorskip("monai")
    img = _oblique_image(channels)
    mt = img.to_metatensor()
    assert tuple(mt.shape) == (channels or 1, *img.shape)
    np.testing.assert_allclose(mt.affine.numpy(), LPS_TO_RAS @ img.affine, atol=1e-6)
    back = Image.from_metatensor(mt)
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-6)


def test_metatensor_2d_round_trip():
    pytest.importorskip("monai")
    img = Image(np.ones((6, 4), np.float32), spacing=(0.3, 0.6), origin=(5, 6, 0))
    mt = img.to_metatensor()
    assert tuple(mt.shape) == (1, 6, 4) and tuple(mt.affine.shape) == (3, 3)
    back = Image.from_metatensor(mt)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-6)


def test_metatensor_affine_agrees_with_monai_loader(tmp_path):
    """MONAI's own NIfTI loader must see the same geometry as our MetaTensor conversion."""
    pytest.importorskip("monai")
    from monai.transforms import LoadImage

    from medsight.io import write_image

    img = _oblique_image()
    path = write_image(img, tmp_path / "x.nii.gz")
    loaded = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    np.testing.assert_allclose(loaded.affine.numpy(), img.to_metatensor().affine.numpy(), atol=1e-5)
    np.testing.assert_allclose(loaded.numpy()[0], img.array, atol=1e-6)
