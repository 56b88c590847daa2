"""ONNX export: parity recorded at export, torch and ONNX Runtime predictions agree, refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from medsight.core import Image
from medsight.core.errors import InvalidInputError
from medsight.inference import onnx_backend
from medsight.inference.classify import Predictor
from medsight.inference.onnx_backend import (
    OPSET,
    export_onnx,
    export_support,
    machine_fingerprint,
    resolve_backend,
    use_backend,
)
from medsight.inference.segment import Segmenter
from medsight.models import ModelPackage
from medsight.models.demo import demo_classifier, demo_denoiser

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny classifier exported in place, with an int8 model attempted."""
    pkg = demo_classifier(tmp_path_factory.mktemp("cls"))
    result = export_onnx(pkg, quantize="int8")
    return ModelPackage.load(result.package), result


@pytest.fixture(scope="module")
def seg_exported(tmp_path_factory):
    """A 2D segmentation package trained for one step on blobs, exported to a new folder."""
    from medsight.training.plan import plan_from_dataset
    from medsight.training.segmentation import (
        SegTrainConfig,
        load_preprocessed,
        preprocess_dataset,
        train_segmentation,
    )

    from ..training.seg_synthetic import blob_dataset, tiny

    tmp = tmp_path_factory.mktemp("seg")
    ds = blob_dataset(2, n=3)
    plan = tiny(plan_from_dataset(ds))
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp / "p.npz"))
    res = train_segmentation(data, plan, SegTrainConfig(max_steps=1, device="cpu"), tmp)
    original = ModelPackage.load(res.package)
    out = export_onnx(original, tmp / "exported")
    return original, ModelPackage.load(out.package), ds


def test_export_records_opset_dynamic_batch_and_parity(exported):
    pkg, result = exported
    rec = pkg.spec.extra["backends"]["onnx"]
    assert rec == result.record["onnx"]
    assert rec["opset"] == OPSET and rec["dynamic_axes"]["input"] == {"0": "batch"}
    assert (pkg.path / rec["file"]).is_file()
    par = rec["parity"]
    assert par["tolerance"] == 1e-4 and par["output_scale"] >= 1.0
    assert 0.0 <= par["max_abs_diff"] <= par["allowed_abs_diff"] == 1e-4 * par["output_scale"]
    assert par["decision_agreement"] == 1.0
    assert par["inputs"].startswith("synthetic: 16 seeded standard-normal inputs of shape [1, 16")
    # the default is the backend measured faster at export, on this kind of machine
    rec = pkg.spec.extra["backends"]
    timing = rec["timing"]
    assert timing["on"] == machine_fingerprint() and timing["inputs"] == 16
    assert set(timing["median_s"]) == {"torch", "onnx"}
    assert rec["default"] == ("onnx" if timing["onnx_share_of_torch"] <= 0.9 else "torch")
    assert Predictor(pkg).backend == rec["default"]


def test_measured_default_holds_only_on_that_kind_of_machine(exported, tmp_path, monkeypatch):
    pkg, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(pkg.path, copy)
    raw = json.loads((copy / "model.json").read_text())
    raw["extra"]["backends"]["default"] = "onnx"
    (copy / "model.json").write_text(json.dumps(raw))
    assert resolve_backend(ModelPackage.load(copy)) == "onnx"
    other = dict(machine_fingerprint(), cpus=999)
    monkeypatch.setattr(onnx_backend, "machine_fingerprint", lambda: other)
    assert resolve_backend(ModelPackage.load(copy)) == "torch"  # measured elsewhere
    monkeypatch.undo()
    (copy / "model.onnx").unlink()
    assert resolve_backend(ModelPackage.load(copy)) == "torch"  # the file is gone


def test_onnx_predictor_matches_torch_on_another_batch_size(exported):
    pkg, _ = exported
    rng = np.random.default_rng(1)
    images = [Image(rng.normal(50, 20, (20, 24)).astype(np.float32)) for _ in range(5)]
    torch_pred = Predictor(pkg, backend="torch").predict_many(images)
    onnx = Predictor(pkg, backend="onnx")
    assert onnx.backend == "onnx"
    onnx_pred = onnx.predict_many(images)  # batch 5, exported with batch 2: dynamic axis
    for a, b in zip(torch_pred, onnx_pred, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
        assert a.label == b.label
    with use_backend("onnx"):  # what --backend sets for code that builds its own Predictor
        assert Predictor(pkg).backend == "onnx"
    with use_backend("torch"):
        assert Predictor(pkg).backend == "torch"


def test_int8_model_is_kept_only_within_the_bound(exported):
    pkg, result = exported
    q = result.record["onnx_int8"]
    assert q["bound"] == 0.005 and "reference inputs" in q["measured_on"]
    assert q["kept"] == (q["drop"] <= 0.005)
    if q["kept"]:
        p = Predictor(pkg, backend="onnx-int8").predict(Image(np.ones((16, 16), np.float32)))
        assert p.probabilities.shape == (2,)
    else:
        with pytest.raises(InvalidInputError, match="has no onnx-int8 export"):
            Predictor(pkg, backend="onnx-int8")


def test_segmenter_onnx_matches_torch_and_original_is_untouched(seg_exported):
    original, pkg, ds = seg_exported
    assert "backends" not in original.spec.extra  # --out wrote a new folder
    assert not (original.path / "model.onnx").exists()
    rec = pkg.spec.extra["backends"]["onnx"]
    assert rec["parity"]["decision_agreement"] >= 0.999
    assert rec["parity"]["max_abs_diff"] <= rec["parity"]["allowed_abs_diff"]
    image = ds[0].image()
    a = Segmenter(pkg, device="cpu", backend="torch")(image, probabilities=True)
    seg = Segmenter(pkg, device="cpu", backend="onnx")
    b = seg(image, probabilities=True)
    assert seg.backend == "onnx"
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)
    assert (a.mask.array == b.mask.array).mean() >= 0.999
    # features need the torch network's bottleneck: that call runs on torch, same mask
    c = seg(image, features=True)
    assert c.features is not None and (c.mask.array == a.mask.array).mean() >= 0.999


def test_parity_failure_is_refused_and_writes_nothing(tmp_path):
    pkg = demo_classifier(tmp_path, "strict")
    before = (pkg.path / "model.json").read_text()
    with pytest.raises(InvalidInputError, match="fails parity with torch"):
        export_onnx(pkg, tolerance=0.0, n_reference=64)
    assert not (pkg.path / "model.onnx").exists()
    assert (pkg.path / "model.json").read_text() == before


def test_unsupported_family_and_missing_or_changed_export_are_refused(tmp_path, exported):
    risk = demo_classifier(tmp_path, "risk")  # a package whose model.json says task risk
    raw = json.loads((risk.path / "model.json").read_text())
    raw["task"] = "risk"
    (risk.path / "model.json").write_text(json.dumps(raw))
    before = sorted(p.name for p in risk.path.iterdir())
    with pytest.raises(InvalidInputError, match="cannot be exported to ONNX: a risk model is not"):
        export_onnx(ModelPackage.load(risk.path))
    assert sorted(p.name for p in risk.path.iterdir()) == before  # nothing written
    assert "tabular covariates" in export_support("risk")[1]
    assert all(export_support(t)[0] for t in ("denoising", "detection", "synthesis"))
    plain = demo_classifier(tmp_path, "plain")
    with pytest.raises(InvalidInputError, match="has no onnx export"):
        Predictor(plain, backend="onnx")
    with pytest.raises(InvalidInputError, match="not one of"):
        Predictor(plain, backend="tensorrt")
    copy = tmp_path / "copy"
    shutil.copytree(exported[0].path, copy)
    with open(copy / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(InvalidInputError, match="does not match its sha256"):
        Predictor(copy, backend="onnx")
    assert json.loads((copy / "model.json").read_text())["extra"]["backends"]["onnx"]["opset"]


def test_an_export_the_exporter_fails_on_is_one_clear_refusal(tmp_path, monkeypatch):
    import torch

    den = demo_denoiser(tmp_path / "den")
    before = (den.path / "model.json").read_text()

    def fails(*args, **kwargs):
        raise RuntimeError(
            "Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m\n"
            "## Exception summary\n\n<class 'UserError'>: data-dependent control flow\n"
        )

    monkeypatch.setattr(torch.onnx, "export", fails)
    with pytest.raises(InvalidInputError, match="'unet' cannot be exported to ONNX: <class"):
        export_onnx(den)
    assert not (den.path / "model.onnx").exists()
    assert (den.path / "model.json").read_text() == before
