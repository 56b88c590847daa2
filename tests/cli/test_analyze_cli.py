"""``medsight analyze`` from the command line: report path printed, clear errors."""

from __future__ import annotations

import json

import pytest

from medsight.cli.app import main


def test_analyze_cli_writes_the_report(tmp_path, pydicom_file, capsys, tiny_classifier):
    pkg = tiny_classifier()
    out = tmp_path / "out"
    code = main(
        ["analyze", str(pydicom_file("CT_small.dcm")), "--model", str(pkg.path), "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Impression:" in printed and "report.html" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["models"][0]["status"] == "ran"


@pytest.mark.parametrize("bad", ["missing.dcm", "broken_package"])
def test_analyze_cli_bad_input_is_one_line(tmp_path, pydicom_file, capsys, bad):
    if bad == "broken_package":
        (tmp_path / bad).mkdir()
        args = ["analyze", str(pydicom_file("CT_small.dcm")), "--model", str(tmp_path / bad)]
    else:
        args = ["analyze", str(tmp_path / bad)]
    code = main([*args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:")
