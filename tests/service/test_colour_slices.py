"""Colour images in medsight's own viewer: the slice PNGs of RGB, YBR and palette colour
studies are RGB with the source's pixels, window/level is said to apply to grey only, and an
AI mask on a colour series still lies on its grid (its overlay is drawn over it).

Reference pixels come from pydicom directly (``Dataset.pixel_array``, ``pixel_array(...,
as_rgb=True)`` for YBR, ``apply_color_lut`` for the palette), not from medsight's reader.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
from PIL import Image as PILImage
from pydicom.pixels import apply_color_lut
from pydicom.pixels import pixel_array as pydicom_pixels

from medsight.io import read_image, write_image
from medsight.service.viewer.slices import matching_mask


def _upload(client, admin, path) -> str:
    files = [("files", (path.name, path.read_bytes(), "application/dicom"))]
    resp = client.post("/api/studies?analyse=false", files=files, headers=admin)
    assert resp.status_code == 201, resp.text
    (uid,) = resp.json()["studies"]
    return uid


def _slice(client, admin, uid, k, **query) -> PILImage.Image:
    resp = client.get(f"/api/studies/{uid}/series/0/slices/{k}.png", params=query, headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    return PILImage.open(io.BytesIO(resp.content))


def test_rgb_ultrasound_slice_is_rgb_with_the_source_pixels(client, admin, pydicom_file):
    source = pydicom_file("examples_rgb_color.dcm")  # 2D RGB ultrasound (colour Doppler-like)
    uid = _upload(client, admin, source)
    (series,) = client.get(f"/api/studies/{uid}/series", headers=admin).json()
    assert series["colour"] is True and series["photometric"] == "RGB"
    assert "grey-scale images only" in series["window_note"]
    png = _slice(client, admin, uid, 0)
    assert png.mode == "RGB"
    expected = pydicom.dcmread(source).pixel_array  # (rows, columns, 3)
    np.testing.assert_array_equal(np.asarray(png), expected)
    # window / level do not apply to colour: the same pixels whatever is asked
    windowed = _slice(client, admin, uid, 0, center=10, width=20)
    np.testing.assert_array_equal(np.asarray(windowed), expected)


def test_ybr_and_palette_slices_are_rgb(client, admin, pydicom_file):
    ybr = pydicom_file("examples_ybr_color.dcm")  # 30 frames, YBR_FULL_422
    uid = _upload(client, admin, ybr)
    png = _slice(client, admin, uid, 7)
    assert png.mode == "RGB"
    expected = pydicom_pixels(ybr, index=7, as_rgb=True)
    assert np.abs(np.asarray(png, np.int16) - expected.astype(np.int16)).max() <= 1
    palette = pydicom_file("examples_palette.dcm")
    uid = _upload(client, admin, palette)
    png = _slice(client, admin, uid, 0)
    assert png.mode == "RGB"
    ds = pydicom.dcmread(palette)
    expected = (apply_color_lut(ds.pixel_array, ds) >> 8).astype(np.uint8)  # 16-bit entries
    np.testing.assert_array_equal(np.asarray(png), expected)


def test_grey_slices_stay_grey_and_windowed(client, admin, pydicom_file):
    uid = _upload(client, admin, pydicom_file("CT_small.dcm"))
    (series,) = client.get(f"/api/studies/{uid}/series", headers=admin).json()
    assert series["colour"] is False and "window_note" not in series
    wide, narrow = (_slice(client, admin, uid, 0, center=40, width=w) for w in (2000, 50))
    assert wide.mode == narrow.mode == "L"
    assert not np.array_equal(np.asarray(wide), np.asarray(narrow))


def test_a_mask_on_a_colour_series_lies_on_its_grid(
    client, admin, settings, pydicom_file, tmp_path
):
    source = pydicom_file("examples_rgb_color.dcm")
    uid = _upload(client, admin, source)
    img = read_image(source)
    mask = np.zeros(img.shape, np.uint8)
    mask[100:150, 80:120] = 1
    mask_file = write_image(img.with_array(mask), tmp_path / "mask_toy.nii.gz")
    assert matching_mask(settings, uid, 0, [mask_file]) == mask_file
