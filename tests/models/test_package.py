"""ModelPackage: save/load round trip, checksum and spec validation, registry errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsight.core import InvalidInputError
from medsight.models import (
    ArchitectureSpec,
    InputSpec,
    LabelSpec,
    ModelPackage,
    ModelSpec,
    PackageError,
    PreprocessingSpec,
    Task,
    build_network,
)


def _spec(**changes) -> ModelSpec:
    base = dict(
        name="tiny",
        version="0.0.1",
        task=Task.BINARY,
        architecture=ArchitectureSpec(
            name="classifier",
            args={"in_shape": [1, 16, 16], "classes": 2, "channels": [4, 8], "strides": [2, 2]},
        ),
        input=InputSpec(modalities=["US"], spatial_ndim=2),
        preprocessing=PreprocessingSpec(size=[16, 16]),
        labels=[LabelSpec(index=0, name="benign"), LabelSpec(index=1, name="malignant")],
        thresholds={"malignant": 0.4},
        seed=3,
    )
    base.update(changes)
    return ModelSpec(**base)


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    spec = _spec()
    net = build_network(spec.architecture).eval()
    pkg = ModelPackage.save(tmp_path / "pkg", spec, net.state_dict())
    assert {p.name for p in pkg.path.iterdir()} == {
        "model.json",
        "weights.safetensors",
        "weights.sha256",
        "MODEL_CARD.md",
    }
    loaded = ModelPackage.load(tmp_path / "pkg")
    assert loaded.spec == spec and loaded.id == "tiny@0.0.1"
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.build_network()(x), net(x))
    assert "malignant" in (pkg.path / "MODEL_CARD.md").read_text()


def test_tampered_weights_are_refused(tmp_path):
    spec = _spec()
    pkg = ModelPackage.save(tmp_path / "pkg", spec, build_network(spec.architecture).state_dict())
    weights = pkg.path / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="sha256"):
        ModelPackage.load(pkg.path)


def test_invalid_spec_names_the_field(tmp_path):
    spec = _spec()
    pkg = ModelPackage.save(tmp_path / "pkg", spec, build_network(spec.architecture).state_dict())
    raw = json.loads((pkg.path / "model.json").read_text())
    raw["task"] = "guessing"
    (pkg.path / "model.json").write_text(json.dumps(raw))
    with pytest.raises(PackageError, match="task"):
        ModelPackage.load(pkg.path)


def test_missing_file_and_existing_target(tmp_path):
    spec = _spec()
    sd = build_network(spec.architecture).state_dict()
    pkg = ModelPackage.save(tmp_path / "pkg", spec, sd)
    with pytest.raises(PackageError, match="already exists"):
        ModelPackage.save(tmp_path / "pkg", spec, sd)
    (pkg.path / "weights.sha256").unlink()
    with pytest.raises(PackageError, match="missing"):
        ModelPackage.load(pkg.path)


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    spec = _spec()
    other = _spec(
        architecture=ArchitectureSpec(
            name="classifier",
            args={"in_shape": [1, 16, 16], "classes": 2, "channels": [4, 16], "strides": [2, 2]},
        )
    )
    pkg = ModelPackage.save(tmp_path / "pkg", spec, build_network(other.architecture).state_dict())
    with pytest.raises(PackageError, match="do not fit"):
        pkg.build_network()


def test_registry_errors():
    with pytest.raises(InvalidInputError, match="not a registered network"):
        build_network(ArchitectureSpec(name="alexnet"))
    with pytest.raises(InvalidInputError, match="bad arguments"):
        build_network(ArchitectureSpec(name="unet", args={"nonsense": 1}))


def test_spec_rejects_duplicate_labels():
    with pytest.raises(ValueError, match="unique"):
        _spec(labels=[LabelSpec(index=0, name="a"), LabelSpec(index=0, name="b")])


def _seg_package(tmp_path, preprocessing=None, name="seg"):
    """A (tiny, not really segmenting) segmentation package with its plan.json."""
    from medsight.models.seg_plan import PLAN_FILE, SegmentationPlan

    plan = SegmentationPlan(
        spatial_ndim=2,
        modality="MR",
        target_spacing=[1.0, 1.0],
        median_shape=[16, 16],
        patch_size=[16, 16],
        batch_size=2,
        kernel_size=[[3, 3]] * 3,
        strides=[[1, 1]] + [[2, 2]] * 2,
        filters=[32, 64, 128],
        normalization="zscore_nonzero",
        label_names={0: "bg", 1: "x"},
    )
    spec = _spec(
        task=Task.SEGMENTATION,
        preprocessing=preprocessing if preprocessing is not None else plan.preprocessing(1),
        thresholds={},
    )
    sd = build_network(spec.architecture).state_dict()
    pkg = ModelPackage.save(
        tmp_path / name, spec, sd, extra_files={PLAN_FILE: plan.model_dump_json()}
    )
    return pkg, plan


def test_segmentation_preprocessing_comes_from_the_plan(tmp_path):
    from medsight.models.spec import Intensity

    pkg, plan = _seg_package(tmp_path)
    assert pkg.spec.preprocessing == plan.preprocessing(1)
    assert pkg.spec.preprocessing.intensity is Intensity.ZSCORE_NONZERO
    # a package written by an older trainer (zscore over all channels for a zscore_nonzero
    # plan): loads, with the plan's preprocessing
    raw = json.loads((pkg.path / "model.json").read_text())
    raw["preprocessing"] = plan.legacy_preprocessing(1).model_dump(mode="json")
    assert raw["preprocessing"]["intensity"] == "zscore"
    (pkg.path / "model.json").write_text(json.dumps(raw))
    assert ModelPackage.load(pkg.path).spec.preprocessing == plan.preprocessing(1)


def test_a_model_json_contradicting_the_plan_is_refused(tmp_path):
    pkg, plan = _seg_package(tmp_path)
    raw = json.loads((pkg.path / "model.json").read_text())
    raw["preprocessing"]["size"] = [32, 32]
    (pkg.path / "model.json").write_text(json.dumps(raw))
    with pytest.raises(PackageError) as err:
        ModelPackage.load(pkg.path)
    msg = str(err.value)
    assert str(pkg.path) in msg and "plan.json" in msg
    assert "[32, 32]" in msg and "[16, 16]" in msg  # both values
    # ... and such a package is never written
    bad = plan.preprocessing(1).model_copy(update={"target_spacing": [2.0, 2.0]})
    with pytest.raises(PackageError, match="contradicts"):
        _seg_package(tmp_path, preprocessing=bad, name="bad")
    assert not (tmp_path / "bad").exists()


def test_every_zoo_package_loads_with_its_plans_preprocessing():
    from pathlib import Path

    import medsight
    from medsight.models.seg_plan import PLAN_FILE, SegmentationPlan
    from medsight.models.spec import Intensity

    zoo = Path(medsight.__file__).parent / "zoo"
    folders = sorted(p for p in zoo.iterdir() if (p / "model.json").is_file())
    assert len(folders) >= 2
    for folder in folders:
        pkg = ModelPackage.load(folder)
        if (folder / PLAN_FILE).is_file():
            plan = SegmentationPlan.load(folder / PLAN_FILE)
            assert pkg.spec.preprocessing == plan.preprocessing(pkg.spec.input.channels)
    hippocampus = ModelPackage.load(zoo / "hippocampus-dynunet")
    assert hippocampus.spec.preprocessing.intensity is Intensity.ZSCORE_NONZERO


def test_model_card_of_a_label_less_image_model_has_no_decision_lines():
    from medsight.models.package import render_model_card
    from medsight.models.spec import ArchitectureSpec, InputSpec, ModelSpec, PreprocessingSpec
    from medsight.models.spec import Task as SpecTask

    spec = ModelSpec(
        name="den",
        version="1",
        task=SpecTask.DENOISING,
        architecture=ArchitectureSpec(name="unet"),
        input=InputSpec(spatial_ndim=2, modalities=["MR"]),
        preprocessing=PreprocessingSpec(),
        labels=[],
        extra={"noise": {"model": "rician", "levels": [2.0, 10.0]}},
    )
    card = render_model_card(spec)
    assert "- Task: denoising\n" in card and "labels:" not in card
    assert "Operating thresholds" not in card and "Calibration" not in card
    assert '- Noise model: {"model": "rician", "levels": [2.0, 10.0]}' in card


def test_of_task_refuses_a_package_of_another_task(tiny_classifier):
    from medsight.core.errors import InvalidInputError
    from medsight.inference.denoise import Denoiser
    from medsight.inference.detect import Detector
    from medsight.models.package import ModelPackage
    from medsight.models.spec import Task

    pkg = tiny_classifier()  # a loaded ModelPackage
    folder = pkg.path
    assert ModelPackage.of_task(folder, pkg.spec.task, "x").spec == pkg.spec
    assert ModelPackage.of_task(pkg, pkg.spec.task, "x") is pkg
    with pytest.raises(InvalidInputError, match="not a detector \\(task detection\\)"):
        Detector(pkg)
    with pytest.raises(InvalidInputError, match="not a denoiser"):
        Denoiser(folder)
    with pytest.raises(InvalidInputError, match=f"is a {pkg.spec.task.value} model, not seg"):
        ModelPackage.of_task(folder, Task.SEGMENTATION, "segmentation")


def test_model_card_warns_when_the_calibration_is_a_constant():
    """A calibration that maps every input to one probability (vector scale 0, fitted on a small
    validation split where the network carried no information) is said on the card."""
    from medsight.evaluation.calibration import fit_calibration
    from medsight.models.calibration import calibrated_probabilities, is_constant_map
    from medsight.models.package import render_model_card
    from medsight.models.spec import CalibrationSpec

    flat = _spec(
        calibration=CalibrationSpec(method="vector", params={"scale": [0.0], "bias": [0.4]})
    )
    assert "WARNING: this map gives every input the same probability" in render_model_card(flat)
    kept = _spec(
        calibration=CalibrationSpec(method="vector", params={"scale": [0.7], "bias": [0.4]})
    )
    assert "WARNING" not in render_model_card(kept)
    # the fit says so too when its chosen map is flat on the validation cases (seed 0: noise
    # logits, the held-out NLL picks a constant), and not when the map keeps a ranking (seed 1)
    for seed, flat_expected in ((0, True), (1, False)):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 60)
        z = np.stack([np.zeros(60), 8.0 * rng.normal(size=60)], 1)  # overconfident noise
        cal = fit_calibration(z, y, "binary")
        p = calibrated_probabilities(z, "binary", cal.to_spec())
        assert (float(np.ptp(p, 0).max()) < 1e-9) is flat_expected
        assert ("WARNING" in cal.note) is flat_expected
        assert is_constant_map(cal.to_spec()) is flat_expected
