"""Predictor: preprocessing as stored, temperature applied, decision at the stored threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.core import Image, InvalidInputError
from medsight.inference.classify import Predictor
from medsight.models import ModelPackage
from medsight.models.registry import build_network
from medsight.models.spec import (
    ArchitectureSpec,
    InputSpec,
    Intensity,
    LabelSpec,
    ModelSpec,
    PreprocessingSpec,
    Task,
)


def _package(tmp_path, task=Task.BINARY, n=2, thresholds=None, temperature=2.5):
    arch = ArchitectureSpec(name="smallcnn", args=dict(spatial_dims=2, in_channels=1,
                            out_channels=n, channels=[4, 8]))  # fmt: skip
    spec = ModelSpec(
        name="t", version="1", task=task, architecture=arch,
        input=InputSpec(spatial_ndim=2, channels=1),
        preprocessing=PreprocessingSpec(size=[8, 8], intensity=Intensity.DATASET_ZSCORE,
                                        intensity_args={"mean": 100.0, "std": 50.0}),
        labels=[LabelSpec(index=i, name=f"c{i}") for i in range(n)],
        thresholds=thresholds or {}, temperature=temperature,
    )  # fmt: skip
    torch.manual_seed(0)
    net = build_network(arch)
    with torch.no_grad():  # make the outputs non-trivial
        net.head[1].bias.copy_(torch.linspace(-1, 1, n))
    return ModelPackage.save(tmp_path / "pkg", spec, net.state_dict())


def test_probabilities_are_softmax_of_logits_over_temperature(tmp_path):
    pkg = _package(tmp_path)
    arr = np.random.default_rng(0).integers(0, 255, (16, 16)).astype(np.uint8)
    # independent reference: resize and normalise by hand, run the network directly
    t = torch.from_numpy(arr.astype(np.float32))[None, None]
    x = (torch.nn.functional.interpolate(t, size=(8, 8), mode="bilinear") - 100.0) / 50.0
    logits = pkg.build_network()(x)
    expected = torch.softmax(logits / 2.5, dim=1)[0].detach().numpy()
    pred = Predictor(pkg).predict(Image(arr))
    np.testing.assert_allclose(pred.probabilities, expected, rtol=1e-5, atol=1e-6)
    assert pred.model_id == "t@1"


def test_binary_decision_uses_the_stored_threshold(tmp_path):
    arr = np.zeros((8, 8), np.uint8)
    p1 = Predictor(_package(tmp_path / "a")).predict(Image(arr)).probabilities[1]
    low = Predictor(_package(tmp_path / "b", thresholds={"c1": p1 - 1e-3})).predict(Image(arr))
    high = Predictor(_package(tmp_path / "c", thresholds={"c1": p1 + 1e-3})).predict(Image(arr))
    assert (low.label, low.names) == (1, ("c1",))
    assert (high.label, high.names) == (0, ("c0",))


def test_multilabel_uses_sigmoid_per_label(tmp_path):
    pkg = _package(tmp_path, task=Task.MULTILABEL, n=3, temperature=1.0)
    preds = Predictor(pkg).predict_many([Image(np.zeros((8, 8)))] * 2)
    p = preds[0].probabilities
    assert p.shape == (3,) and not np.isclose(p.sum(), 1.0)
    assert preds[0].label == tuple(int(i) for i in np.flatnonzero(p >= 0.5))


def test_wrong_input_is_refused(tmp_path):
    predictor = Predictor(_package(tmp_path))
    with pytest.raises(InvalidInputError, match="expects 2D"):
        predictor.predict(Image(np.zeros((4, 4, 4))))
    with pytest.raises(InvalidInputError, match="channels"):
        predictor.predict(Image(np.zeros((4, 4, 4)), spatial_ndim=2))


def _logits(pkg, arr):
    t = torch.from_numpy(arr.astype(np.float32))[None, None]
    x = (torch.nn.functional.interpolate(t, size=(8, 8), mode="bilinear") - 100.0) / 50.0
    return pkg.build_network()(x).detach().double().numpy()


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS, Task.MULTILABEL])
def test_the_stored_calibration_is_applied(tmp_path, task):
    from medsight.models.spec import CalibrationSpec

    n = 2 if task is Task.BINARY else 3
    base = _package(tmp_path / "base", task=task, n=n, temperature=None)
    arr = np.random.default_rng(1).integers(0, 255, (16, 16)).astype(np.uint8)
    z = _logits(base, arr)[0]
    k = 1 if task is Task.BINARY else n
    vector = CalibrationSpec(method="vector", params={"scale": [0.5] * k, "bias": [0.3] * k})
    iso = CalibrationSpec(method="isotonic", params={"x": [[0.0, 1.0]] * k, "y": [[0.2, 0.4]] * k})
    for cal in (vector, iso):
        spec = base.spec.model_copy(update={"calibration": cal})
        pkg = ModelPackage.save(tmp_path / cal.method.value, spec, base.state_dict())
        p = Predictor(ModelPackage.load(pkg.path)).predict(Image(arr)).probabilities
        if cal is vector and task is Task.BINARY:
            m = 0.5 * (z[1] - z[0]) + 0.3
            expected = np.array([1 - 1 / (1 + np.exp(-m)), 1 / (1 + np.exp(-m))])
        elif cal is vector:
            s = 0.5 * z + 0.3
            expected = (
                1 / (1 + np.exp(-s)) if task is Task.MULTILABEL else np.exp(s) / np.exp(s).sum()
            )
        else:
            raw = 1 / (1 + np.exp(-z)) if task is Task.MULTILABEL else np.exp(z) / np.exp(z).sum()
            q = 0.2 + 0.2 * raw
            expected = {Task.BINARY: np.array([1 - q[1], q[1]]), Task.MULTILABEL: q}.get(
                task, q / q.sum()
            )
        np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6)


def test_temperature_only_packages_still_load_and_apply_their_temperature(tmp_path):
    import json

    pkg = _package(tmp_path, temperature=2.5)
    doc = json.loads((pkg.path / "model.json").read_text())
    del doc["calibration"]  # as written before calibration existed
    (pkg.path / "model.json").write_text(json.dumps(doc, indent=2) + "\n")
    old = ModelPackage.load(pkg.path)
    assert old.spec.calibration is None and old.spec.temperature == 2.5
    arr = np.random.default_rng(2).integers(0, 255, (16, 16)).astype(np.uint8)
    z = _logits(old, arr)[0] / 2.5
    p = Predictor(old).predict(Image(arr)).probabilities
    np.testing.assert_allclose(p, np.exp(z) / np.exp(z).sum(), rtol=1e-5, atol=1e-6)
