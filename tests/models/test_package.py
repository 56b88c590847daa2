"""ModelPackage: save/load round trip, checksum and spec validation, registry errors."""

from __future__ import annotations

import json

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
