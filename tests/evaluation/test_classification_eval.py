"""The evaluation report: values equal scikit-learn on the Predictor's output; subgroups; files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, roc_auc_score

from medsight.core import Case, Image, InvalidInputError
from medsight.data import Dataset
from medsight.evaluation.classification_eval import evaluate_classifier, select_cases
from medsight.inference.classify import Predictor
from medsight.models import ModelPackage
from medsight.models.registry import build_network
from medsight.models.spec import (
    ArchitectureSpec,
    InputSpec,
    LabelSpec,
    ModelSpec,
    PreprocessingSpec,
    Task,
)


def _package(tmp_path, task, n):
    arch = ArchitectureSpec(name="smallcnn", args=dict(spatial_dims=2, in_channels=1,
                            out_channels=n, channels=[4, 8]))  # fmt: skip
    spec = ModelSpec(name="e", version="1", task=task, architecture=arch,
                     input=InputSpec(spatial_ndim=2), preprocessing=PreprocessingSpec(),
                     labels=[LabelSpec(index=i, name=f"c{i}") for i in range(n)],
                     thresholds={"c1": 0.5} if n == 2 else {}, temperature=1.3)  # fmt: skip
    torch.manual_seed(1)
    return ModelPackage.save(tmp_path / "pkg", spec, build_network(arch).state_dict())


def _dataset(n_classes, with_test=True):
    rng = np.random.default_rng(0)
    cases = []
    for i in range(60):
        label = int(rng.integers(0, n_classes))
        arr = rng.normal(size=(8, 8)) + label * 0.8  # separable enough for the random net
        cases.append(Case(f"c{i}", patient_id=f"p{i // 2}", label=label,
                          images={"image": Image(arr.astype(np.float32))},
                          attributes={"sex": "FM"[i % 2]} if i < 56 else {},
                          split="test" if with_test and i >= 20 else "train"))  # fmt: skip
    return Dataset("toy", cases, task="binary" if n_classes == 2 else "ordinal")


def test_binary_report_matches_sklearn_and_has_subgroups(tmp_path):
    pkg, ds = _package(tmp_path, Task.BINARY, 2), _dataset(2)
    report = evaluate_classifier(pkg, ds, tmp_path / "out", by=["sex"], n_resamples=100)
    assert report["split"] == "test" and report["n_cases"] == 40 and report["n_patients"] == 20
    cases, _ = select_cases(ds, None)
    pred = Predictor(pkg)
    p = pred.predict_arrays(np.stack([pred.preprocess(c.image()) for c in cases]))[:, 1]
    y = np.array([c.label for c in cases])
    m = {r["name"]: r for r in report["metrics"]}
    assert m["auc"]["value"] == pytest.approx(roc_auc_score(y, p))
    assert m["accuracy"]["value"] == pytest.approx(accuracy_score(y, p >= 0.5))
    assert report["confusion_matrix"] == confusion_matrix(y, p >= 0.5).tolist()
    assert m["auc"]["ci_low"] <= m["auc"]["value"] <= m["auc"]["ci_high"]
    sex = np.array([c.attributes.get("sex") for c in cases])
    groups = report["subgroups"]["sex"]["groups"]
    aucs = {}
    for v in ("F", "M"):
        aucs[v] = roc_auc_score(y[sex == v], p[sex == v])
        assert groups[v]["auc"]["value"] == pytest.approx(aucs[v])
    assert report["subgroups"]["sex"]["gaps"]["auc"] == pytest.approx(abs(aucs["F"] - aucs["M"]))
    out = tmp_path / "out"
    assert json.loads((out / "report.json").read_text())["metrics"] == report["metrics"]
    html = (out / "report.html").read_text()
    thumbs = sum(len(v) for v in report["failure_cases"]["groups"].values())  # failure cases
    assert html.count("data:image/png;base64,") == 3 + thumbs and "Subgroups by sex" in html
    assert all((out / f).stat().st_size > 1000 for f in ("roc.png", "pr.png", "reliability.png"))


def test_ordinal_report_has_kappa_and_uses_all_cases_without_test_split(tmp_path):
    pkg, ds = _package(tmp_path, Task.ORDINAL, 3), _dataset(3, with_test=False)
    report = evaluate_classifier(pkg, ds, tmp_path / "out", n_resamples=50)
    assert report["split"] == "all" and report["n_cases"] == 60
    pred = Predictor(pkg)
    d = pred.predict_arrays(np.stack([pred.preprocess(c.image()) for c in ds])).argmax(1)
    y = [c.label for c in ds]
    qwk = next(m for m in report["metrics"] if m["name"] == "qwk")["value"]
    assert qwk == pytest.approx(cohen_kappa_score(y, d, weights="quadratic"))
    with pytest.raises(InvalidInputError, match="no 'val' cases"):
        evaluate_classifier(pkg, ds, tmp_path / "o2", split="val")
    with pytest.raises(InvalidInputError, match="no case has"):
        evaluate_classifier(pkg, ds, tmp_path / "o3", by=["site"], n_resamples=10)
