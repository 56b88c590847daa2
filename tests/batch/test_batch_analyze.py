"""medsight batch analyze: one report folder per study, each naming only its own patient."""

import json

import pytest

from medsight.batch import discover_tasks, run_batch
from medsight.batch.runner import DONE

pytestmark = pytest.mark.slow  # a worker imports torch and MONAI


def test_batch_analyze_one_report_per_study(archive, tmp_path, tiny_classifier):
    package = tiny_classifier()
    out = tmp_path / "out"
    tasks = [t for t in discover_tasks(archive) if t.files[0].startswith("mixed/")]  # A, B
    options = {"models": [str(package.path)], "explain": False, "dicom_outputs": False}
    result = run_batch("analyze", tasks, out, options=options, workers=2)
    assert result.counts() == {"done": 2, "skipped": 0, "failed": 0}, result.failed
    patients = {}
    for t in tasks:
        report = json.loads((out / t.folder / "report.json").read_text())
        assert (out / t.folder / DONE).is_file()
        patients[t.folder] = report["study"].get("PatientID", "")
        assert [m["status"] for m in report["models"]] == ["ran"]
    two = next(t for t in tasks if len(t.files) == 2)
    assert patients[two.folder] == "PA"  # study A alone, though it shares a folder with B
    assert sorted(patients.values()) == ["PA", "PB"]
