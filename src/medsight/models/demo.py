"""A random-weight classification package for smoke tests, demos and load benchmarks.

Its outputs mean nothing (the weights are random, seeded); it exists so that the whole path
from a study to a report can be exercised in seconds without a trained model.

Examples
--------
>>> import tempfile, pathlib
>>> pkg = demo_classifier(pathlib.Path(tempfile.mkdtemp()))
>>> pkg.id, pkg.spec.input.modalities
('tiny-ct@0.0.1', ['CT', 'MR', 'OT'])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medsight.core.codes import NEOPLASM
from medsight.models.package import ModelPackage
from medsight.models.registry import build_network
from medsight.models.spec import (
    ArchitectureSpec,
    InputSpec,
    Intensity,
    LabelSpec,
    ModelSpec,
    PreprocessingSpec,
    Significance,
    Task,
    Urgency,
)

__all__ = ["demo_classifier"]


def demo_classifier(
    folder: Path,
    name: str = "tiny-ct",
    modalities: Sequence[str] = ("CT", "MR", "OT"),
    *,
    seed: int = 0,
) -> ModelPackage:
    """Save a 2D binary package (MONAI Classifier on 16x16 inputs) as ``folder / name``."""
    import torch

    torch.manual_seed(seed)
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
            LabelSpec(index=0, name="normal", significance=Significance.NORMAL),
            LabelSpec(
                index=1,
                name="tumour",
                code=NEOPLASM,
                significance=Significance.ACTIONABLE,
                urgency=Urgency.URGENT,
            ),
        ],
        thresholds={"tumour": 0.5},
        intended_use="Demonstration and test fixture only: random weights, meaningless output.",
        seed=seed,
    )
    return ModelPackage.save(
        Path(folder) / name, spec, build_network(spec.architecture).state_dict()
    )
