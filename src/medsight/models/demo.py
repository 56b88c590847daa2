"""Tiny packages for smoke tests, demos and load benchmarks: a random-weight classifier and an
identity (or random) denoiser.

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

__all__ = ["demo_classifier", "demo_denoiser"]


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


def demo_denoiser(
    path: Path,
    *,
    name: str = "tiny-denoiser",
    version: str = "0.0.1",
    modalities: Sequence[str] = ("MR",),
    identity: bool = True,
    seed: int = 0,
) -> ModelPackage:
    """A 2-level U-Net denoising package saved at ``path``; with ``identity`` (zero weights,
    residual) its output equals its input, otherwise its seeded random weights change it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> demo_denoiser(pathlib.Path(tempfile.mkdtemp()) / "d").spec.task.value
    'denoising'
    """
    import torch

    arch = ArchitectureSpec(
        name="unet",
        args={
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 1,
            "channels": [4, 8],
            "strides": [2],
            "num_res_units": 1,
        },
    )
    torch.manual_seed(seed)
    state = build_network(arch).state_dict()
    if identity:
        state = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in state.items()}
    spec = ModelSpec(
        name=name,
        version=version,
        task=Task.DENOISING,
        architecture=arch,
        input=InputSpec(modalities=list(modalities), spatial_ndim=2, grey_only=True),
        preprocessing=PreprocessingSpec(),
        labels=[],
        intended_use="Demonstration and test fixture only: identity or random weights.",
        extra={"noise": {"model": "rician", "levels": [2.0, 10.0]}, "residual": True},
    )
    return ModelPackage.save(path, spec, state)
