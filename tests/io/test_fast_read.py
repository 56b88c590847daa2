"""The fast paths of DICOM series reading (issue 16) give what the plain paths give.

* The value-check memo (``headers._check_values``): a file with the same bad value as an
  earlier one gets the same problem lines, a file whose value differs is checked anew, and no
  warning reaches stderr later for a value the memo skipped.
* The length check continued from where pydicom's parse stopped refuses the same files with
  the same message as a walk of the whole file, and records where Pixel Data lies.
* Native pixels read straight from the file (``pixels.NativeFrames``) equal pydicom's
  ``pixel_array`` (signed, 8-bit, big endian, implicit VR, unused high bits, multi-frame), and
  a series loads the same through them as through pydicom (rescale, MONOCHROME1 included).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid

from medsight.core.errors import UnreadableFileError
from medsight.io.dicom import headers
from medsight.io.dicom.headers import header_problems, pixel_data_location, read_header
from medsight.io.dicom.pixels import native_frames
from medsight.io.study import read_study


@pytest.fixture
def fresh_memo(monkeypatch):
    """An empty value memo for this test (the module-level one is shared by the process)."""
    monkeypatch.setattr(headers, "_VALUE_MEMO", {})
    return headers._VALUE_MEMO


def _write(ds: pydicom.Dataset, path: Path, syntax=ExplicitVRLittleEndian) -> Path:
    ds = ds.copy()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def _bad_is(base: pydicom.Dataset, path: Path, value: bytes) -> Path:
    """A copy of ``base`` whose Series Number (IS) holds the 2 raw bytes ``value``."""
    ds = base.copy()
    ds.SeriesNumber = "99"
    _write(ds, path)
    needle = b"\x20\x00\x11\x00IS\x02\x0099"  # explicit VR little endian, length 2
    data = path.read_bytes()
    assert data.count(needle) == 1 and len(value) == 2
    path.write_bytes(data.replace(needle, needle[:-2] + value))
    return path


# --- the value memo ---------------------------------------------------------------------
def test_same_bad_value_in_a_second_file_gives_the_same_lines(tmp_path, pydicom_file, fresh_memo):
    base = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    first = _bad_is(base, tmp_path / "a.dcm", b"1A")
    second = _bad_is(base, tmp_path / "b.dcm", b"1A")
    lines_first = header_problems(read_header(first))
    assert any("Series Number (0020,0011)" in line and "1A" in line for line in lines_first)
    remembered = len(fresh_memo)
    assert remembered > 0
    lines_second = header_problems(read_header(second))
    assert lines_second == lines_first
    # the same file again, twice (a private element is keyed with its creator as it is when
    # checked: converted in the first file, still raw once the creator itself is known)
    header_problems(read_header(second))
    size = len(fresh_memo)
    assert header_problems(read_header(second)) == lines_first
    assert len(fresh_memo) == size
    fresh_memo.clear()  # checked from scratch, the lines are the same
    assert header_problems(read_header(second)) == lines_first


def test_a_different_value_is_checked_anew(tmp_path, pydicom_file, fresh_memo):
    base = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    bad = header_problems(read_header(_bad_is(base, tmp_path / "a.dcm", b"1A")))
    other = header_problems(read_header(_bad_is(base, tmp_path / "b.dcm", b"2B")))
    good = header_problems(read_header(_bad_is(base, tmp_path / "c.dcm", b"07")))
    assert [line for line in bad if "0020,0011" in line] != []
    assert next(line for line in other if "0020,0011" in line).endswith("'2B'")
    assert [line for line in good if "0020,0011" in line] == []


def test_a_value_the_memo_skipped_converts_later_without_warning(
    tmp_path, pydicom_file, fresh_memo
):
    base = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    read_header(_bad_is(base, tmp_path / "a.dcm", b"1A"))
    ds = read_header(_bad_is(base, tmp_path / "b.dcm", b"1A"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = {elem.keyword: elem.value for elem in ds}  # every element converted now
    assert caught == []
    assert values["SeriesNumber"] == "1A" and values["Modality"] == "CT"
    assert float(values["SliceThickness"]) == float(base.SliceThickness)


def test_memo_stays_bounded(tmp_path, pydicom_file, fresh_memo, monkeypatch):
    monkeypatch.setattr(headers, "_VALUE_MEMO_MAX", 50)
    base = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    for k in range(3):
        read_header(_bad_is(base, tmp_path / f"{k}.dcm", f"{k:02d}".encode()))
    assert 0 < len(fresh_memo) <= 50


# --- the length check -------------------------------------------------------------------
def test_truncated_pixel_data_is_refused_as_before(tmp_path, pydicom_file):
    data = pydicom_file("CT_small.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-1000])
    with pytest.raises(UnreadableFileError) as err:
        read_header(cut)
    location = pixel_data_location(read_header(pydicom_file("CT_small.dcm")))
    assert location is not None
    assert err.value.problem == (
        f"element (7FE0,0010) claims {location.length} bytes at offset {location.offset} "
        f"but the file has only {len(data) - 1000} (truncated or corrupt)"
    )
    (tmp_path / "whole.dcm").write_bytes(data)
    study = read_study(tmp_path)  # a series scan lists it with that reason, loads the rest
    assert [b.problem for b in study.bad_files] == [err.value.problem]
    assert len(study.series) == 1


def test_wrong_group_length_walks_the_whole_file(tmp_path, pydicom_file):
    """A group length that does not match where the dataset starts: the old, full walk."""
    data = bytearray(pydicom_file("CT_small.dcm").read_bytes())
    assert data[132:136] == b"\x02\x00\x00\x00"  # (0002,0000) first
    length = int.from_bytes(data[140:144], "little")
    data[140:144] = (length + 2).to_bytes(4, "little")
    odd = tmp_path / "gl.dcm"
    odd.write_bytes(bytes(data))
    try:
        ds = read_header(odd)
    except UnreadableFileError as err:
        assert "corrupt" in err.problem
    else:
        assert pixel_data_location(ds) is None  # not trusted for a direct read


def test_location_is_where_pydicom_reads_pixel_data(pydicom_file):
    for name in ("CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"):
        path = pydicom_file(name)
        location = pixel_data_location(read_header(path))
        full = pydicom.dcmread(path)
        raw = full.get_item(0x7FE00010, keep_deferred=True)
        assert (location.offset, location.length) == (raw.value_tell, raw.length), name


def test_in_memory_parse_equals_a_parse_of_the_file(tmp_path, pydicom_file):
    path = pydicom_file("CT_small.dcm")
    mine = read_header(path)
    ref = pydicom.dcmread(path, stop_before_pixels=True, defer_size=headers._DEFER_BYTES)
    assert (mine.filename, mine.buffer, mine.fileobj_type) == (ref.filename, None, open)
    assert mine.timestamp == ref.timestamp and mine.preamble == ref.preamble
    assert mine.file_meta == ref.file_meta and mine == ref
    # a header longer than the bytes parsed in memory: parsed from the file, the same way
    big = pydicom.dcmread(path)
    big.add_new(0x0040A160, "UT", "x" * (headers._HEAD_BYTES + 10))  # Text Value
    long_path = _write(big, tmp_path / "long.dcm")
    with open(long_path, "rb") as fp:
        assert headers._parse_in_memory(fp, long_path, 0.0) is None
    long_header = read_header(long_path)
    assert long_header.TextValue == big.TextValue
    assert pixel_data_location(long_header) is not None
    assert np.array_equal(_direct(long_path), _pydicom_frames(long_path))


# --- native pixels ------------------------------------------------------------------------
def _direct(path: Path) -> np.ndarray:
    nf = native_frames(read_header(path), path)
    assert nf is not None, path
    out = np.empty((nf.frames, nf.rows, nf.columns), dtype=nf.dtype)
    for f in range(nf.frames):
        assert nf.read_into(out[f], f)
    return out


def _pydicom_frames(path: Path) -> np.ndarray:
    arr = pydicom.dcmread(path).pixel_array
    return arr if arr.ndim == 3 else arr[np.newaxis]


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"],
)
def test_direct_read_equals_pixel_array(pydicom_file, name):
    path = pydicom_file(name)
    mine, ref = _direct(path), _pydicom_frames(path)
    assert mine.dtype == ref.dtype  # byte order included (big endian stays big endian)
    assert np.array_equal(mine, ref)


def _variant(tmp_path: Path, name: str, arr: np.ndarray, syntax=ExplicitVRLittleEndian, **attrs):
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.Modality = "OT"
    ds.PhotometricInterpretation = attrs.pop("photometric", "MONOCHROME2")
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = arr.shape[-2:]
    if arr.ndim == 3:
        ds.NumberOfFrames = arr.shape[0]
    for key, value in attrs.items():
        setattr(ds, key, value)
    little = syntax != ExplicitVRBigEndian
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<" if little else ">")).tobytes()
    return _write(ds, tmp_path / name, syntax)


def test_direct_read_8bit_signed_unused_bits_big_endian_multiframe(tmp_path):
    rng = np.random.default_rng(0)
    cases = {
        "u8.dcm": (rng.integers(0, 256, (5, 7)).astype(np.uint8), {}, ExplicitVRLittleEndian),
        "s16_12bit_garbage.dcm": (  # high bits set arbitrarily: pydicom sign-extends bit 11
            rng.integers(-32768, 32767, (6, 4)).astype(np.int16),
            {"BitsStored": 12, "HighBit": 11, "PixelRepresentation": 1},
            ExplicitVRLittleEndian,
        ),
        "u16_be.dcm": (
            rng.integers(0, 4096, (3, 6, 4)).astype(np.uint16),
            {"BitsStored": 12, "HighBit": 11},
            ExplicitVRBigEndian,
        ),
        "s32.dcm": (rng.integers(-(2**31), 2**31 - 1, (4, 4)).astype(np.int32), {}, None),
    }
    for name, (arr, attrs, syntax) in cases.items():
        bits = arr.dtype.itemsize * 8
        attrs = {
            "BitsAllocated": bits,
            "BitsStored": bits,
            "HighBit": bits - 1,
            "PixelRepresentation": int(arr.dtype.kind == "i"),
            **attrs,
        }
        path = _variant(tmp_path, name, arr, syntax or ExplicitVRLittleEndian, **attrs)
        mine, ref = _direct(path), _pydicom_frames(path)
        assert mine.dtype == ref.dtype and np.array_equal(mine, ref), name


def test_odd_cases_are_left_to_pydicom(tmp_path, pydicom_file):
    assert native_frames(read_header(pydicom_file("JPEG2000.dcm")), "x") is None  # compressed
    assert native_frames(read_header(pydicom_file("SC_rgb_small_odd.dcm")), "x") is None  # RGB
    arr = np.zeros((4, 4), dtype=np.uint16)
    attrs = {"BitsAllocated": 16, "BitsStored": 16, "HighBit": 15, "PixelRepresentation": 0}
    short = _variant(tmp_path, "short.dcm", arr, **attrs)
    ds = pydicom.dcmread(short)
    ds.PixelData = ds.PixelData[:-4]  # fewer bytes than the frame, but not a truncated file
    ds.save_as(short)
    assert native_frames(read_header(short), short) is None
    with pytest.raises(UnreadableFileError, match="number of bytes of pixel data is less"):
        read_study(short).series[0].load()


def test_changed_file_is_read_the_ordinary_way(tmp_path, pydicom_file):
    path = tmp_path / "ct.dcm"
    path.write_bytes(pydicom_file("CT_small.dcm").read_bytes())
    nf = native_frames(read_header(path), path)
    out = np.empty((nf.rows, nf.columns), dtype=nf.dtype)
    assert nf.read_into(out, frame=1) is False  # no such frame
    assert nf.read_into(out) is True
    os.utime(path, ns=(nf.mtime_ns + 10**9, nf.mtime_ns + 10**9))
    assert nf.read_into(out) is False
    path.write_bytes(path.read_bytes()[:-10])
    assert nf.read_into(out) is False


# --- a series through both paths ------------------------------------------------------------
def _series(folder: Path, source: Path, n: int, **changes) -> Path:
    base = pydicom.dcmread(source)
    for key, value in changes.items():
        setattr(base, key, value)
    series_uid = generate_uid()
    folder.mkdir()
    for k in range(n):
        ds = base.copy()
        ds.ImagePositionPatient = [0.0, 0.0, 3.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = k + 1
        ds.SeriesInstanceUID = series_uid
        arr = ds.pixel_array.copy()
        arr[0, : k + 1] = 7 * k  # each slice tells which it is
        ds.PixelData = arr.tobytes()
        _write(ds, folder / f"{(k * 5) % n}.dcm", base.file_meta.TransferSyntaxUID)
    return folder


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("CT_small.dcm", {"RescaleSlope": 0.5, "RescaleIntercept": -1024}),  # float rescale
        ("CT_small.dcm", {"PhotometricInterpretation": "MONOCHROME1"}),
        ("MR_small_bigendian.dcm", {}),
        ("MR_small_implicit.dcm", {}),
    ],
)
def test_series_loads_the_same_with_and_without_direct_reads(tmp_path, pydicom_file, name, changes):
    folder = _series(tmp_path / "s", pydicom_file(name), 6, **changes)
    entry = read_study(folder).series[0].dicom
    assert all(s.native is not None for s in entry.slices)
    plain = dataclasses.replace(
        entry, slices=tuple(dataclasses.replace(s, native=None) for s in entry.slices)
    )
    fast, slow = entry.load(), plain.load()
    a, b = np.asarray(fast.array), np.asarray(slow.array)
    assert a.dtype == b.dtype and a.shape == b.shape == (*b.shape[:2], 6)
    assert np.array_equal(a, b)
    assert fast.meta == slow.meta
    assert np.array_equal(fast.affine, slow.affine)


def test_many_direct_reads_in_threads_equal_one_at_a_time(tmp_path, monkeypatch):
    """Enough files (130) for the direct reads to be shared among threads."""
    import medsight.io.dicom.series as series_mod

    folder = tmp_path / "many"
    folder.mkdir()
    series_uid = generate_uid()
    for k in range(130):
        arr = np.full((4, 6), k, dtype=np.int16)
        attrs = {"BitsAllocated": 16, "BitsStored": 16, "HighBit": 15, "PixelRepresentation": 1}
        path = _variant(folder, f"{k:03d}.dcm", arr, **attrs)
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.Modality = "MR"
        ds.SeriesInstanceUID = series_uid
        ds.ImagePositionPatient = [0.0, 0.0, float(129 - k)]  # file order reversed
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.save_as(path)
    entry = read_study(folder).series[0].dicom
    assert all(s.native is not None for s in entry.slices)
    monkeypatch.setattr(series_mod, "LOAD_THREADS", 4)
    threaded = np.asarray(entry.load().array)
    monkeypatch.setattr(series_mod, "LOAD_THREADS", 1)
    single = np.asarray(entry.load().array)
    assert threaded.shape == (6, 4, 130) and np.array_equal(threaded, single)
    assert threaded[0, 0].tolist() == list(range(129, -1, -1))  # slice order by position
