"""Bad input: every failure is one clear MedsightError naming the file; good files still load."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pydicom
import pytest

from medsight.core import EmptyInputError, UnreadableFileError, UnsupportedFormatError
from medsight.io import read_image, read_study


def _patch_length(path, marker: bytes, offset: int, value: int) -> None:
    data = bytearray(path.read_bytes())
    i = data.find(marker)
    assert i >= 0
    data[i + offset : i + offset + 4] = struct.pack("<I", value)
    path.write_bytes(bytes(data))


@pytest.fixture
def bad_files(tmp_path, pydicom_file):
    """A folder with one good CT slice and one file for each way a file can be bad."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), folder / "good.dcm")
    (folder / "README.txt").write_text("exported by a PACS\n")
    (folder / "empty.dcm").write_bytes(b"")
    data = pydicom_file("CT_small.dcm").read_bytes()
    (folder / "half_header.dcm").write_bytes(data[:600])
    shutil.copy(pydicom_file("MR_truncated.dcm"), folder / "truncated_pixels.dcm")
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    del ds.PixelData
    ds.save_as(folder / "no_pixels.dcm")
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.add_new((0x0009, 0x0010), "LO", "TEST")
    ds.add_new((0x0009, 0x1010), "OB", b"ABCD")
    ds.save_as(folder / "huge_claim.dcm")
    _patch_length(folder / "huge_claim.dcm", b"\x09\x00\x10\x10OB\x00\x00", 8, 0x7FFFFFF0)
    ds = pydicom.dcmread(pydicom_file("JPEG2000.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder here
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "unsupported.dcm", enforce_file_format=False)
    return folder


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("README.txt", UnreadableFileError, "not a DICOM file"),
        ("empty.dcm", UnreadableFileError, "empty"),
        ("half_header.dcm", UnreadableFileError, "truncated"),
        ("truncated_pixels.dcm", UnreadableFileError, "truncated"),
        ("no_pixels.dcm", UnreadableFileError, "no pixel data"),
        ("huge_claim.dcm", UnreadableFileError, "claims 2147483632 bytes"),
        ("unsupported.dcm", UnsupportedFormatError, "cannot decode transfer syntax"),
    ],
)
def test_each_bad_file_gives_a_clear_error(bad_files, name, error, words):
    with pytest.raises(error) as info:
        read_image(bad_files / name)
    message = str(info.value)
    assert name in message and words in message
    assert "\n" not in message


def test_mixed_folder_reads_good_series_and_lists_bad_files(bad_files, pydicom_file):
    study = read_study(bad_files)
    bad = {b.path.rsplit("/", 1)[-1] for b in study.bad_files}
    assert {"README.txt", "empty.dcm", "half_header.dcm", "huge_claim.dcm"} <= bad
    loaded, failed = [], []
    for entry in study:
        try:
            loaded.append(entry.load())
        except (UnreadableFileError, UnsupportedFormatError) as err:
            failed.append(err.where)
    good = read_image(pydicom_file("CT_small.dcm"))
    assert any(np.array_equal(img.array, good.array) for img in loaded)
    assert failed  # the no-pixel, truncated and unsupported files fail only when loaded


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(EmptyInputError, match="empty"):
        read_study(tmp_path)
    with pytest.raises(UnreadableFileError, match="does not exist"):
        read_image(tmp_path / "nope.dcm")


def test_folder_with_only_bad_files_names_them(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(EmptyInputError) as info:
        read_study(tmp_path)
    assert "a.txt" in str(info.value) and "b.bin" in str(info.value)


def test_corrupt_nifti_and_png(tmp_path):
    (tmp_path / "x.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(UnreadableFileError, match=r"x\.nii\.gz"):
        read_image(tmp_path / "x.nii.gz")
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UnreadableFileError, match=r"x\.png"):
        read_image(tmp_path / "x.png")
