"""Classification training end to end on tiny synthetic MedMNIST-format files (seconds)."""

from __future__ import annotations

import pytest
import torch

from medsight.core import InvalidInputError
from medsight.models import ModelPackage
from medsight.training import classification as tc
from medsight.training.config import ClassifyConfig


def test_binary_2d_package_has_threshold_temperature_metrics_and_card(tmp_path, write_npz, cfg_for):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary"
    pkg = tc.train_classifier(cfg_for(tmp_path, data, epochs=3))
    spec = ModelPackage.load(pkg.path).spec
    assert spec.task.value == "binary" and 0 <= spec.thresholds["1"] <= 1
    cal = spec.calibration  # the fitted calibration, its note and out-of-fold reliability
    assert cal is not None and cal.note and cal.n == 12
    assert (spec.temperature is not None) == (cal.method.value == "temperature")
    assert sum(cal.reliability.count) == 12 and cal.reliability.kind == "positive-class"
    assert set(cal.cv_nll) == {"none", "temperature", "vector", "isotonic"}
    names = {m.name for m in spec.metrics}
    assert {"auc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "ece"} <= names
    assert all(m.split == "val" for m in spec.metrics)
    assert spec.training_data.n_cases == {"train": 24, "val": 12}
    # toy.npz is no MedMNIST set: no license is guessed
    assert spec.training_data.license == ""
    assert spec.training_data.source == "medmnist adapter (official splits)"
    assert spec.preprocessing.intensity.value == "dataset_zscore"
    assert "## Training data" in (pkg.path / "MODEL_CARD.md").read_text()
    assert (tmp_path / "run" / "training_log.csv").read_text().count("\n") == 4
    ood = spec.extra["ood"]  # the trainer writes the OOD reference: train fit, val threshold
    assert ood["n_train"] == 24 and ood["n_val"] == 12 and ood["false_rejection_rate"] == 0.05
    assert (pkg.path / ood["file"]).is_file()
    assert spec.input.grey_only  # trained on grey images


def test_package_carries_the_adapters_license(tmp_path, write_npz, cfg_for):
    data = f"medmnist:{write_npz(tmp_path / 'breastmnist.npz')}"
    spec = ModelPackage.load(tc.train_classifier(cfg_for(tmp_path, data)).path).spec
    td = spec.training_data  # the text of the zoo's breastmnist model card
    assert td.license == "CC BY 4.0 (MedMNIST v2, Yang et al., Scientific Data 2023; BUSI source)"
    assert td.source == "medmnist adapter (official splits)"


def test_same_seed_same_weights_and_resume_reproduces(tmp_path, monkeypatch, write_npz, cfg_for):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary"
    full = tc.train_classifier(cfg_for(tmp_path / "a", data, epochs=3)).state_dict()
    calls = {"n": 0}
    real_save = tc.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed after two epochs

    monkeypatch.setattr(tc, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        tc.train_classifier(cfg_for(tmp_path / "b", data, epochs=3))
    monkeypatch.setattr(tc, "save_checkpoint", real_save)
    with pytest.raises(InvalidInputError, match="--resume"):
        tc.train_classifier(cfg_for(tmp_path / "b", data, epochs=3))
    with pytest.raises(InvalidInputError, match="other settings: lr"):
        tc.train_classifier(cfg_for(tmp_path / "b", data, epochs=3, resume=True, lr=0.1))
    resumed = tc.train_classifier(cfg_for(tmp_path / "b", data, epochs=3, resume=True))
    log = (tmp_path / "b" / "run" / "training_log.csv").read_text().splitlines()
    assert len(log) == 4
    for k, v in full.items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_3d_ordinal_rgb_and_multilabel_tasks(tmp_path, write_npz, cfg_for):
    p3 = write_npz(tmp_path / "toy3d.npz", n=12, size=8, three_d=True)
    pkg = tc.train_classifier(cfg_for(tmp_path / "3d", f"medmnist:{p3}?task=binary", epochs=1))
    assert pkg.spec.input.spatial_ndim == 3 and pkg.spec.architecture.args["stem_stride"] == 2
    po = write_npz(tmp_path / "ord.npz", rgb=True, n_classes=4)
    pkg = tc.train_classifier(cfg_for(tmp_path / "ord", f"medmnist:{po}?task=ordinal", epochs=1))
    names = {m.name for m in pkg.spec.metrics}
    assert pkg.spec.input.channels == 3 and {"qwk", "auc_macro", "f1_macro"} <= names
    pm = write_npz(tmp_path / "ml.npz", n_classes=3, multilabel=True)
    pkg = tc.train_classifier(cfg_for(tmp_path / "ml", f"medmnist:{pm}?task=multilabel", epochs=1))
    assert set(pkg.spec.thresholds) == {"0", "1", "2"}
    assert "subset_accuracy" in {m.name for m in pkg.spec.metrics}


def test_learns_the_toy_task(tmp_path, write_npz, cfg_for):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz', n=64)}?task=binary"
    pkg = tc.train_classifier(cfg_for(tmp_path, data, epochs=8, lr=5e-3))
    auc = {m.name: m.value for m in pkg.spec.metrics}["auc"]
    assert auc > 0.9  # a bright square is easy; chance would be 0.5


def test_init_and_pretrained_are_exclusive(tmp_path, write_npz, cfg_for):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary"
    cfg = cfg_for(tmp_path, data)
    with pytest.raises(ValueError, match="either init"):
        ClassifyConfig(**(cfg.model_dump() | {"init": "a", "pretrained": "b"}))


@pytest.mark.parametrize("arch", ["classifier"])
def test_other_registry_networks_train(tmp_path, write_npz, cfg_for, arch):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz', n=16)}?task=binary"
    pkg = tc.train_classifier(cfg_for(tmp_path, data, epochs=1, arch=arch, arch_args={}))
    assert pkg.spec.architecture.name == arch
    assert ModelPackage.load(pkg.path).build_network() is not None


def test_splits_json_replaces_the_official_split(tmp_path, write_npz, cfg_for):
    from medsight.data import SplitConfig, load_dataset, make_splits

    data = f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary"
    cfg = SplitConfig(val_fraction=0.2, test_fraction=0.1, keep_official=False, seed=1)
    splits = make_splits(load_dataset(data), cfg).save(tmp_path / "splits.json")
    pkg = tc.train_classifier(cfg_for(tmp_path, data, epochs=1, splits=splits))
    n = pkg.spec.training_data.n_cases
    assert n["train"] > 30 and 8 <= n["val"] <= 11  # 48 cases: 70/20/10, not the official 24/12


def test_imbalance_handling_and_threshold_methods():
    import numpy as np

    from medsight.models.spec import Task
    from medsight.training.config import Imbalance, ThresholdMethod

    y = np.array([0] * 90 + [1] * 10)
    weights = tc._loss_fn(Task.BINARY, y, 2, Imbalance.WEIGHTED_LOSS).weight.numpy()
    assert weights[1] / weights[0] == pytest.approx(3.0)  # 1/sqrt(frequency): sqrt(90/10)
    order = tc._order(100, y, Task.BINARY, Imbalance.BALANCED_SAMPLER, np.random.default_rng(0))
    assert 0.35 < np.mean(y[order]) < 0.65  # each class drawn about equally often
    plain = tc._order(100, y, Task.BINARY, Imbalance.NONE, np.random.default_rng(0))
    assert sorted(plain) == list(range(100))
    score = np.linspace(0, 1, 100) + 0.3 * y  # positives score higher
    t_acc = tc._threshold(ThresholdMethod.ACCURACY, y, score)
    best = max(np.mean((score >= t) == y) for t in np.unique(score))
    assert np.mean((score >= t_acc) == y) == pytest.approx(best)
    assert tc._threshold(ThresholdMethod.HALF, y, score) == 0.5


def test_network_too_deep_for_the_input_size_is_a_clear_error(tmp_path, write_npz, cfg_for):
    """densenet121 cannot take 12 px inputs: the trainer says so instead of a torch traceback."""
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz', n=16)}?task=binary"
    with pytest.raises(InvalidInputError, match=r"densenet121.*cannot take inputs of shape"):
        tc.train_classifier(cfg_for(tmp_path, data, epochs=1, arch="densenet121", arch_args={}))
