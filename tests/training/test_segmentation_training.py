"""Tiny 2D and 3D segmentation training runs, the package they write, and resuming."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsight.core.errors import InvalidInputError
from medsight.inference.segment import Segmenter
from medsight.models import ModelPackage, Task
from medsight.training.plan import plan_from_dataset
from medsight.training.segmentation import (
    SegTrainConfig,
    load_preprocessed,
    preprocess_dataset,
    train_segmentation,
)

from .seg_synthetic import blob_dataset, tiny


@pytest.mark.parametrize("ndim", [2, 3])
def test_tiny_training_writes_a_working_package(tmp_path, ndim):
    ds = blob_dataset(ndim)
    plan = tiny(plan_from_dataset(ds))
    pre = preprocess_dataset(ds, plan, tmp_path / "preprocessed.npz")
    data = load_preprocessed(pre)
    assert data.part("val") == [2, 5]
    cfg = SegTrainConfig(max_steps=3, val_every=2, device="cpu")
    res = train_segmentation(data, plan, cfg, tmp_path / "run", name="blobs")
    assert res.steps == 3 and [h["step"] for h in res.history] == [2, 3]
    pkg = ModelPackage.load(res.package)
    assert pkg.spec.task is Task.SEGMENTATION
    assert [lab.name for lab in pkg.spec.labels] == list(plan.label_names.values())[1:]
    assert all(lab.color for lab in pkg.spec.labels)
    assert (pkg.path / "plan.json").is_file()
    img = ds[0].image()
    out = Segmenter(pkg, device="cpu")(img, probabilities=True)
    assert out.mask.shape == img.shape
    assert np.array_equal(out.mask.affine, img.affine)
    assert out.probabilities.shape == (*img.shape, plan.n_classes)
    assert np.allclose(out.probabilities.sum(-1), 1.0, atol=1e-4)


def test_resume_continues_from_the_latest_checkpoint(tmp_path):
    ds = blob_dataset(2, n=3)
    plan = tiny(plan_from_dataset(ds))
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp_path / "p.npz"))
    first = train_segmentation(
        data, plan, SegTrainConfig(max_steps=2, val_every=1, device="cpu"), tmp_path
    )
    again = train_segmentation(
        data, plan, SegTrainConfig(max_steps=4, val_every=1, device="cpu"), tmp_path
    )
    assert first.steps == 2 and again.steps == 4
    assert [h["step"] for h in again.history] == [1, 2, 3, 4]


def test_quantized_preprocessing_round_trip(tmp_path):
    ds = blob_dataset(2, n=3)
    plan = plan_from_dataset(ds)
    exact = load_preprocessed(preprocess_dataset(ds, plan, tmp_path / "a.npz"))
    small = load_preprocessed(preprocess_dataset(ds, plan, tmp_path / "b.npz", quantize=True))
    for a, b in zip(exact.images, small.images, strict=True):
        span = float(a.max() - a.min())
        assert np.abs(a - b).max() <= span / 510 + 1e-2  # float16 of `a` adds its own rounding
    meta = json.loads(np.load(tmp_path / "b.npz")["meta"].tobytes())
    assert meta["splits"] == ["train", "train", "val"]


def test_training_needs_validation_cases(tmp_path):
    ds = blob_dataset(2, n=2)
    ds = ds.with_cases([c.replace(split=None) for c in ds])
    plan = tiny(plan_from_dataset(ds))
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp_path / "p.npz"))
    with pytest.raises(InvalidInputError, match="validation"):
        train_segmentation(data, plan, SegTrainConfig(max_steps=1, device="cpu"), tmp_path)


def test_other_networks_are_a_plan_value(tmp_path):
    network = "unet"
    ds = blob_dataset(2, n=3, size=32)
    plan = tiny(plan_from_dataset(ds)).model_copy(update={"network": network})
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp_path / "p.npz"))
    res = train_segmentation(data, plan, SegTrainConfig(max_steps=1, device="cpu"), tmp_path)
    pkg = ModelPackage.load(res.package)
    assert pkg.spec.architecture.name == network
    assert Segmenter(pkg, device="cpu")(ds[0].image()).mask.shape == (32, 32)


@pytest.mark.parametrize("network", ["segresnet", "unetr", "swinunetr"])
def test_transformer_and_segresnet_arguments_build(network):
    import torch

    from medsight.models.registry import build_network
    from medsight.models.spec import ArchitectureSpec
    from medsight.training.plan import make_plan

    plan = make_plan(spacings=[[1.0, 1.0]], shapes=[[64, 64]], label_names={0: "b", 1: "x"})
    plan = plan.model_copy(update={"network": network})
    net = build_network(ArchitectureSpec(name=network, args=plan.network_args())).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_trainer_writes_an_ood_reference_the_segmenter_scores(tmp_path):
    from medsight.models.ood import OodReference

    ds = blob_dataset(2, n=40)
    plan = tiny(plan_from_dataset(ds))
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp_path / "preprocessed.npz"))
    assert len(data.part("val")) >= 10
    res = train_segmentation(
        data, plan, SegTrainConfig(max_steps=2, val_every=2, device="cpu"), tmp_path / "run"
    )
    pkg = ModelPackage.load(res.package)
    meta = pkg.spec.extra["ood"]
    assert meta["n_val"] == len(data.part("val")) and meta["layer"].startswith("bottleneck")
    ref = OodReference.load(pkg.path, meta)
    seg = Segmenter(pkg, device="cpu")
    inside = ref.score(np.stack([seg(ds[i].image(), features=True).features for i in range(5)]))
    odd = ds[0].image().with_array(np.full(ds[0].image().shape, 50.0, np.float32))
    outside = ref.score(seg(odd, features=True).features[None])
    assert outside[0] > np.median(inside)
