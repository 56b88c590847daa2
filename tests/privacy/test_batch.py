"""Whole folders: the real brain study and pydicom's files, consistency, determinism, safety."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from medsight.core.errors import EmptyInputError
from medsight.privacy.batch import deidentify_folder, iter_input_files
from medsight.privacy.errors import UnsafePathError
from medsight.privacy.keys import PseudonymKey
from medsight.privacy.leaks import verify
from medsight.privacy.profile import DeidConfig

GEOMETRY = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
)


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in iter_input_files(folder)
    }


def _pairs(report):
    """(input dataset, output dataset) per written file."""
    for outcome in report.written:
        src = dcmread(report.in_dir / outcome.source, force=True)
        out = dcmread(report.out_dir / outcome.output)
        yield src, out


def test_brain_study_has_no_leak_and_keeps_pixels_and_geometry(brain_deid, brain_study):
    report, config = brain_deid
    assert len(report.written) == 120 and report.failed == []
    leaks = verify(brain_study, report.out_dir, config)
    assert leaks.files_checked == 120 and leaks.identifiers > 100
    assert leaks.ok, [str(h) for h in leaks.hits[:10]]
    for src, out in _pairs(report):
        assert out.PixelData == src.PixelData
        for attr in GEOMETRY:
            assert out[attr].value == src[attr].value
        assert str(out.PatientName) != "Chrisjen^Avasarala"
        assert out.get("PatientAge") == src.get("PatientAge")
        assert out.get("PatientSex") == src.get("PatientSex")


def test_brain_study_uids_stay_consistent(brain_deid, key):
    report, _ = brain_deid
    series_of = defaultdict(set)
    studies, frames = set(), defaultdict(set)
    sop_map = {}
    for src, out in _pairs(report):
        series_of[src.SeriesInstanceUID].add(out.SeriesInstanceUID)
        studies.add(out.StudyInstanceUID)
        frames[src.FrameOfReferenceUID].add(out.FrameOfReferenceUID)
        sop_map[src.SOPInstanceUID] = out.SOPInstanceUID
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        for item_in, item_out in zip(
            src.get("ReferencedImageSequence", []),
            out.get("ReferencedImageSequence", []),
            strict=True,
        ):
            assert item_out.ReferencedSOPInstanceUID == key.uid(item_in.ReferencedSOPInstanceUID)
    assert len(studies) == 1 and len(series_of) == 5
    assert all(len(new) == 1 for new in series_of.values())
    assert all(len(new) == 1 for new in frames.values())
    assert len(set(sop_map.values())) == 120  # no collisions
    # the UID layout names files after the new UIDs
    for outcome in report.written:
        out = dcmread(report.out_dir / outcome.output, stop_before_pixels=True)
        assert outcome.output == Path(
            out.StudyInstanceUID, out.SeriesInstanceUID, f"{out.SOPInstanceUID}.dcm"
        )


def test_same_key_gives_identical_bytes_and_input_is_untouched(brain_study, key, tmp_path):
    subset = sorted(iter_input_files(brain_study))[::12]  # 10 files across the series
    src = tmp_path / "in"
    for path in subset:
        target = src / path.relative_to(brain_study)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    before = _tree_hashes(src)
    config = DeidConfig(options=["retain-modified-dates"])
    deidentify_folder(src, tmp_path / "a", key, config, workers=2)
    deidentify_folder(src, tmp_path / "b", key, config, workers=1)
    deidentify_folder(src, tmp_path / "c", PseudonymKey(bytes(32)), config, workers=1)
    assert _tree_hashes(tmp_path / "a") == _tree_hashes(tmp_path / "b")
    assert set(_tree_hashes(tmp_path / "a").values()).isdisjoint(
        _tree_hashes(tmp_path / "c").values()
    )
    assert _tree_hashes(src) == before
    leftovers = [p for p in (tmp_path / "a").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_pydicom_files_deidentify_without_leaks(pydicom_folder, key, tmp_path):
    out = tmp_path / "out"
    report = deidentify_folder(pydicom_folder, out, key, DeidConfig(layout="mirror"), workers=2)
    assert report.failed == []
    leaks = verify(pydicom_folder, out)
    assert leaks.ok, [str(h) for h in leaks.hits[:10]]
    for src, dst in _pairs(report):
        assert dst.PatientIdentityRemoved == "YES"
        if "PixelData" in src:
            np.testing.assert_array_equal(dst.pixel_array, src.pixel_array)
        syntax = src.file_meta.get("TransferSyntaxUID") if "file_meta" in dir(src) else None
        assert dst.file_meta.TransferSyntaxUID == (syntax or "1.2.840.10008.1.2.1")
    flagged = {str(o.source) for o in report.written if o.burned_in}
    assert {"JPEG2000.dcm", "SC_rgb_jpeg_gdcm.dcm", "examples_rgb_color.dcm"} <= flagged
    assert "CT_small.dcm" not in flagged


def test_bad_file_is_reported_and_the_rest_finish(pydicom_file, key, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "ct.dcm").write_bytes(pydicom_file("CT_small.dcm").read_bytes())
    (src / "broken.dcm").write_bytes(pydicom_file("CT_small.dcm").read_bytes()[:3000])
    (src / "cut.dcm").write_bytes(pydicom_file("CT_small.dcm").read_bytes()[:20000])
    (src / "notes.txt").write_text("Zebulon Quixote")
    report = deidentify_folder(src, tmp_path / "out", key, DeidConfig(), workers=2)
    assert [o.source.name for o in report.written] == ["ct.dcm"]
    errors = {o.source.name: o.error for o in report.failed}
    assert set(errors) == {"broken.dcm", "cut.dcm"}
    assert "broken.dcm: image without Pixel Data" in errors["broken.dcm"]
    assert "cut.dcm: file is truncated inside element (7FE0,0010)" in errors["cut.dcm"]
    notes = {o.source.name: o.note for o in report.skipped}  # not an image: a note, no failure
    assert set(notes) == {"notes.txt"} and "not copied" in notes["notes.txt"]
    assert not list((tmp_path / "out").rglob("*.txt"))


def test_unsafe_paths_are_refused(pydicom_folder, key, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UnsafePathError, match="must not be inside the output folder"):
        deidentify_folder(pydicom_folder, out, key, DeidConfig(), reid_table=out / "reid.csv")
    with pytest.raises(UnsafePathError, match="overlaps the input"):
        deidentify_folder(pydicom_folder, pydicom_folder / "out", key, DeidConfig())
    assert not out.exists()
    single = pydicom_folder / "CT_small.dcm"  # one file: OUT may sit beside it, not be its folder
    with pytest.raises(UnsafePathError, match="overlaps the input"):
        deidentify_folder(single, pydicom_folder, key, DeidConfig(layout="mirror"))
    copy = tmp_path / "one" / "ct.dcm"
    copy.parent.mkdir()
    copy.write_bytes(single.read_bytes())
    report = deidentify_folder(copy, copy.parent / "out", key, DeidConfig(), workers=1)
    assert len(report.written) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptyInputError):
        deidentify_folder(empty, tmp_path / "o2", key, DeidConfig())


def test_reid_table_maps_back(brain_study, key, tmp_path):
    one = sorted(iter_input_files(brain_study))[0]
    table = tmp_path / "private" / "reid.csv"
    config = DeidConfig(options=["retain-modified-dates"])
    report = deidentify_folder(one, tmp_path / "out", key, config, reid_table=table)
    lines = table.read_text().splitlines()
    assert lines[0].startswith("original_patient_id,original_patient_name,pseudonym_id")
    row = lines[1].split(",")
    out = dcmread(report.out_dir / report.written[0].output)
    assert row[:3] == ["PGBM-002", "Chrisjen^Avasarala", out.PatientID]
    assert int(row[3]) == key.date_shift_days("PGBM-002")
    assert row[5] == out.StudyInstanceUID and row[6] == key.key_id
    assert oct(os.stat(table).st_mode & 0o777) == "0o600"


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on its deliberately odd files
def test_every_bundled_pydicom_file_is_clean_or_reported(pydicom_file, key, tmp_path):
    """All of pydicom's test files: each is written leak-free or skipped with a reason."""
    folder = pydicom_file("CT_small.dcm").parent
    report = deidentify_folder(folder, tmp_path / "out", key, DeidConfig(), workers=2)
    assert len(report.written) >= 60
    reasons = {o.source.name: o.error for o in report.failed}
    assert "truncated" in reasons["MR_truncated.dcm"]
    notes = {o.source.name: o.note for o in report.skipped}
    assert "a DICOMDIR: not copied" in notes["DICOMDIR"]
    assert all(reason and o in reason for o, reason in reasons.items())  # names the file
    leaks = verify(folder, tmp_path / "out")
    assert leaks.ok, [str(h) for h in leaks.hits[:10]]


def test_a_crashed_worker_becomes_an_error_for_its_file():
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from medsight.privacy.batch import _result

    fut: Future = Future()
    fut.set_exception(BrokenProcessPool("a child process terminated abruptly"))
    job = (Path("in/a.dcm"), Path("out"), b"k" * 32, DeidConfig(), Path("a.dcm"))
    outcome = _result(fut, job)
    assert outcome.output is None and outcome.error == "in/a.dcm: worker failed (BrokenProcessPool)"
