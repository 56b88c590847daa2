"""Models: the network registry, ModelPackage and its typed spec.

``spec`` and ``package`` import no torch until weights are read or a network is built.
"""

from medsight.models.package import ModelPackage, PackageError, render_model_card
from medsight.models.registry import available_networks, build_network, register_network
from medsight.models.spec import (
    ArchitectureSpec,
    Code,
    InputSpec,
    Intensity,
    LabelSpec,
    MetricValue,
    ModelSpec,
    PreprocessingSpec,
    Task,
    TrainingDataSummary,
)

__all__ = [
    "ArchitectureSpec",
    "Code",
    "InputSpec",
    "Intensity",
    "LabelSpec",
    "MetricValue",
    "ModelPackage",
    "ModelSpec",
    "PackageError",
    "PreprocessingSpec",
    "Task",
    "TrainingDataSummary",
    "available_networks",
    "build_network",
    "register_network",
    "render_model_card",
]
