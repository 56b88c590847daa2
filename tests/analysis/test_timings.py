"""``analyze`` times each stage (read, each model, explain, outputs): present, positive, adding
up to the total; ``medsight analyze --timings`` prints them and ``--backend`` picks the
runtime (a package without that export is skipped with the reason)."""

from __future__ import annotations

import json

import pytest

from medsight.analysis.pipeline import analyze
from medsight.analysis.timings import StageTimes, recording, stage
from medsight.cli.app import main


def test_nested_stages_are_exclusive_and_add_up():
    import time

    with recording() as times:
        with stage("outer"):
            time.sleep(0.02)
            with stage("inner"):
                time.sleep(0.03)
        with stage("inner"):  # a second entry adds to the same stage
            time.sleep(0.01)
    assert times.seconds["outer"] == pytest.approx(0.02, abs=0.015)
    assert times.seconds["inner"] == pytest.approx(0.04, abs=0.015)
    d = times.as_dict()
    assert 0 <= d["unmarked_s"] < 0.02 and d["total_s"] >= 0.06
    with stage("nothing records this"):  # no recording: a no-op
        pass
    assert isinstance(StageTimes().as_dict()["stages"], dict)


def test_analyze_reports_time_per_stage_cold_and_warm(tmp_path, pydicom_file, tiny_classifier):
    pkg = tiny_classifier()
    totals = []
    for run in ("cold", "warm"):  # warm: the same loaded package again
        res = analyze(pydicom_file("CT_small.dcm"), tmp_path / run, [pkg], dicom_outputs=False)
        t = res.timings
        stages = t["stages"]
        assert "read: scan" in stages and any(k.startswith("read: load") for k in stages)
        assert f"model {pkg.id}" in stages and f"explain {pkg.id}" in stages
        assert {"output: overlays", "output: FHIR", "output: report JSON / HTML"} <= set(stages)
        assert all(v > 0 for v in stages.values()), stages
        marked = sum(stages.values())
        assert marked <= t["total_s"] + 1e-6 and marked >= 0.7 * t["total_s"], t
        assert json.loads((tmp_path / run / "timings.json").read_text()) == t
        totals.append(t["total_s"])
    assert all(v > 0 for v in totals)


def test_cli_timings_line_and_backend_choice(tmp_path, pydicom_file, capsys, tiny_classifier):
    pytest.importorskip("onnxruntime")
    pkg = tiny_classifier()
    ct = str(pydicom_file("CT_small.dcm"))
    args = ["analyze", ct, "--model", str(pkg.path), "--no-dicom"]
    code = main([*args, "--out", str(tmp_path / "a"), "--backend", "onnx"])
    assert code == 2 and "has no onnx export" in capsys.readouterr().err  # never a fallback
    assert main(["export", str(pkg.path), "--format", "onnx"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    out = tmp_path / "onnx"  # (torch, the default, is what the test above runs)
    code = main([*args, "--out", str(out), "--backend", "onnx", "--timings", "--no-explain"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Timings (s): read: scan" in printed and f"model {pkg.id}" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["models"][0]["status"] == "ran"
    assert main([*args, "--out", str(tmp_path / "x"), "--backend", "tflite"]) == 2
