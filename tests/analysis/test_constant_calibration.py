"""A classifier whose calibration gives every image one probability reports no finding.

Such a map (vector scaling with every scale 0, flat isotonic knots) comes out of a fit where
the held-out NLL preferred the class prior; its "finding" would be the same for every patient.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image as PILImage

from medsight.analysis.pipeline import analyze
from medsight.analysis.runners import run_package
from medsight.core import Case, Image
from medsight.data import Dataset
from medsight.evaluation.classification_eval import evaluate_classifier
from medsight.models.calibration import constant_outputs
from medsight.models.package import ModelPackage, render_model_card
from medsight.models.registry import build_network
from medsight.models.scope import package_problems
from medsight.models.spec import (
    ArchitectureSpec,
    CalibrationSpec,
    InputSpec,
    LabelSpec,
    ModelSpec,
    PreprocessingSpec,
    Task,
)

_FLAT = {"method": "vector", "params": {"scale": [0.0], "bias": [0.4]}}


def _calibrated(pkg: ModelPackage, calibration: dict) -> ModelPackage:
    """The package with ``calibration`` written into its model.json."""
    path = pkg.path / "model.json"
    data = json.loads(path.read_text())
    data["calibration"] = calibration
    path.write_text(json.dumps(data, indent=2))
    return ModelPackage.load(pkg.path)


def _multi(tmp_path, task: Task, n: int, calibration: dict) -> ModelPackage:
    """A random-weight 2D package of ``task`` with ``n`` labels and the given calibration."""
    arch = ArchitectureSpec(name="smallcnn", args=dict(spatial_dims=2, in_channels=1,
                            out_channels=n, channels=[4, 8]))  # fmt: skip
    spec = ModelSpec(name=f"m-{task.value}", version="1", task=task, architecture=arch,
                     input=InputSpec(spatial_ndim=2), preprocessing=PreprocessingSpec(),
                     labels=[LabelSpec(index=i, name=f"c{i}") for i in range(n)],
                     calibration=CalibrationSpec(**calibration))  # fmt: skip
    torch.manual_seed(0)
    return ModelPackage.save(tmp_path / task.value, spec, build_network(arch).state_dict())


def _images(n: int = 4) -> list[Image]:
    rng = np.random.default_rng(0)
    return [Image(rng.normal(size=(16, 16)).astype(np.float32)) for _ in range(n)]


def test_analyze_withholds_a_package_whose_calibration_is_constant(tmp_path, tiny_classifier):
    arr = (np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)
    PILImage.fromarray(arr).save(tmp_path / "x.png")
    normal = tiny_classifier()
    ran = analyze(tmp_path / "x.png", tmp_path / "ok", [normal])
    assert ran.report.models[0].status == "ran" and ran.report.findings

    flat = _calibrated(tiny_classifier("tiny-flat"), _FLAT)
    result = analyze(tmp_path / "x.png", tmp_path / "out", [flat])
    run = result.report.models[0]
    assert run.status == "withheld"
    assert "maps every image to p=0.599 for tumour, 0.401 for normal" in run.reason
    assert "cannot rank cases" in run.reason and "retrain" in run.reason
    assert result.report.findings == []
    assert "Withheld" in result.report.impression
    bundle = json.loads((tmp_path / "out" / "fhir_bundle.json").read_text())
    assert "Observation" not in [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert "cannot rank cases" in (tmp_path / "out" / "report.html").read_text()


def test_the_gate_is_shared_and_names_flat_isotonic_maps_too(tiny_classifier, monkeypatch):
    import medsight.analysis.classification as classification

    image = Image(np.zeros((16, 16), np.float32))
    iso = {"method": "isotonic", "params": {"x": [[0.0, 1.0]], "y": [[0.3, 0.3]]}}
    flat = {}
    for name, calibration in (("vector", _FLAT), ("isotonic", iso)):
        flat[name] = _calibrated(tiny_classifier(name), calibration)
        # the findings builder itself withholds too (a caller that skips run_package)
        own = classification.analyze_classification(flat[name], image)
        assert own.withheld and own.findings == [] and own.probabilities == {}
    builder = classification.analyze_classification

    def no_network(*args, **kwargs):
        raise AssertionError("the network ran for a package that cannot rank cases")

    monkeypatch.setattr(classification, "analyze_classification", no_network)
    for pkg in flat.values():
        out = run_package(pkg, image)  # withheld before the network runs
        assert out.withheld and "cannot rank cases" in out.withheld[0]
        assert out.findings == [] and out.heatmap is None and out.probabilities == {}
    monkeypatch.setattr(classification, "analyze_classification", builder)
    working = {"method": "vector", "params": {"scale": [0.7], "bias": [0.4]}}
    kept = run_package(_calibrated(tiny_classifier("working"), working), image)
    assert kept.withheld == () and kept.findings


def test_multiclass_with_some_scales_zero_still_ranks(tmp_path):
    partial = {"method": "vector", "params": {"scale": [0.0, 1.0, 0.0], "bias": [0.0] * 3}}
    pkg = _multi(tmp_path, Task.MULTICLASS, 3, partial)
    assert (
        package_problems(pkg.spec) == []
        and constant_outputs(pkg.spec.calibration, "multiclass", 3) == {}
    )
    outs = [run_package(pkg, im, explain=False) for im in _images()]
    assert all(not o.withheld and o.findings for o in outs)
    p0 = {round(o.probabilities["c0"], 9) for o in outs}
    assert len(p0) > 1, "a class with scale 0 still moves with the softmax of the others"
    everything = {"method": "vector", "params": {"scale": [0.0] * 3, "bias": [0.1, 0.2, 0.3]}}
    flat = _multi(tmp_path / "flat", Task.MULTICLASS, 3, everything)
    assert run_package(flat, _images(1)[0]).withheld


def test_multilabel_withholds_only_the_labels_whose_map_is_constant(tmp_path):
    partial = {"method": "vector", "params": {"scale": [0.0, 1.0, 1.0], "bias": [0.5, 0, 0]}}
    pkg = _multi(tmp_path, Task.MULTILABEL, 3, partial)
    assert package_problems(pkg.spec) == []
    out = run_package(pkg, _images(1)[0], explain=False)
    assert not out.withheld
    assert sorted(f.note for f in out.findings) == ["c1", "c2"] and "c0" not in out.probabilities
    assert any("finding for c0 is withheld" in w for w in out.plausibility.warnings)
    card = render_model_card(pkg.spec)
    assert "Withheld on every image for c0" in card
    every = {"method": "vector", "params": {"scale": [0.0] * 3, "bias": [0.5, 0, 0]}}
    assert run_package(_multi(tmp_path / "all", Task.MULTILABEL, 3, every), _images(1)[0]).withheld


def test_evaluate_report_warns_about_a_constant_calibration(tmp_path, tiny_classifier):
    rng = np.random.default_rng(0)
    cases = [
        Case(f"c{i}", patient_id=f"p{i}", label=i % 2,
             images={"image": Image(rng.normal(size=(16, 16)).astype(np.float32))})
        for i in range(20)
    ]  # fmt: skip
    data = Dataset("toy", cases, task="binary")
    ok = evaluate_classifier(tiny_classifier(), data, tmp_path / "ok", n_resamples=10)
    assert ok["warnings"] == []
    assert "cannot rank cases" not in (tmp_path / "ok" / "report.html").read_text()
    flat = _calibrated(tiny_classifier("tiny-flat"), _FLAT)
    report = evaluate_classifier(flat, data, tmp_path / "out", n_resamples=10)
    assert len(report["warnings"]) == 1 and "cannot rank cases" in report["warnings"][0]
    assert "analyze withholds its findings" in report["warnings"][0]
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["warnings"] == report["warnings"]
    assert "WARNING: the model&#39;s calibration" in (tmp_path / "out" / "report.html").read_text()
    assert "Withheld on every image" in render_model_card(flat.spec)


def _risk_spec(survival: bool) -> ModelSpec:
    return ModelSpec(name="risk", version="1", task=Task.RISK,
                     architecture=ArchitectureSpec(name="late"), input=InputSpec(spatial_ndim=2),
                     preprocessing=PreprocessingSpec(),
                     labels=[LabelSpec(index=0, name="survived"), LabelSpec(index=1, name="died")],
                     calibration=CalibrationSpec(**_FLAT),
                     extra={"risk": {"survival": survival, "variables": []}})  # fmt: skip


def test_a_binary_risk_model_with_a_constant_map_is_withheld_for_every_patient():
    problems = package_problems(_risk_spec(survival=False))
    assert len(problems) == 1 and "maps every patient to p=0.599 for died" in problems[0]
    assert "Withheld on every image" in render_model_card(_risk_spec(survival=False))
    assert "Withheld on every image" not in render_model_card(_risk_spec(survival=True))
    # a time-to-event model reports its log hazard ratio, not a calibrated probability
    assert package_problems(_risk_spec(survival=True)) == []
    working = _risk_spec(survival=False).model_copy(
        update={
            "calibration": CalibrationSpec(method="vector", params={"scale": [1.0], "bias": [0.0]})
        }
    )
    assert package_problems(working) == []
