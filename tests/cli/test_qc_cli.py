"""``medsight qc``, ``split`` and ``fingerprint`` on real data: files written, findings, exit codes.

BUSI, PneumoniaMNIST, RetinaMNIST and AdrenalMNIST3D go through the same code in
tests/data/test_qc_real.py (``run_qc``); ``benchmarks/qc_timings.py`` runs this CLI on every set.
"""

from __future__ import annotations

import json
import re

import pytest

from medsight.cli.app import main


def _run_qc(spec: str, out, *extra: str) -> tuple[int, dict]:
    code = main(["qc", spec, "--out", str(out), "--no-progress", *extra])
    report = json.loads((out / "qc.json").read_text()) if (out / "qc.json").exists() else {}
    return code, report


def _kinds(report: dict) -> set[str]:
    return {f["kind"] for f in report["findings"]}


def test_qc_breastmnist_writes_json_html_plots(shared_data, tmp_path, capsys):
    out = tmp_path / "qc"
    code, report = _run_qc(f"medmnist:{shared_data / 'medmnist' / 'breastmnist.npz'}", out)
    assert code == 0
    assert {"exact_duplicate", "split_leakage", "conflicting_labels"} <= _kinds(report)
    page = (out / "index.html").read_text()
    images = re.findall(r"<img src='([^']+)'", page)
    assert "plots/class_balance.png" in images and "plots/histograms.png" in images
    assert all((out / src).is_file() for src in images)
    assert "breastmnist.npz:train_images[115]" in page
    assert json.loads((out / "fingerprint.json").read_text())["n_cases"] == 780
    printed = capsys.readouterr().out
    assert "split_leakage" in printed and "index.html" in printed
    assert _run_qc(f"medmnist:{shared_data / 'medmnist' / 'breastmnist.npz'}", out,
                   "--fail-on", "error")[0] == 1  # fmt: skip


def test_qc_hippocampus_guessed_from_a_bare_path(shared_data, tmp_path):
    code, report = _run_qc(str(shared_data / "hippocampus"), tmp_path)
    assert code == 0 and report["task"] == "segmentation" and report["n_cases"] == 260
    assert {"dtype_mix", "intensity_scale_mix"} <= _kinds(report)
    assert report["fingerprint"]["intensity_per_channel"]["0"]["foreground"] is True


def test_qc_covid_csv(shared_data, tmp_path):
    code, report = _run_qc(f"csv:{shared_data / 'covid_cxr' / 'metadata.csv'}", tmp_path)
    assert code == 0
    assert {"several_images_per_patient", "missing_attribute", "orphan_file",
            "exact_duplicate", "bad_annotation"} <= _kinds(report)  # fmt: skip


def test_qc_dicom_folder(shared_data, tmp_path):
    code, report = _run_qc(f"dicom:{shared_data / 'dicom'}", tmp_path)
    assert code == 0 and report["n_cases"] == 5
    assert {"missing_attribute", "spacing_outlier"} <= _kinds(report)


def test_qc_checks_a_splits_file(shared_data, tmp_path, capsys):
    csv = shared_data / "covid_cxr" / "metadata.csv"
    assert main(["split", f"csv:{csv}", "--out", str(tmp_path / "splits.json"), "--seed", "3"]) == 0
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert splits["source"] == "generated" and len(splits["folds"]) == 1
    code, report = _run_qc(f"csv:{csv}", tmp_path / "qc", "--splits", str(tmp_path / "splits.json"))
    assert code == 0 and "patient_in_several_splits" not in _kinds(report)
    assert main(["split", f"csv:{csv}", "--out", str(tmp_path / "s.json"), "--scheme", "kfold",
                 "--k", "3"]) == 0  # fmt: skip
    assert len(json.loads((tmp_path / "s.json").read_text())["folds"]) == 3
    assert main(["split", f"csv:{csv}", "--out", str(tmp_path / "x.json"), "--scheme", "nope"]) == 2


def test_fingerprint_command(shared_data, tmp_path, capsys):
    out = tmp_path / "fp.json"
    path = shared_data / "medmnist" / "retinamnist.npz"
    assert main(["fingerprint", f"medmnist:{path}", "--out", str(out), "--no-progress"]) == 0
    fp = json.loads(out.read_text())
    assert fp["n_cases"] == 1600 and len(fp["intensity_per_channel"]) == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [("zip:whatever", "unknown kind 'zip'"), ("msd:/nonexistent/folder", "no imagesTr folder")],
)
def test_bad_data_is_one_line_and_exit_2(tmp_path, capsys, spec, message):
    assert main(["qc", spec, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "qc.json").exists()


def test_out_must_be_a_folder(shared_data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    path = shared_data / "medmnist" / "breastmnist.npz"
    assert main(["qc", str(path), "--out", str(tmp_path / "file"), "--no-progress"]) == 2
    assert "is not a folder" in capsys.readouterr().err
