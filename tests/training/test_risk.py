"""End-to-end risk training on a tiny planted data set: package, predictor, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from medsight.analysis.output import RunOptions
from medsight.analysis.risk import analyze_risk
from medsight.core import InvalidInputError
from medsight.core.findings import FindingKind
from medsight.data import load_dataset
from medsight.evaluation.risk import evaluate_risk
from medsight.families import family_for
from medsight.inference.risk import RiskPredictor, timelines_for_package
from medsight.io import read_image
from medsight.models.spec import Task
from medsight.training.risk import RiskConfig, train_risk


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_toy(root, n_patients=48, seed=0):
    """A CSV manifest: 1-3 images per patient, age drives the outcome, some rows unlabelled."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    lines = ["file,patient_id,offset,age,sex,view,died,days,event"]
    for p in range(n_patients):
        age = int(rng.integers(20, 90))
        died = int(age + rng.normal(0, 8) > 60)
        days = int(rng.integers(5, 60)) if died else int(rng.integers(30, 90))
        for v in range(int(rng.integers(1, 4))):
            name = f"p{p}_{v}.png"
            pixels = rng.integers(0, 60, (16, 16)) + (120 if died else 0)
            PILImage.fromarray(pixels.astype(np.uint8)).save(root / "images" / name)
            label = "" if (p % 7 == 0 and v == 0) else ("Y" if died else "N")
            sex = "FM"[p % 2] if p % 5 else ""
            lines.append(
                f"{name},p{p},{3 * v},{age},{sex},{'AP' if v else 'PA'},{label},{days},{died}"
            )
    (root / "meta.csv").write_text("\n".join(lines) + "\n")
    return f"csv:{root / 'meta.csv'}"


def _cfg(tmp_path, data, **kw):
    base = dict(
        data=data,
        out=tmp_path / "run",
        target="died",
        features=["age", "sex", "view"],
        epochs=60,
        patience=60,
        n_resamples=20,
        threads=1,
        seed=0,
    )
    return RiskConfig(**(base | kw))


def test_train_risk_binary_end_to_end(tmp_path):
    data = write_toy(tmp_path / "toy")
    pkg = train_risk(_cfg(tmp_path, data, arch="late"), log=None)
    assert pkg.spec.task is Task.RISK and family_for(pkg.spec.task).name == "risk"
    n_cases = pkg.spec.training_data.n_cases
    assert n_cases["excluded_rows_without_target"] == 7  # patients 0, 7, 14 ... first image
    assert {"train", "val", "test"} <= set(n_cases)
    assert pkg.spec.calibration is not None and pkg.spec.metrics[0].name == "auc"
    run = tmp_path / "run"
    assert {"embeddings.npz", "splits.json", "timelines.json", "training_log.csv"} <= {
        p.name for p in run.iterdir()
    }
    # the package predicts on its own: embeddings through its encoder == the training cache
    predictor = RiskPredictor(pkg.path)
    timelines = list(timelines_for_package(pkg, load_dataset(data)))[:10]
    with np.load(run / "embeddings.npz") as z:
        cached = dict(zip(z["ids"].tolist(), z["vectors"], strict=True))
    p_images = predictor.predict(timelines)
    p_cached = predictor.predict(timelines, cached)
    assert np.allclose(p_images, p_cached, atol=1e-5)
    assert ((p_images >= 0) & (p_images <= 1)).all()  # the toy is separable: 0 and 1 occur
    # one patient from an image and a record
    image = read_image(tmp_path / "toy" / "images" / "p1_0.png")
    p = predictor.predict_record([(image, 0.0)], {"age": 80, "sex": "M", "view": "PA"})
    assert 0 <= p <= 1
    with pytest.raises(InvalidInputError, match="lacks age"):
        predictor.predict_record([(image, 0.0)], {"sex": "M", "view": "PA"})
    # analyze: withheld without the record (variables named), a RISK finding with it
    out = analyze_risk(pkg, image, None)
    assert out.findings == [] and "age, sex, view" in out.withheld[0]
    out = analyze_risk(pkg, image, RunOptions(attributes={"age": "80", "sex": "M", "view": "PA"}))
    assert out.findings[0].kind is FindingKind.RISK
    assert out.findings[0].probability == pytest.approx(p)


def test_sequence_time_to_event_and_evaluation(tmp_path):
    data = write_toy(tmp_path / "toy", seed=1)
    cfg = _cfg(
        tmp_path, data, arch="gru", target=None, time="days", event="event", features=["age", "sex"]
    )
    pkg = train_risk(cfg, log=None)
    assert pkg.spec.metrics[0].name == "c_index"
    assert pkg.spec.extra["risk"]["max_visits"] == 8 and pkg.spec.calibration is None
    report = evaluate_risk(
        pkg, load_dataset(data), tmp_path / "eval", split="test", n_resamples=20, n_repeats=3
    )
    metrics = {m["name"]: m for m in report["metrics"]}
    assert report["survival"] and 0 <= metrics["c_index"]["value"] <= 1
    test_ids = json.loads((pkg.path / "splits.json").read_text())["test"]
    assert report["patients"] == len(test_ids) and report["split"] == "test"
    # a handful of test patients: subgroups say "not estimable" instead of a 0-width CI
    groups = report["subgroups"]
    assert {"sex=F", "sex=M"} <= set(groups)
    assert all(not g["estimable"] and g["ci_low"] is None for g in groups.values())
    assert all(g["ci_note"].startswith("not estimable") for g in groups.values())
    assert {r["variable"] for r in report["permutation_importance"]} == {"age", "sex", "image"}
    assert (tmp_path / "eval" / "report.html").read_text().count("not estimable") >= 1
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["n_cases"] == len(test_ids)


def test_clinical_only_model_learns_the_planted_age_signal(tmp_path):
    data = write_toy(tmp_path / "toy", n_patients=80, seed=2)
    pkg = train_risk(_cfg(tmp_path, data, arch="clinical", epochs=150, patience=150), log=None)
    assert pkg.spec.extra["risk"]["encoder"] is None
    report = evaluate_risk(
        pkg, load_dataset(data), tmp_path / "eval", split="all", n_resamples=20, n_repeats=3
    )
    auc = report["metrics"][0]
    assert auc["name"] == "auc" and auc["value"] > 0.75  # label noise caps it near 0.85
    assert report["permutation_importance"][0]["variable"] == "age"


def test_bad_configs():
    with pytest.raises(ValueError, match="either target"):
        RiskConfig(data="x", out="y", target="a", time="t", event="e")
    with pytest.raises(ValueError, match="not one of"):
        RiskConfig(data="x", out="y", target="a", arch="transformer")
