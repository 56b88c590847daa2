"""``medsight info``: tables, JSON, and one-line errors with a non-zero exit code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from medsight.cli.app import main


def test_info_json_on_the_brain_study(shared_data, capsys):
    assert main(["info", str(shared_data / "dicom/brain_mr_study1"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_desc = {s["description"]: s for s in report["series"]}
    assert set(by_desc) == {"T1post", "HippoCrop", "T1pre_reg", "FLAIR_reg", "T2_reg"}
    t1 = by_desc["T1post"]
    assert t1["shape"] == [512, 512, 22] and t1["orientation"] == "LPS"
    assert t1["spacing"] == pytest.approx([0.4297, 0.4297, 6.5], abs=1e-3)
    assert t1["value_range"][0] >= 0 and t1["value_range"][1] > 100
    assert report["bad_files"] == []


def test_info_table_lists_series_and_bad_files(pydicom_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm")
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "CT" in out and "128 x 128 x 1" in out and "LPS" in out
    assert "notes.txt" in out and "not a DICOM file" in out


@pytest.mark.parametrize("content", [b"", b"garbage bytes that are not DICOM"])
def test_info_bad_single_file_is_one_line_and_exit_2(tmp_path, content):
    path = tmp_path / "scan.dcm"
    path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "medsight.cli.app", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "scan.dcm" in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_info_missing_and_empty(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["info", str(tmp_path)]) == 2
    assert "empty" in capsys.readouterr().err


def test_info_nifti_and_png(tmp_path, capsys):
    import numpy as np

    from medsight.core import Image
    from medsight.io import write_image

    write_image(Image(np.zeros((4, 5, 6), np.int16), spacing=(1, 1, 3)), tmp_path / "v.nii.gz")
    write_image(Image(np.zeros((8, 9), np.uint8)), tmp_path / "p.png")
    assert main(["info", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    shapes = sorted(tuple(s["shape"]) for s in report["series"])
    assert shapes == [(4, 5, 6), (8, 9)]
