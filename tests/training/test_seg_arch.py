"""``--arch`` for segmentation: each network gets a patch it accepts, and trains on it."""

from __future__ import annotations

import pytest

from medsight.core.errors import InvalidInputError
from medsight.inference.segment import Segmenter
from medsight.models import ModelPackage
from medsight.training.plan import make_plan, plan_for_network, plan_from_dataset
from medsight.training.segmentation import (
    SegTrainConfig,
    load_preprocessed,
    preprocess_dataset,
    train_segmentation,
)

from .seg_synthetic import blob_dataset, tiny

MULTIPLE = {"unet": None, "segresnet": 8, "unetr": 16, "swinunetr": 32}


@pytest.mark.parametrize(
    ("arch", "ndim"),
    [
        ("dynunet", 2),
        ("unet", 2),
        ("segresnet", 3),
        pytest.param("unetr", 3, marks=pytest.mark.slow),
        ("swinunetr", 2),
        pytest.param("swinunetr", 3, marks=pytest.mark.slow),
    ],
)
def test_each_arch_gets_a_valid_patch_and_trains(tmp_path, arch, ndim):
    ds = blob_dataset(ndim, n=3, size=12)
    base = tiny(plan_from_dataset(ds))
    plan = plan_for_network(base, arch)
    if arch == "dynunet":
        assert plan == base
    else:
        assert plan.network == arch
    m = MULTIPLE.get(arch)
    if m:
        assert all(
            s % m == 0 and s >= b for s, b in zip(plan.patch_size, base.patch_size, strict=True)
        )
    assert 2 <= plan.batch_size <= base.batch_size
    plan.check_patch_size()
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp_path / "p.npz"))
    cfg = SegTrainConfig(max_steps=1, val_every=1, device="cpu")
    res = train_segmentation(data, plan, cfg, tmp_path / "run", name="blobs")
    pkg = ModelPackage.load(res.package)
    assert pkg.spec.architecture.name == plan.network
    assert Segmenter(pkg, device="cpu")(ds[0].image()).mask.shape == (12,) * ndim


def test_rounding_up_keeps_the_batch_voxels():
    plan = make_plan(spacings=[[1.0, 1.0]], shapes=[[40, 24]], label_names={0: "b", 1: "x"})
    plan = plan.model_copy(update={"batch_size": 16})
    swin = plan_for_network(plan, "swinunetr")
    assert swin.patch_size == [64, 32]
    assert swin.batch_size * 64 * 32 <= 16 * 40 * 24 and swin.batch_size >= 2


def test_an_invalid_patch_for_the_network_names_plan_json():
    plan = make_plan(spacings=[[1.0, 1.0]], shapes=[[40, 24]], label_names={0: "b", 1: "x"})
    bad = plan.model_copy(update={"network": "unetr"})
    with pytest.raises(InvalidInputError) as err:
        bad.check_patch_size("run/plan.json")
    msg = str(err.value)
    assert "run/plan.json" in msg and "unetr" in msg and "multiple of 16" in msg
    assert "[48, 32]" in msg
    small = plan.model_copy(update={"network": "swinunetr", "patch_size": [32, 32]})
    with pytest.raises(InvalidInputError, match=r"64 or more \(e.g. patch_size \[64, 32\]\)"):
        small.check_patch_size()
