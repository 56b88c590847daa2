"""NIfTI and PNG/JPEG/TIFF reading against nibabel and Pillow; exact round trips."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.core import Image, InvalidInputError
from medsight.core.geometry import LPS_TO_RAS
from medsight.io import read_image, write_image

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"


@pytest.mark.parametrize("name", ["anatomical.nii", "example4d.nii.gz", "standard.nii.gz"])
def test_bundled_nibabel_files(name):
    ref = nib.load(NIB_DATA / name)
    img = read_image(NIB_DATA / name)
    np.testing.assert_allclose(LPS_TO_RAS @ img.affine, ref.affine, atol=1e-6)
    assert "".join(nib.aff2axcodes(ref.affine)) == img.orientation
    data = np.asanyarray(ref.dataobj)
    np.testing.assert_allclose(
        img.array, data if img.array.dtype == data.dtype else ref.get_fdata()
    )
    if ref.ndim == 4:
        assert img.spatial_ndim == 3 and img.n_channels == ref.shape[3]


def test_hippocampus_nifti_round_trip_exact(shared_data, tmp_path):
    src = sorted((shared_data / "hippocampus" / "imagesTr").glob("*.nii*"))[0]
    img = read_image(src)
    back = read_image(write_image(img, tmp_path / "copy.nii.gz"))
    assert back.array.dtype == img.array.dtype
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_array_equal(back.affine, img.affine)


def test_png_grey_and_rgb_index_order(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)  # Pillow order: 3 rows, 4 columns
    PILImage.fromarray(grey).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.shape == (4, 3) and img.spatial_ndim == 2
    assert img.array[1, 0] == grey[0, 1]  # (column, row)
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(tmp_path / "c.png")
    col = read_image(tmp_path / "c.png")
    assert col.shape == (7, 5) and col.n_channels == 3
    np.testing.assert_array_equal(col.array, rgb.swapaxes(0, 1))


def test_png_round_trip_and_16_bit(tmp_path):
    img = Image(np.arange(0, 60000, 1000, dtype=np.uint16).reshape(6, 10), spatial_ndim=2)
    back = read_image(write_image(img, tmp_path / "x.png"))
    np.testing.assert_array_equal(back.array, img.array)
    with pytest.raises(InvalidInputError, match="PNG"):
        write_image(Image(np.zeros((2, 2, 2))), tmp_path / "v.png")


def test_fundus_jpeg_from_scikit_image(tmp_path):
    skdata = pytest.importorskip("skimage.data")
    retina = skdata.retina()
    PILImage.fromarray(retina).save(tmp_path / "retina.jpg", quality=95)
    img = read_image(tmp_path / "retina.jpg")
    assert img.shape == (retina.shape[1], retina.shape[0]) and img.n_channels == 3


def test_multipage_tiff_is_a_stack(tmp_path):
    pages = [PILImage.fromarray(np.full((4, 5), i, np.uint8)) for i in range(3)]
    pages[0].save(tmp_path / "s.tif", save_all=True, append_images=pages[1:])
    img = read_image(tmp_path / "s.tif")
    assert img.shape == (5, 4, 3)
    assert [int(img.array[0, 0, k]) for k in range(3)] == [0, 1, 2]


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.nii.gz"
    img = Image(np.zeros((2, 2, 2), np.float32))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(RuntimeError):
        write_image(img, target)
    assert list(tmp_path.iterdir()) == []
