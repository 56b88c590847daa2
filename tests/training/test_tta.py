"""The trainer's test-time augmentation: views from the training policy, chosen on validation.

The toy MedMNIST files are named after a set of the wanted modality (``retinamnist``: OP,
fundus photographs, flipped both ways in training; ``breastmnist``: US, left-right only;
``pneumoniamnist``: CR, never flipped), with ``?task=binary`` so the task is the toy's.
"""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
import torch

from medsight.data import load_dataset
from medsight.evaluation.calibration import fit_calibration
from medsight.inference.classify import Predictor
from medsight.models import ModelPackage
from medsight.models.calibration import calibrated_probabilities
from medsight.models.spec import ModelSpec, Task
from medsight.models.tta import mean_probability_logits
from medsight.training import classification
from medsight.training.classification import (
    VAL_LOGITS_FILE,
    operating_thresholds,
    train_classifier,
)
from medsight.training.ensemble import member_probabilities, train_ensemble
from medsight.training.tta import TTA_MARGIN, tta_decision
from medsight.transforms.augment import augmentation_for, tta_flips

ZOO = classification.__file__.rsplit("/training/", 1)[0] + "/zoo"


@pytest.mark.parametrize(
    ("modality", "ndim"),
    [("CR", 2), ("DX", 2), ("MG", 2), ("US", 2), ("OP", 2), ("XC", 2), ("SM", 2), ("CT", 2),
     ("CT", 3), ("MR", 3), ("MR", 2), (None, 2)],
)  # fmt: skip
def test_views_are_the_training_policys_flips(modality, ndim):
    axes = augmentation_for(modality, ndim).flip_axes
    views = tta_flips(augmentation_for(modality, ndim))
    expected = {c for r in range(len(axes) + 1) for c in combinations(axes, r)}
    assert views[0] == () and set(views) == expected and len(views) == 2 ** len(axes)


def test_a_modality_without_flips_gets_the_identity_only():
    assert tta_flips(augmentation_for("CR", 2)) == [()]  # chest radiograph: laterality
    assert tta_flips(augmentation_for("US", 2)) == [(), (0,)]  # no top-bottom flip (probe)
    assert tta_flips(None) == [()]  # trained without augmentation: nothing declared
    # even --tta on cannot invent a view
    spec = tta_decision("on", [()], without=0.7, with_=None, decided_on="val")
    assert not spec.enabled and spec.transforms == ["identity"]


def test_decision_rule_and_margin():
    views = [(), (0,)]
    assert TTA_MARGIN == 0.002
    assert not tta_decision("auto", views, without=0.75, with_=0.75, decided_on="v").enabled
    assert not tta_decision("auto", views, without=0.75, with_=0.7515, decided_on="v").enabled
    assert tta_decision("auto", views, without=0.75, with_=0.7525, decided_on="v").enabled
    assert not tta_decision("off", views, without=0.5, with_=0.9, decided_on="v").enabled
    assert tta_decision("on", views, without=0.9, with_=0.5, decided_on="v").enabled


def _controlled_metric(monkeypatch, gain):
    """The validation metric: 0.8 on any logits, 0.8 + ``gain`` on the view average."""
    averaged = []
    real = classification.mean_probability_logits

    def spy(z, **kw):
        out = real(z, **kw)
        averaged.append(out)
        return out

    def metric(task, y, logits):
        return 0.8 + gain if any(logits is a for a in averaged) else 0.8

    monkeypatch.setattr(classification, "mean_probability_logits", spy)
    monkeypatch.setattr(classification, "_val_metric", metric)


def _val_inputs(pkg, data):
    predictor = Predictor(pkg, tta=False)
    cases = [c for c in load_dataset(data) if c.split.value == "val"]
    return np.stack([predictor.preprocess(c.image()) for c in cases])


@pytest.mark.parametrize(("gain", "enabled"), [(0.0015, False), (0.0025, True)])
def test_auto_enables_tta_only_above_the_margin(
    tmp_path, write_npz, cfg_for, monkeypatch, gain, enabled
):
    _controlled_metric(monkeypatch, gain)
    npz = write_npz(tmp_path / "breastmnist.npz")  # US: left-right flips
    data = f"medmnist:{npz}?task=binary"
    pkg = train_classifier(cfg_for(tmp_path, data))
    tta = pkg.spec.tta
    assert tta.transforms == ["identity", "flip:0"]
    assert tta.enabled is enabled and tta.mode.value == "auto" and tta.margin == TTA_MARGIN
    assert tta.val_metric_without == 0.8 and tta.val_metric_with == pytest.approx(0.8 + gain)
    # calibration and threshold are fitted on the probabilities the package produces
    with np.load(tmp_path / "run" / VAL_LOGITS_FILE) as z:
        per_view, y = z["view_logits"], z["y"]
        assert [str(v) for v in z["views"]] == tta.transforms
        assert np.array_equal(z["logits"], per_view[0])
    fit_on = mean_probability_logits(per_view, multilabel=False) if enabled else per_view[0]
    cal = fit_calibration(fit_on, y, Task.BINARY, seed=0)
    assert cal.to_spec() == pkg.spec.calibration
    proba = cal.probabilities(fit_on)
    assert (
        operating_thresholds("youden", Task.BINARY, y, proba, pkg.spec.label_names)
        == pkg.spec.thresholds
    )
    # ... and those are what the Predictor returns on the validation images
    x = _val_inputs(pkg, data)
    assert np.allclose(Predictor(pkg).predict_arrays(x), proba, atol=1e-5)
    card = (pkg.path / "MODEL_CARD.md").read_text()
    line = next(t for t in card.splitlines() if t.startswith("- Test-time augmentation:"))
    assert ("on (" if enabled else "off (") in line
    assert f"{0.8 + gain:.4f} with, 0.8000 without" in line


def test_tta_off_gives_bitwise_the_old_probabilities(tmp_path, write_npz, cfg_for, monkeypatch):
    npz = write_npz(tmp_path / "retinamnist.npz", n_classes=5)  # OP: flips on both axes
    data = f"medmnist:{npz}?task=multiclass"
    off = train_classifier(cfg_for(tmp_path / "off", data, tta="off"))
    assert off.spec.tta.transforms == ["identity", "flip:0", "flip:1", "flip:0,1"]
    assert off.spec.tta.mode.value == "off" and not off.spec.tta.enabled
    assert off.spec.tta.val_metric_with is not None  # measured and stated, not used
    # the old trainer: no views at all (as if the policy declared none)
    monkeypatch.setattr(classification, "tta_flips", lambda aug: [()])
    old = train_classifier(cfg_for(tmp_path / "old", data, tta="on"))
    assert not old.spec.tta.enabled and old.spec.tta.val_metric_with is None
    for field in ("calibration", "thresholds", "metrics", "temperature"):
        assert getattr(off.spec, field) == getattr(old.spec, field), field
    x = _val_inputs(off, data)
    assert np.array_equal(Predictor(off).predict_arrays(x), Predictor(old).predict_arrays(x))
    # and those are the network's own calibrated probabilities (the pre-TTA Predictor's rule)
    with torch.no_grad():
        logits = Predictor(off).network(torch.from_numpy(x)).numpy().astype(np.float64)
    spec = off.spec
    expected = calibrated_probabilities(logits, spec.task, spec.calibration, spec.temperature)
    assert np.array_equal(Predictor(off).predict_arrays(x), expected)


def test_chest_radiograph_trains_without_tta_even_when_asked(tmp_path, write_npz, cfg_for):
    npz = write_npz(tmp_path / "pneumoniamnist.npz")  # CR
    pkg = train_classifier(cfg_for(tmp_path, f"medmnist:{npz}?task=binary", tta="on"))
    assert pkg.spec.tta.transforms == ["identity"] and not pkg.spec.tta.enabled
    assert "no label-preserving flip" in pkg.spec.tta.reason
    with np.load(tmp_path / "run" / VAL_LOGITS_FILE) as z:
        assert "view_logits" not in z.files


def test_old_package_spec_loads_unchanged(tmp_path):
    src = f"{ZOO}/breastmnist-smallcnn/model.json"
    with open(src, encoding="utf-8") as f:
        raw = json.load(f)
    assert "tta" not in raw
    spec = ModelSpec.model_validate(raw)
    assert spec.tta is None
    dumped = spec.model_dump(mode="json")
    assert dumped.pop("tta") is None and dumped == ModelSpec.model_validate(raw).model_dump(
        mode="json", exclude={"tta"}
    )
    pkg = ModelPackage.load(f"{ZOO}/breastmnist-smallcnn")
    predictor = Predictor(pkg)
    assert predictor.views == [()]
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        logits = predictor.network(torch.from_numpy(x)).numpy().astype(np.float64)
    s = pkg.spec
    expected = calibrated_probabilities(logits, s.task, s.calibration, s.temperature)
    assert np.array_equal(predictor.predict_arrays(x), expected)


def test_seed_ensemble_decides_tta_once_on_its_validation(tmp_path, write_npz, cfg_for):
    npz = write_npz(tmp_path / "breastmnist.npz")  # US: left-right flips
    data = f"medmnist:{npz}?task=binary"
    pkg = train_ensemble(cfg_for(tmp_path, data, tta="on"), seeds=2)
    spec = pkg.spec
    assert spec.tta.enabled and spec.tta.transforms == ["identity", "flip:0"]
    assert "averaged ensemble" in spec.tta.decided_on
    # the threshold is fitted on the members' temperature-scaled probabilities averaged over
    # members and views (members share the validation split here)
    members = []
    for k, listed in enumerate(spec.ensemble.members):
        with np.load(tmp_path / "run" / "members" / str(k) / VAL_LOGITS_FILE) as z:
            members.append(
                np.mean(
                    [
                        member_probabilities(v, listed.temperature, spec.task)
                        for v in z["view_logits"]
                    ],
                    axis=0,
                )
            )
            y = z["y"]
    proba = np.mean(members, axis=0)
    assert operating_thresholds("youden", spec.task, y, proba, spec.label_names) == spec.thresholds
    x = _val_inputs(pkg, data)
    assert np.allclose(Predictor(pkg).predict_arrays(x), proba, atol=1e-5)
    assert (
        "- Test-time augmentation: on (identity, flip:0;"
        in (pkg.path / "MODEL_CARD.md").read_text()
    )


@pytest.mark.parametrize(("gain", "enabled"), [(0.001, False), (0.01, True)])
def test_fold_ensemble_decides_on_pooled_out_of_fold_predictions(
    tmp_path, write_npz, cfg_for, monkeypatch, gain, enabled
):
    from medsight.training import ensemble

    calls = []

    def metric(task, y, logits):  # without first, then with (ensemble._decide_tta)
        calls.append(len(y))
        return 0.8 if len(calls) == 1 else 0.8 + gain

    monkeypatch.setattr(ensemble, "_val_metric", metric)
    npz = write_npz(tmp_path / "breastmnist.npz")
    spec = train_ensemble(cfg_for(tmp_path, f"medmnist:{npz}?task=binary"), folds=2).spec
    assert calls == [36, 36]  # train + val pooled, each case once, out of fold
    assert spec.tta.enabled is enabled and "out-of-fold" in spec.tta.decided_on
    assert spec.tta.val_metric_with == pytest.approx(0.8 + gain)
    pooled = []
    for k, listed in enumerate(spec.ensemble.members):
        with np.load(tmp_path / "run" / "members" / str(k) / VAL_LOGITS_FILE) as z:
            views = z["view_logits"] if enabled else z["logits"][None]
            probs = [member_probabilities(v, listed.temperature, spec.task) for v in views]
            pooled.append((np.mean(probs, axis=0), z["y"]))
    proba = np.concatenate([p for p, _ in pooled])
    y = np.concatenate([t for _, t in pooled])
    assert operating_thresholds("youden", spec.task, y, proba, spec.label_names) == spec.thresholds


@pytest.mark.parametrize("mode", ["off", "on"])
def test_train_classify_cli_takes_tta(tmp_path, write_npz, capsys, mode):
    from medsight.cli.app import main

    npz = write_npz(tmp_path / "breastmnist.npz")
    run = tmp_path / "run"
    code = main(["train", "classify", "--data", f"medmnist:{npz}?task=binary", "--out", str(run),
                 "--epochs", "1", "--batch-size", "8", "--threads", "1", "--no-progress",
                 "--tta", mode])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    tta = ModelPackage.load(run / "package").spec.tta
    assert tta.mode.value == mode and tta.enabled is (mode == "on")
    state = "on (identity, flip:0)" if mode == "on" else "off"
    assert f"test-time augmentation: {state}; --tta {mode}" in capsys.readouterr().out
    assert (
        main(["train", "classify", "--data", "x", "--out", str(tmp_path / "r2"), "--tta", "maybe"])
        == 2
    )
