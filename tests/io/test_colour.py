"""Colour DICOM: palette, YBR and RGB of the same picture give the same uint8 0-255 values."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.pixels import convert_color_space
from pydicom.uid import ExplicitVRLittleEndian

from medsight.io import read_image


def _as_colour(src: pydicom.Dataset, rgb: np.ndarray, photometric: str, path, bits: int = 8):
    ds = src.copy()
    for name in list(ds.keys()):
        if "PaletteColor" in pydicom.datadict.keyword_for_tag(name):
            del ds[name]
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = np.ascontiguousarray(rgb).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_palette_ybr_and_rgb_of_one_picture_agree_as_uint8(pydicom_file, tmp_path):
    path = pydicom_file("examples_palette.dcm")
    src = pydicom.dcmread(path)
    assert list(src.RedPaletteColorLookupTableDescriptor)[2] == 16  # 16-bit LUT entries
    palette = read_image(path)
    pal = np.asarray(palette.array)
    assert pal.dtype == np.uint8 and pal.max() == 255 and palette.n_channels == 3
    # the red channel is the 8 high-order bits of the LUT entry of each stored index
    red = np.frombuffer(src.RedPaletteColorLookupTableData, "<u2") >> 8
    np.testing.assert_array_equal(pal[..., 0], red[src.pixel_array].T)
    rgb_rc = np.ascontiguousarray(np.swapaxes(pal, 0, 1))  # (rows, columns, 3)
    rgb = read_image(_as_colour(src, rgb_rc, "RGB", tmp_path / "rgb.dcm"))
    np.testing.assert_array_equal(np.asarray(rgb.array), pal)
    ybr_rc = convert_color_space(rgb_rc, "RGB", "YBR_FULL")
    ybr = read_image(_as_colour(src, ybr_rc, "YBR_FULL", tmp_path / "ybr.dcm"))
    got = np.asarray(ybr.array)
    assert got.dtype == np.uint8
    assert np.abs(got.astype(int) - pal.astype(int)).max() <= 3  # YBR rounding only
    wide = read_image(
        _as_colour(src, rgb_rc.astype(np.uint16) << 4, "RGB", tmp_path / "rgb12.dcm", bits=12)
    )
    np.testing.assert_array_equal(np.asarray(wide.array), pal)  # 12-bit RGB -> 8 bits
