"""``medsight export PKG --format onnx`` and ``medsight evaluate --backend onnx`` on a tiny
package: the ONNX backend gives the torch report's metrics; refusals are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsight.cli.app import main
from medsight.models.demo import demo_classifier

pytest.importorskip("onnxruntime")


def _toy_breastmnist(path):
    """A MedMNIST-format file (breastmnist name, binary labels) of 12 random 16x16 images."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 255, (12, 16, 16)).astype(np.uint8)
        arrays[f"{split}_labels"] = (np.arange(12) % 2)[:, None]
    np.savez(path, **arrays)
    return f"medmnist:{path}"


def test_export_then_evaluate_with_the_onnx_backend(tmp_path, capsys):
    pkg = demo_classifier(tmp_path, "tiny")
    data = _toy_breastmnist(tmp_path / "breastmnist.npz")
    # before the export, --backend onnx is refused with a hint
    code = main(["evaluate", str(pkg.path), "--data", data, "--out", str(tmp_path / "e0"),
                 "--backend", "onnx"])  # fmt: skip
    assert code == 2 and "has no onnx export" in capsys.readouterr().err
    code = main(["export", str(pkg.path), "--format", "onnx", "--quantize", "int8",
                 "--data", data, "--split", "val"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "opset 18, dynamic batch" in out and "decision agreement 1.0000" in out
    spec = json.loads((pkg.path / "model.json").read_text())
    # the default is whichever backend was measured faster here (machine-dependent on a tiny net)
    timing = spec["extra"]["backends"]["timing"]
    chosen = spec["extra"]["backends"]["default"]
    assert chosen == ("onnx" if timing["onnx_share_of_torch"] <= 0.9 else "torch")
    assert f"default backend: {chosen}: ONNX Runtime took" in out
    parity = spec["extra"]["backends"]["onnx"]["parity"]
    assert parity["max_abs_diff"] <= parity["allowed_abs_diff"] <= 1e-4 * parity["output_scale"]
    q = spec["extra"]["backends"]["onnx_int8"]  # int8 measured as an AUC drop on the val split
    assert q["measured_on"] == "evaluation set: AUC drop on 12 cases"
    assert q["drop"] == pytest.approx(q["auc_torch"] - q["auc_int8"])
    assert q["kept"] == (q["drop"] <= 0.005) == (pkg.path / "model.int8.onnx").is_file()
    reports = {}
    for backend in ("torch", "onnx"):
        folder = tmp_path / f"eval-{backend}"
        code = main(["evaluate", str(pkg.path), "--data", data, "--out", str(folder),
                     "--n-resamples", "20", "--backend", backend])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        assert f"backend: {backend}" in capsys.readouterr().out
        reports[backend] = json.loads((folder / "report.json").read_text())
    metrics = {b: {m["name"]: m["value"] for m in r["metrics"]} for b, r in reports.items()}
    assert metrics["torch"].keys() == metrics["onnx"].keys() and "auc" in metrics["onnx"]
    for name, value in metrics["torch"].items():
        assert metrics["onnx"][name] == pytest.approx(value, abs=1e-6), name


def test_export_refusals_are_one_line_errors(tmp_path, capsys):
    pkg = demo_classifier(tmp_path, "tiny")
    assert main(["export", str(pkg.path), "--format", "tflite"]) == 2
    assert "'tflite' is not supported" in capsys.readouterr().err
    assert main(["export", str(pkg.path), "--quantize", "int4"]) == 2
    assert "only int8" in capsys.readouterr().err
    data = _toy_breastmnist(tmp_path / "breastmnist.npz")
    assert main(["export", str(pkg.path), "--data", data]) == 2
    assert "pass --quantize int8" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "not a model package" in capsys.readouterr().err
    assert not (pkg.path / "model.onnx").exists()
