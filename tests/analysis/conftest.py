"""Fixtures for the analysis tests: tiny model packages built in seconds."""

from __future__ import annotations

import pytest
import torch

from medsight.core.codes import NEOPLASM
from medsight.models import (
    ArchitectureSpec,
    InputSpec,
    Intensity,
    LabelSpec,
    ModelPackage,
    ModelSpec,
    PreprocessingSpec,
    Task,
    build_network,
)


@pytest.fixture
def tiny_classifier(tmp_path):
    """``tiny_classifier(name=..., modalities=...)``: a random-weight 2D binary package."""

    def _package(name="tiny-ct", modalities=("CT", "MR", "OT")) -> ModelPackage:
        torch.manual_seed(0)
        spec = ModelSpec(
            name=name,
            version="0.0.1",
            task=Task.BINARY,
            architecture=ArchitectureSpec(
                name="classifier",
                args={"in_shape": [1, 16, 16], "classes": 2, "channels": [4, 8], "strides": [2, 2]},
            ),
            input=InputSpec(modalities=list(modalities), spatial_ndim=2),
            preprocessing=PreprocessingSpec(size=[16, 16], intensity=Intensity.ZSCORE),
            labels=[
                LabelSpec(index=0, name="normal"),
                LabelSpec(index=1, name="tumour", code=NEOPLASM),
            ],
            thresholds={"tumour": 0.5},
            intended_use="Test fixture only.",
        )
        net = build_network(spec.architecture)
        return ModelPackage.save(tmp_path / name, spec, net.state_dict())

    return _package
