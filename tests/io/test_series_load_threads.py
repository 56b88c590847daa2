"""Loading a series with the thread pool gives the same pixels and geometry as one file at a
time, for native and compressed (JPEG 2000) transfer syntaxes."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, generate_uid

import medsight.io.dicom.series as series_mod
from medsight.io.study import read_study


def _series(folder, source, n=7, syntax=None):
    base = pydicom.dcmread(source)
    series_uid = generate_uid()
    folder.mkdir()
    order = [3, 0, 6, 1, 5, 2, 4][:n]  # files written out of slice order
    for k in order:
        ds = base.copy()
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        arr = ds.pixel_array.copy()
        arr[0, : k + 1] = 100 + k  # each slice tells which it is
        ds.PixelData = arr.tobytes()
        if syntax is not None:
            ds.compress(syntax, arr)
        ds.save_as(folder / f"f{k}.dcm", enforce_file_format=True)
    return folder


@pytest.mark.parametrize("syntax", [None, JPEG2000Lossless])
def test_threaded_load_equals_one_file_at_a_time(tmp_path, pydicom_file, monkeypatch, syntax):
    if syntax is not None:
        pytest.importorskip("openjpeg")
    folder = _series(tmp_path / "s", pydicom_file("CT_small.dcm"), syntax=syntax)
    entry = read_study(folder).series[0].dicom
    monkeypatch.setattr(series_mod, "LOAD_THREADS", 4)
    threaded = entry.load()
    monkeypatch.setattr(series_mod, "LOAD_THREADS", 1)
    single = entry.load()
    a = np.asarray(threaded.array)
    assert a.shape == (128, 128, 7)
    assert np.array_equal(a, np.asarray(single.array)) and a.dtype == single.array.dtype
    assert np.array_equal(threaded.affine, single.affine)
    assert threaded.affine[2, 2] == pytest.approx(2.5)
    # slices in position order, whatever the file order: slice k has k+1 pixels marked 100+k
    firsts = [float(a[0, 0, k]) for k in range(7)]
    assert all(np.all(a[: k + 1, 0, k] == firsts[k]) for k in range(7))
    assert np.all(np.diff(firsts) > 0)
    assert threaded.source.sop_instance_uids == single.source.sop_instance_uids


def _long_j2k_series(folder, source, n):
    """``n`` JPEG 2000 slices of ``source``, each marked with its index."""
    base = pydicom.dcmread(source)
    series_uid = generate_uid()
    folder.mkdir()
    for k in range(n):
        ds = base.copy()
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        arr = ds.pixel_array.copy()
        arr[0, 0] = 100 + k
        ds.compress(JPEG2000Lossless, arr)
        ds.save_as(folder / f"f{k:02d}.dcm", enforce_file_format=True)
    return folder


def test_worker_processes_decode_a_long_compressed_series_the_same(
    tmp_path, pydicom_file, monkeypatch
):
    pytest.importorskip("openjpeg")
    n = series_mod.PROCESS_MIN_FILES + 2
    folder = _long_j2k_series(tmp_path / "s", pydicom_file("CT_small.dcm"), n)
    entry = read_study(folder).series[0].dicom
    calls = []
    real = series_mod._decode_pool
    monkeypatch.setattr(series_mod, "_decode_pool", lambda k: calls.append(k) or real(k))
    monkeypatch.setattr(series_mod, "LOAD_THREADS", 2)
    monkeypatch.setenv("MEDSIGHT_DECODE_PROCESSES", "2")
    pooled = entry.load()
    assert calls == [2]  # the long compressed series went to the worker processes
    monkeypatch.setenv("MEDSIGHT_DECODE_PROCESSES", "0")
    here = entry.load()
    assert calls == [2]  # 0: decoded in this process
    a = np.asarray(pooled.array)
    assert np.array_equal(a, np.asarray(here.array)) and a.dtype == here.array.dtype
    assert [float(a[0, 0, k]) for k in range(n)] == sorted(float(a[0, 0, k]) for k in range(n))
    # a file that breaks after the scan: the worker's error names it, as in one process
    victim = sorted(folder.glob("*.dcm"))[5]
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) - 200] + b"\0" * 200)
    errors = []
    for setting in ("2", "0"):
        monkeypatch.setenv("MEDSIGHT_DECODE_PROCESSES", setting)
        with pytest.raises(Exception) as info:
            entry.load()
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1] and victim.name in errors[0][1]


def test_a_bad_decode_processes_setting_is_refused(monkeypatch):
    from medsight.core.errors import InvalidInputError

    monkeypatch.setenv("MEDSIGHT_DECODE_PROCESSES", "many")
    with pytest.raises(InvalidInputError, match="MEDSIGHT_DECODE_PROCESSES"):
        series_mod._decode_processes()
