"""``medsight deid`` and ``medsight audit verify``: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest

from medsight.cli.app import main
from medsight.privacy.keys import PseudonymKey


@pytest.fixture
def small_input(pydicom_file, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
        shutil.copy(pydicom_file(name), src / name)
    return src


def test_deid_verify_and_audit(small_input, tmp_path, capsys):
    out, key, log = tmp_path / "out", tmp_path / "keys" / "site.key", tmp_path / "audit.jsonl"
    argv = ["deid", str(small_input), str(out), "--key-file", str(key), "--verify"]
    argv += ["-o", "retain-patient-characteristics", "--audit-log", str(log), "--workers", "1"]
    argv += ["--reid-table", str(tmp_path / "reid.csv")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "de-identified 3 of 3 files" in text and "no leak found" in text
    assert "JPEG2000.dcm: may carry burned-in text" in text and "--scrub-pixels" in text
    assert key.exists() and len(list(out.rglob("*.dcm"))) == 3
    assert (tmp_path / "reid.csv").read_text().count("\n") == 4  # header + 3 patients
    record = json.loads(log.read_text())
    assert record["key_id"] == PseudonymKey.load(key).key_id and record["leak_hits"] == 0
    assert len(record["outputs"]) == 3 and record["inputs"]["files"] == 3
    assert record["command"][:2] == ["medsight", "deid"] and "--verify" in record["command"]
    assert main(["audit", "verify", str(log)]) == 0
    assert "ok: 1 records" in capsys.readouterr().out
    log.write_text(log.read_text().replace("retain-patient-characteristics", "retain-uids"))
    assert main(["audit", "verify", str(log)]) == 1
    assert "TAMPERED" in capsys.readouterr().out


def test_deid_refuses_reid_table_in_out_with_exit_2(small_input, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["deid", str(small_input), str(out), "--key-file", str(tmp_path / "k.key")]
    assert main([*argv, "--reid-table", str(out / "reid.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "reid.csv" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert main([*argv[:3], "--key-file", str(out / "site.key")]) == 2
    assert "site.key: the key file must not be inside the output folder" in capsys.readouterr().err
    assert not out.exists()


def test_deid_skipped_file_gives_exit_1(small_input, tmp_path, capsys):
    (small_input / "notes.txt").write_text("Zebulon Quixote")
    argv = ["deid", str(small_input), str(tmp_path / "out"), "--key-file", str(tmp_path / "k")]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "skipped: " in captured.err and "notes.txt" in captured.err
    assert "de-identified 3 of 4 files" in captured.out


def test_deid_bad_key_file_and_bad_option(small_input, tmp_path, capsys):
    key = tmp_path / "k.key"
    key.write_text("{}")
    assert main(["deid", str(small_input), str(tmp_path / "o"), "--key-file", str(key)]) == 2
    assert "k.key: not a readable medsight key file" in capsys.readouterr().err
    argv = ["deid", str(small_input), str(tmp_path / "o"), "--key-file", str(tmp_path / "n")]
    assert main([*argv, "-o", "retain-everything"]) == 2
    assert main([*argv, "--safe-private", "0019,GEMS"]) == 2
    assert "safe private tag: '0019,GEMS' is not of the form" in capsys.readouterr().err
    assert main([*argv, "-o", "retain-full-dates", "-o", "retain-modified-dates"]) == 2
    assert "options: retain-full-dates and retain-modified-dates" in capsys.readouterr().err


def test_verify_only_reports_leaks_in_an_untouched_copy(small_input, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(small_input, copy)
    assert main(["deid", str(small_input), str(copy), "--verify-only"]) == 1
    out = capsys.readouterr().out
    assert "LEAK: CT_small.dcm: (0010,0010) PatientName contains 'compressedsamples'" in out
    assert main(["deid", str(small_input), str(tmp_path / "o")]) == 2  # no key to de-identify
    assert "--key-file: a key file is needed" in capsys.readouterr().err
