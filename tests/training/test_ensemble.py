"""Seed / fold ensembles written as one ModelPackage (tiny 2-member runs on synthetic data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsight.core import Image, InvalidInputError
from medsight.explain import explain_classifier
from medsight.inference.classify import Predictor
from medsight.inference.features import package_features
from medsight.models import ModelPackage
from medsight.models.package import PackageError
from medsight.training.ensemble import member_probabilities, train_ensemble


def _images(path, split, n=6):
    with np.load(path) as z:
        return [Image(z[f"{split}_images"][i].astype(np.float32)) for i in range(n)]


def test_seed_ensemble_probability_is_mean_of_members(tmp_path, write_npz, cfg_for):
    npz = write_npz(tmp_path / "toy.npz")
    cfg = cfg_for(tmp_path, f"medmnist:{npz}?task=binary")
    pkg = train_ensemble(cfg, seeds=2)
    loaded = ModelPackage.load(pkg.path)
    spec = loaded.spec
    assert spec.architecture.name == "ensemble" and spec.ensemble.method == "seeds"
    assert [m.seed for m in spec.ensemble.members] == [0, 1]
    assert spec.calibration is None and spec.temperature is None
    assert (
        "- Calibration: per member: temperature scaling" in (pkg.path / "MODEL_CARD.md").read_text()
    )
    assert "averaged ensemble (n=12)" in spec.ensemble.threshold_fitted_on
    assert 0 <= spec.thresholds["1"] <= 1 and any(m.name == "auc" for m in spec.metrics)
    assert json.loads((pkg.path / "model.json").read_text())["ensemble"]["members"][1]["index"] == 1
    ens = Predictor(loaded)
    x = np.stack([ens.preprocess(im) for im in _images(npz, "test")])
    # each member with its own temperature (fitted on its validation logits), averaged
    members = [ModelPackage.load(tmp_path / "run" / "members" / str(k) / "package") for k in (0, 1)]
    parts = []
    for member, listed in zip(members, spec.ensemble.members, strict=True):
        with torch.no_grad():
            logits = Predictor(member).network(torch.from_numpy(x)).numpy()
        parts.append(member_probabilities(logits.astype(np.float64), listed.temperature, spec.task))
    assert np.allclose(ens.predict_arrays(x), np.mean(parts, axis=0), atol=1e-5)
    assert members[0].spec.temperature != pytest.approx(spec.ensemble.members[1].temperature)
    preds = ens.predict_many(_images(npz, "test"))
    assert len(preds) == 6 and all(p.probabilities.sum() == pytest.approx(1.0) for p in preds)
    # the OOD gate's reference comes with the ensemble (the last member's), and the features
    # the gate reads from the ensemble are that member's own
    assert (pkg.path / spec.extra["ood"]["file"]).is_file()
    images = _images(npz, "test", 3)
    assert np.allclose(package_features(loaded, images), package_features(members[1], images))
    # Grad-CAM runs on the ensemble network (its output, at the last member's last conv)
    heat = explain_classifier(ens.network, torch.from_numpy(x[:1]), images[0], 1)
    assert heat.array.shape == images[0].array.shape and np.isfinite(heat.array).all()
    # model.json is validated against the architecture: a tampered temperature is refused
    data = json.loads((pkg.path / "model.json").read_text())
    data["ensemble"]["members"][0]["temperature"] += 1.0
    (pkg.path / "model.json").write_text(json.dumps(data))
    with pytest.raises(PackageError, match="temperatures disagree"):
        ModelPackage.load(pkg.path)


def test_fold_ensemble_uses_pooled_out_of_fold_predictions(tmp_path, write_npz, cfg_for):
    npz = write_npz(tmp_path / "toy.npz")
    cfg = cfg_for(tmp_path, f"medmnist:{npz}?task=binary")
    spec = train_ensemble(cfg, folds=2).spec
    assert spec.ensemble.method == "folds" and [m.fold for m in spec.ensemble.members] == [0, 1]
    # train (24) + val (12) pooled into two folds; the official test split stays out
    assert spec.training_data.n_cases == {"train_val_pooled": 36, "folds": 2}
    assert sum(m.n_val for m in spec.ensemble.members) == 36
    assert all(m.split == "val_oof" for m in spec.metrics)
    kfold = json.loads((tmp_path / "run" / "splits" / "kfold.json").read_text())
    assert len(kfold["test"]) == 12
    vals = [set(f["val"]) for f in kfold["folds"]]
    assert not vals[0] & vals[1] and len(vals[0] | vals[1]) == 36


def test_multilabel_ensemble_predicts_mean_sigmoid(tmp_path, write_npz, cfg_for):
    npz = write_npz(tmp_path / "toy.npz", n_classes=3, multilabel=True)
    pkg = train_ensemble(cfg_for(tmp_path, f"medmnist:{npz}?task=multilabel"), seeds=2)
    p = Predictor(pkg).predict_many(_images(npz, "test", 3))
    assert p[0].probabilities.shape == (3,) and np.all(
        (p[0].probabilities > 0) & (p[0].probabilities < 1)
    )


def test_ensemble_options_are_checked(tmp_path, write_npz, cfg_for):
    cfg = cfg_for(tmp_path, f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary")
    with pytest.raises(InvalidInputError, match="exactly one"):
        train_ensemble(cfg, seeds=2, folds=2)
    with pytest.raises(InvalidInputError, match="at least 2"):
        train_ensemble(cfg, seeds=1)


def test_packages_written_before_ensembles_still_load_and_predict(tmp_path):
    from medsight.models.registry import build_network
    from medsight.models.spec import ArchitectureSpec, InputSpec, LabelSpec, ModelSpec, Task

    arch = ArchitectureSpec(
        name="smallcnn",
        args=dict(spatial_dims=2, in_channels=1, out_channels=2, channels=[4, 8]),
    )
    spec = ModelSpec(
        name="old", version="1", task=Task.BINARY, architecture=arch,
        input=InputSpec(spatial_ndim=2), preprocessing={"size": [8, 8]},
        labels=[LabelSpec(index=0, name="no"), LabelSpec(index=1, name="yes")], temperature=1.5,
    )  # fmt: skip
    pkg = ModelPackage.save(tmp_path / "old", spec, build_network(arch).state_dict())
    data = json.loads((pkg.path / "model.json").read_text())
    del data["ensemble"]  # model.json as trainers wrote it before the field existed
    (pkg.path / "model.json").write_text(json.dumps(data))
    old = ModelPackage.load(pkg.path)
    assert old.spec.ensemble is None
    p = Predictor(old).predict(Image(np.zeros((8, 8), np.float32))).probabilities
    assert p.shape == (2,) and p.sum() == pytest.approx(1.0)
