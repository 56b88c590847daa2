"""The detection runner: a tiny RetinaNet trains on discs (2D) and spheres (3D) into a package."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsight.cli.app import main
from medsight.core.errors import InvalidInputError
from medsight.data import Splits, load_dataset
from medsight.data.detection import annotations_of
from medsight.inference.detect import Detector
from medsight.models.package import ModelPackage
from medsight.training.detect import DetectConfig, train_detector

from .detect_synthetic import disc_images, sphere_volumes

TINY = dict(block_inplanes=[8, 16, 32], fpn_channels=16, device="cpu", threads=1, lr=2e-3)


@pytest.fixture(scope="module")
def discs(tmp_path_factory):
    return disc_images(tmp_path_factory.mktemp("discs"))


@pytest.fixture(scope="module")
def run2d(discs, tmp_path_factory):
    out = tmp_path_factory.mktemp("run2d")
    cfg = DetectConfig(data=f"coco:{discs}", out=out, steps=30, val_every=15, **TINY)
    lines: list[str] = []
    return cfg, train_detector(cfg, log=lines.append), lines


def test_package_of_a_2d_run(run2d, discs):
    cfg, pkg, lines = run2d
    spec = ModelPackage.load(pkg.path).spec
    assert spec.task.value == "detection" and spec.label_names == ["disc"]
    assert spec.architecture.name == "retinanet" and spec.input.spatial_ndim == 2
    assert spec.preprocessing.size == [64, 64] and spec.preprocessing.intensity == "scale_0_1"
    assert 0 < spec.thresholds["score"] <= 1
    names = {m.name for m in spec.metrics}
    assert {"cpm", "sensitivity@0.25fp", "sensitivity@1fp", "sensitivity@4fp"} <= names
    assert all(m.split == "val" and m.ci_low <= m.value <= m.ci_high for m in spec.metrics)
    assert spec.extra["best_step"] in (15, 30)
    # patient-level split: written, shipped with the package, no patient in two parts
    splits = Splits.load(cfg.out / "splits.json")
    ds = load_dataset(f"coco:{discs}")
    assert splits.leaks(ds) == {} and len(splits.test) > 0
    assert (pkg.path / "splits.json").is_file()
    assert spec.training_data.n_cases["train"] == len(splits.folds[0].train)
    assert "not for screening" in spec.intended_use
    assert any("ETA" in line for line in lines)
    assert "sensitivity@1fp" in (pkg.path / "MODEL_CARD.md").read_text()
    log = json.loads((pkg.path / "training_log.json").read_text())
    assert [row["step"] for row in log] == [15, 30]


def test_resume_checks_the_config_and_continues(run2d):
    cfg, _, _ = run2d
    with pytest.raises(InvalidInputError, match="holds a checkpoint"):
        train_detector(cfg, log=lambda s: None)
    changed = cfg.model_copy(update={"resume": True, "lr": 1e-2})
    with pytest.raises(InvalidInputError, match="lr"):
        train_detector(changed, log=lambda s: None)
    lines: list[str] = []
    more = cfg.model_copy(update={"resume": True, "steps": 45})
    pkg = train_detector(more, log=lines.append)
    assert any("resumed at step 30" in line for line in lines)
    assert json.loads((pkg.path / "training_log.json").read_text())[-1]["step"] == 45


def test_data_without_boxes_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 255, (4, 16, 16)).astype(np.uint8)
        arrays[f"{split}_labels"] = np.zeros((4, 1), int)
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    cfg = DetectConfig(data=f"medmnist:{tmp_path / 'breastmnist.npz'}", out=tmp_path / "r", **TINY)
    with pytest.raises(InvalidInputError, match="carry no boxes"):
        train_detector(cfg, log=lambda s: None)
    with pytest.raises(ValueError, match="retinanet"):
        DetectConfig(data="x", out=tmp_path, arch="fasterrcnn")


def test_3d_path_finds_planted_spheres_in_index_space(tmp_path):
    """CT-like volumes at their own resolution: 32^3 training patches, sliding-window detection
    over the whole 48^3 volume (the route for lung-nodule CT)."""
    boxes = sphere_volumes(tmp_path / "ct", size=48)
    cfg = DetectConfig(
        data=f"boxes:{boxes}",
        out=tmp_path / "run3d",
        steps=40,
        val_every=20,
        batch_size=2,
        test_fraction=0.25,
        patch_size=[32, 32, 32],
        **(TINY | {"block_inplanes": [8, 16], "fpn_channels": 8}),
    )
    pkg = train_detector(cfg, log=lambda s: None)
    assert pkg.spec.input.spatial_ndim == 3 and pkg.spec.preprocessing.intensity == "zscore"
    assert pkg.spec.preprocessing.size is None  # not resized
    assert pkg.spec.extra["detector"]["patch_size"] == [32, 32, 32]
    ds = Splits.load(cfg.out / "splits.json").apply(load_dataset(f"boxes:{boxes}"))
    detector = Detector(pkg, device="cpu")
    hits = n = 0
    for case in (c for c in ds if c.split.value == "test" and c.label):
        image = case.image()
        (truth,) = annotations_of(case)
        assert image.array[tuple(round(v) for v in truth.region.center)] == 40.0  # index space
        found = detector.detect(image)
        assert found and all(d.region.ndim == 3 for d in found)
        assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
        for d in found:  # clipped to the volume
            lo, hi = d.region.box
            assert all(
                -0.5 <= a <= b <= s - 0.5 for a, b, s in zip(lo, hi, image.shape, strict=True)
            )
        sphere = type(truth.region)(truth.region.center, truth.region.size, "ellipse")
        hits += sphere.contains(found[0].region.center)
        n += 1
    assert n >= 2 and hits >= n - 1


def test_cli_train_detect(discs, tmp_path):
    out = tmp_path / "cli"
    rc = main(
        [
            "train", "detect", "--data", f"coco:{discs}", "--out", str(out), "--steps", "2",
            "--val-every", "2", "--width", "8", "--width", "16", "--device", "cpu",
            "--threads", "1", "--label-meaning", "disc=actionable:routine",
        ]
    )  # fmt: skip
    assert rc == 0
    spec = ModelPackage.load(out / "package").spec
    assert spec.labels[0].significance.value == "actionable"
    assert spec.architecture.args["block_inplanes"] == [8, 16]
    assert main(["train", "detect", "--data", f"coco:{discs}", "--out", str(out)]) == 2
