"""Group-aware operating points: stored and validated in model.json, applied only where the
case's group is known (never guessed), and reported as such by analyze and evaluate."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch

from medsight.analysis.classification import analyze_classification
from medsight.analysis.output import RunOptions
from medsight.core import Case, Image
from medsight.data import Dataset
from medsight.evaluation.classification_eval import evaluate_classifier
from medsight.inference.classify import Predictor
from medsight.inference.decision import group_decisions, predict_labels
from medsight.models import ModelPackage
from medsight.models.registry import build_network
from medsight.models.spec import (
    ArchitectureSpec,
    GroupThresholds,
    InputSpec,
    LabelSpec,
    ModelSpec,
    PreprocessingSpec,
    Task,
)

GT = GroupThresholds(
    attribute="sex", label="pos", target_sensitivity=0.8, global_threshold=0.5,
    thresholds={"F": 0.0, "M": 1.0}, counts={"F": {"positives": 9, "negatives": 9}},
)  # fmt: skip


def _spec(task=Task.BINARY, n=2, thresholds=None, gt=GT):
    arch = ArchitectureSpec(name="smallcnn", args=dict(spatial_dims=2, in_channels=1,
                            out_channels=n, channels=[4, 8]))  # fmt: skip
    names = ["neg", "pos", "other"][:n]
    return ModelSpec(
        name="g", version="1", task=task, architecture=arch, input=InputSpec(spatial_ndim=2),
        preprocessing=PreprocessingSpec(size=[8, 8]),
        labels=[LabelSpec(index=i, name=v) for i, v in enumerate(names)],
        thresholds={"pos": 0.5} if thresholds is None else thresholds, group_thresholds=gt,
    )  # fmt: skip


def test_known_group_uses_its_threshold_unknown_gets_the_global_one():
    proba = np.array([[0.6, 0.4]] * 4)
    d, used = group_decisions("binary", proba, {"pos": 0.5}, ["neg", "pos"], GT,
                              ["F", "M", None, "X"])  # fmt: skip
    assert d.tolist() == [1, 0, 0, 0]
    assert used[0] == "group threshold sex=F (0.000)" and used[1].startswith("group threshold")
    assert used[2] == "global threshold (sex not known)"
    assert used[3] == "global threshold (no group threshold for sex=X)"
    glob = predict_labels("binary", proba, {"pos": 0.5}, ["neg", "pos"])
    d0, used0 = group_decisions("binary", proba, {"pos": 0.5}, ["neg", "pos"], None, ["F"] * 4)
    assert (d0 == glob).all() and set(used0) == {"global threshold"}


def test_model_json_validates_group_thresholds():
    spec = _spec()
    assert ModelSpec.model_validate_json(spec.model_dump_json()) == spec
    with pytest.raises(pydantic.ValidationError, match="binary models only"):
        _spec(Task.MULTICLASS, 3, thresholds={})
    with pytest.raises(pydantic.ValidationError, match=r"fitted around threshold 0\.5"):
        _spec(thresholds={"pos": 0.3})
    with pytest.raises(pydantic.ValidationError, match="in \\[0, 1\\]"):
        GT.model_validate(GT.model_dump() | {"thresholds": {"F": 1.5}})
    assert _spec(gt=None).group_thresholds is None  # older packages: no group thresholds


def test_analyze_and_evaluate_say_which_operating_point_was_used(tmp_path):
    torch.manual_seed(0)
    spec = _spec()
    pkg = ModelPackage.save(tmp_path / "pkg", spec, build_network(spec.architecture).state_dict())
    image = Image(np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32))
    notes = {}
    for who, attrs in (("F", {"sex": "F"}), ("M", {"sex": "M"}), ("none", {})):
        out = analyze_classification(pkg, image, RunOptions(explain=False, attributes=attrs))
        notes[who] = (out.findings[0].note, out.findings[0].positive)
    assert notes["F"] == ("pos; decided at the group threshold sex=F (0.000)", True)
    assert notes["M"] == ("pos; decided at the group threshold sex=M (1.000)", False)
    p = Predictor(pkg).predict(image)
    assert notes["none"] == ("pos; decided at the global threshold (sex not known)", p.label == 1)

    rng = np.random.default_rng(1)
    cases = [
        Case(f"c{i}", patient_id=f"p{i}", label=i % 2, split="test",
             images={"image": Image(rng.normal(size=(8, 8)).astype(np.float32))},
             attributes={"sex": "FM"[(i // 2) % 2]} if i < 36 else {})
        for i in range(40)
    ]  # fmt: skip
    report = evaluate_classifier(pkg, Dataset("toy", cases, task="binary"), tmp_path / "ev",
                                 n_resamples=50)  # fmt: skip
    gop = report["group_operating_points"]
    assert gop["n_group_threshold"] == 36 and gop["n_global_threshold"] == 4
    cmp = gop["comparison"]
    # group thresholds 0 (F: all positive) and 1 (M: none): sensitivity gap F - M is 1
    assert cmp["methods"]["group"]["sensitivity_gap"]["value"] == pytest.approx(1.0)
    html = (tmp_path / "ev" / "report.html").read_text()
    assert "Group operating points (sex)" in html and "36 cases decided at their group" in html
