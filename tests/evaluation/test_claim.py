"""The CLAIM checklist of `medsight evaluate`: items present, answered vs open, failure images."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image as PILImage

from medsight.core import Case, Image
from medsight.data import Dataset
from medsight.evaluation.claim import CLAIM_ITEMS, failure_cases
from medsight.evaluation.classification_eval import evaluate_classifier
from medsight.models import ModelPackage
from medsight.models.registry import build_network
from medsight.models.spec import (
    ArchitectureSpec,
    InputSpec,
    LabelSpec,
    ModelSpec,
    PreprocessingSpec,
    Task,
    TrainingDataSummary,
)


def _package(tmp_path):
    arch = ArchitectureSpec(name="smallcnn", args=dict(spatial_dims=2, in_channels=1,
                            out_channels=2, channels=[4, 8]))  # fmt: skip
    spec = ModelSpec(
        name="e", version="1", task=Task.BINARY, architecture=arch,
        input=InputSpec(spatial_ndim=2), preprocessing=PreprocessingSpec(),
        labels=[LabelSpec(index=0, name="benign"), LabelSpec(index=1, name="malignant")],
        thresholds={"malignant": 0.5}, temperature=1.0,
        training_data=TrainingDataSummary(dataset="toy", source="medmnist adapter (official "
                                          "splits)", license="CC BY 4.0", n_cases={"train": 9}),
    )  # fmt: skip
    torch.manual_seed(1)
    return ModelPackage.save(tmp_path / "pkg", spec, build_network(arch).state_dict())


def _dataset():
    rng = np.random.default_rng(0)
    cases = [
        Case(f"c{i}", patient_id=f"p{i}", label=i % 2, split="test",
             images={"image": Image(rng.normal(size=(8, 8)).astype(np.float32))})
        for i in range(40)
    ]  # fmt: skip
    return Dataset("toy", cases, task="binary")


def test_report_answers_what_the_run_knows_and_lists_the_rest(tmp_path):
    report = evaluate_classifier(_package(tmp_path), _dataset(), tmp_path / "out", n_resamples=20)
    items = {it["item"]: it for it in report["claim_checklist"]}
    assert sorted(items) == list(range(1, 43)) == sorted(CLAIM_ITEMS)
    status = {n: it["status"] for n, it in items.items()}
    # known from the package and the run: source + license, model, CIs, ensembling, failures
    for n in (7, 22, 23, 27, 28, 29, 36):
        assert status[n] == "answered", items[n]
    assert "CC BY 4.0" in items[7]["answer"] and items[27]["answer"] == "no ensemble"
    assert "no: the evaluation data is a partition" in items[32]["answer"]
    # never guessed: study design, eligibility, annotators, registration, funding
    for n in (5, 6, 8, 12, 15, 16, 17, 18, 40, 41, 42):
        assert status[n] == "open" and items[n]["answer"] == "to be answered by the authors"
    # a random network on noise errs: the worst errors are listed with images that exist
    fails = report["failure_cases"]["groups"]
    rows = fails["false_positives"] + fails["false_negatives"]
    assert rows and len(fails["false_positives"]) <= 4
    assert status[37] == "answered" and str(len(rows)) in items[37]["answer"]
    for row in rows:
        png = tmp_path / "out" / row["image"]
        assert PILImage.open(png).size[0] >= 96 and row["truth"] != row["decision"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "CLAIM checklist" in html and "Failure cases" in html
    assert html.count("to be answered by the authors") == sum(s == "open" for s in status.values())
    assert (
        json.loads((tmp_path / "out" / "report.json").read_text())["claim_checklist"][0]["item"]
        == 1
    )


def test_false_positives_are_the_most_confident_errors(tmp_path):
    y = np.array([0, 0, 0, 1, 1, 1])
    p1 = np.array([0.9, 0.7, 0.2, 0.1, 0.3, 0.8])
    proba = np.stack([1 - p1, p1], axis=1)
    d = (p1 >= 0.5).astype(int)
    x = np.random.default_rng(0).normal(size=(6, 1, 8, 8)).astype(np.float32)
    out = failure_cases("binary", list("abcdef"), x, y, proba, d, ["no", "yes"], tmp_path, k=1)
    assert [r["case_id"] for r in out["groups"]["false_positives"]] == ["a"]
    assert [r["case_id"] for r in out["groups"]["false_negatives"]] == ["d"]
    assert (tmp_path / out["groups"]["false_negatives"][0]["image"]).is_file()
