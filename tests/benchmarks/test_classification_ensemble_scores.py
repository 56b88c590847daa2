"""``benchmarks/classification_ensemble.py``: its test scores for binary, multi-class and ordinal
packages (hand-made cases, the numbers of ``medsight evaluate``), and which sets it refuses."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medsight.core import Case, Image
from medsight.data import Dataset
from medsight.evaluation import classification as cm
from medsight.evaluation.calibration import expected_calibration_error
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

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "classification_ensemble.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("classification_ensemble_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# 3 classes; case 3 (true class 2) is decided as class 0.  One-vs-rest AUCs: class 0 and 1
# rank their one positive above every negative (1.0); class 2's positives 0.75 and 0.20 against
# negatives 0.10 and 0.30 win 3 of 4 pairs (0.75).  Macro AUC (1 + 1 + 0.75) / 3.  Top-label
# confidences 0.65, 0.55, 0.75 (right) and 0.45 (wrong) sit in four different bins:
# ECE = (0.35 + 0.45 + 0.25 + 0.45) / 4 = 0.375.
Y3 = np.array([0, 1, 2, 2])
P3 = np.array([[0.65, 0.25, 0.10], [0.15, 0.55, 0.30], [0.05, 0.20, 0.75], [0.45, 0.35, 0.20]])


@pytest.mark.parametrize("task", ["multiclass", "ordinal"])
def test_multiclass_scores_on_a_hand_made_case(bench, task):
    s = bench._scores(task, Y3, P3, P3.argmax(1))
    assert s["auc"] == pytest.approx(2.75 / 3)
    assert s["accuracy"] == pytest.approx(0.75)
    assert s["ece"] == pytest.approx(0.375)
    # accuracy is of the decisions given, not of a re-derived arg-max
    assert bench._scores(task, Y3, P3, np.array([0, 1, 2, 1]))["accuracy"] == pytest.approx(0.75)
    assert bench._scores(task, Y3, P3, Y3)["accuracy"] == 1.0


def test_multiclass_auc_is_macro_one_vs_rest_as_sklearn(bench):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 200)
    z = rng.normal(size=(200, 5)) + 1.5 * np.eye(5)[y]
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    s = bench._scores("ordinal", y, p, p.argmax(1))
    assert s["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    # a class absent from the labels is skipped, as medsight evaluate's macro AUC does
    keep = y != 4
    assert bench._scores("ordinal", y[keep], p[keep], p[keep].argmax(1))["auc"] == (
        pytest.approx(cm.macro_auc(y[keep], p[keep]))
    )


def test_binary_scores_unchanged(bench):
    # hand-made: positives 0.35, 0.85 vs negatives 0.15, 0.45 win 3 of 4 pairs; decisions at
    # 0.5 get cases 0, 1, 3 right; positive-class ECE (0.15 + 0.45 + 0.65 + 0.15) / 4
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.15, 0.45, 0.35, 0.85])
    s = bench._scores("binary", y, np.c_[1 - p1, p1], (p1 >= 0.5).astype(int))
    assert s == pytest.approx({"auc": 0.75, "accuracy": 0.75, "ece": 0.35})
    # exactly the formulas the BreastMNIST results were computed with
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1)
    d = (p1 >= 0.4).astype(np.int64)
    s = bench._scores("binary", y, np.c_[1 - p1, p1], d)
    assert s == {
        "auc": float(cm.roc_auc(y, p1)),
        "accuracy": float(np.mean(d == y)),
        "ece": float(expected_calibration_error(y, p1)),
    }


def test_scores_refuse_multilabel(bench):
    with pytest.raises(ValueError, match="multilabel"):
        bench._scores("multilabel", np.eye(3, dtype=int), np.full((3, 3), 0.5), np.eye(3))


def _package(tmp_path, task, n):
    arch = ArchitectureSpec(
        name="smallcnn",
        args=dict(spatial_dims=2, in_channels=1, out_channels=n, channels=[4, 8]),
    )
    spec = ModelSpec(
        name="e",
        version="1",
        task=task,
        architecture=arch,
        input=InputSpec(spatial_ndim=2),
        preprocessing=PreprocessingSpec(),
        labels=[LabelSpec(index=i, name=f"c{i}") for i in range(n)],
        thresholds={"c1": 0.5} if n == 2 else {},
        temperature=1.3,
    )
    torch.manual_seed(1)
    return ModelPackage.save(tmp_path / "pkg", spec, build_network(arch).state_dict())


def _dataset(n_classes, task):
    rng = np.random.default_rng(0)
    cases = []
    for i in range(60):
        label = int(rng.integers(0, n_classes))
        arr = rng.normal(size=(8, 8)) + label * 0.8
        cases.append(
            Case(
                f"c{i}",
                patient_id=f"p{i}",
                label=label,
                images={"image": Image(arr.astype(np.float32))},
                split="test" if i >= 20 else "train",
            )
        )
    return Dataset("toy", cases, task=task)


@pytest.mark.parametrize(("task", "n"), [(Task.ORDINAL, 4), (Task.MULTICLASS, 3), (Task.BINARY, 2)])
def test_test_scores_equal_medsight_evaluate(bench, tmp_path, task, n):
    pkg, ds = _package(tmp_path, task, n), _dataset(n, task.value)
    report = evaluate_classifier(pkg, ds, tmp_path / "out", n_resamples=20)
    values = {m["name"]: m["value"] for m in report["metrics"]}
    cases, _ = select_cases(ds, "test")
    pred = Predictor(pkg)
    x = np.stack([pred.preprocess(c.image()) for c in cases])
    s = bench._test_scores(pkg, x, np.array([int(c.label) for c in cases]))
    assert s["auc"] == pytest.approx(values["auc" if task is Task.BINARY else "auc_macro"])
    assert s["accuracy"] == pytest.approx(values["accuracy"])
    assert s["ece"] == pytest.approx(report["calibration"]["ece"])


def _npz(folder: Path, name: str, labels: np.ndarray) -> Path:
    arrays = {
        f"{s}_images": np.zeros((len(labels), 4, 4), np.uint8) for s in ("train", "val", "test")
    }
    arrays |= {f"{s}_labels": labels for s in ("train", "val", "test")}
    np.savez(folder / f"{name}.npz", **arrays)
    return folder


def test_main_refuses_a_multilabel_set_naming_it(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench.torch, "set_num_threads", lambda n: None)
    data = _npz(tmp_path, "chestmnist", np.array([[1] + [0] * 13, [0, 1] + [0] * 12]))
    monkeypatch.setattr(
        sys, "argv", ["x", "--data", str(data), "--set", "chestmnist", "--threads", "1"]
    )
    with pytest.raises(SystemExit):
        bench.main()
    err = capsys.readouterr().err
    assert "chestmnist: task multilabel" in err


class _Started(Exception):
    pass


def test_main_accepts_an_ordinal_set(bench, tmp_path, monkeypatch):
    data = _npz(tmp_path, "retinamnist", np.array([[0], [3], [4]]))

    def fake_train(*args, **kwargs):
        raise _Started

    monkeypatch.setattr(bench, "train_ensemble", fake_train)
    monkeypatch.setattr(bench.torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(bench.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "work"))
    monkeypatch.setattr(
        sys,
        "argv",
        ["x", "--data", str(data), "--set", "retinamnist", "--kind", "folds", "--threads", "1"],
    )
    with pytest.raises(_Started):  # past the task check, into training
        bench.main()


def _binary(p1):
    return np.stack([1 - p1, p1], 1)


def test_auc_cis_bracket_the_estimate_and_the_paired_gain_has_a_sign(bench):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    good = _binary(1 / (1 + np.exp(-(2.0 * (2 * y - 1) + rng.normal(0, 1, 200)))))
    poor = _binary(1 / (1 + np.exp(-(0.3 * (2 * y - 1) + rng.normal(0, 1, 200)))))
    ci = bench._auc_ci("binary", y, good, seed=0)
    assert ci["value"] == pytest.approx(roc_auc_score(y, good[:, 1]))
    assert ci["low"] < ci["value"] < ci["high"]
    assert ci["n_valid"] == bench.N_RESAMPLES
    gain = bench._auc_difference_ci("binary", y, good, poor, seed=0)
    assert gain["value"] == pytest.approx(
        roc_auc_score(y, good[:, 1]) - roc_auc_score(y, poor[:, 1])
    )
    assert gain["low"] > 0  # a clear gain: the whole interval above 0
    loss = bench._auc_difference_ci("binary", y, poor, good, seed=0)
    assert loss["high"] < 0
    # a model against a barely perturbed copy of itself: the interval straddles 0
    near = _binary(np.clip(good[:, 1] + rng.normal(0, 0.01, 200), 0, 1))
    tie = bench._auc_difference_ci("binary", y, good, near, seed=0)
    assert tie["low"] <= 0 <= tie["high"]


def test_auc_ci_of_a_multiclass_set_uses_the_macro_auc(bench):
    y = np.array([0, 1, 2, 2] * 10)
    p = np.tile(P3, (10, 1))
    ci = bench._auc_ci("multiclass", y, p, seed=1)
    assert ci["value"] == pytest.approx(2.75 / 3)
    assert ci["low"] <= ci["value"] <= ci["high"]


def test_work_folder_reuses_a_package_of_the_same_seed_only(bench, tmp_path):
    pkg = _package(tmp_path, Task.BINARY, 2)
    run = tmp_path / "single0"
    spec = pkg.spec.model_copy(update={"seed": 0})
    ModelPackage.save(run / "package", spec, pkg.state_dict())
    assert bench._reused(tmp_path / "absent", 0, None) is None
    again = bench._reused(run, 0, None)
    assert again is not None and again.spec.seed == 0
    with pytest.raises(SystemExit, match=r"single0.*seed 0.*needs seed 1"):
        bench._reused(run, 1, None)
    with pytest.raises(SystemExit, match=r"None members.*needs seed 0 and 5"):
        bench._reused(run, 0, 5)  # a single model where a 5-member ensemble is expected
    target = tmp_path / "r.json"
    assert bench._earlier_rows(target) == {}
    target.write_text('{"runs": [{"ensemble": 1, "train_wall_seconds": 9.5}]}')
    assert bench._earlier_rows(target) == {1: {"ensemble": 1, "train_wall_seconds": 9.5}}
