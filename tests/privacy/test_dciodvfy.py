"""dciodvfy (Debian package dicom3tools) finds no new error in de-identified files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from medsight.privacy.batch import deidentify_folder, iter_input_files
from medsight.privacy.profile import DeidConfig

pytestmark = pytest.mark.integration

# UIDs change on purpose; a remapped invalid UID ("0" in reportsi.dcm) must compare equal too
_UID = re.compile(r"\b\d+(?:\.\d+){2,}\b|(?<=UID )\d+\b")


def _errors(binary: str, path: Path) -> set[str]:
    run = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    return {_UID.sub("<uid>", line.strip()) for line in lines if line.startswith("Error")}


def _new_errors(binary: str, report) -> dict[str, set[str]]:
    new = {}
    for outcome in report.written:
        before = _errors(binary, report.in_dir / outcome.source)
        after = _errors(binary, report.out_dir / outcome.output)
        if after - before:
            new[str(outcome.source)] = after - before
    return new


@pytest.mark.parametrize(
    "options",
    [[], ["retain-modified-dates", "retain-patient-characteristics", "clean-descriptors"]],
)
def test_no_new_errors_on_pydicom_files(pydicom_folder, key, tmp_path, options, debian_tool):
    binary = debian_tool("dciodvfy")
    config = DeidConfig(options=options)
    report = deidentify_folder(pydicom_folder, tmp_path / "out", key, config, workers=2)
    assert len(report.written) == len(list(iter_input_files(pydicom_folder)))
    assert _new_errors(binary, report) == {}


def test_no_new_errors_on_the_brain_study(brain_study, key, tmp_path, debian_tool):
    binary = debian_tool("dciodvfy")
    src = tmp_path / "in"
    for series in sorted(p for p in brain_study.iterdir() if p.is_dir()):
        first = sorted(series.iterdir())[0]  # one file per series keeps this fast
        (src / series.name).mkdir(parents=True)
        (src / series.name / first.name).write_bytes(first.read_bytes())
    report = deidentify_folder(src, tmp_path / "out", key, DeidConfig(), workers=2)
    assert len(report.written) == 5
    assert _new_errors(binary, report) == {}
