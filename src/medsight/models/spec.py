"""The typed contents of a ModelPackage's ``model.json`` (pydantic, no torch).

Everything a Predictor, a report or a model card needs about a trained model lives here:
architecture and its arguments, what input it accepts, how to preprocess it, its labels as coded
concepts, operating thresholds, calibration, the data it was trained on and its validated
metrics with confidence intervals.

Examples
--------
>>> spec = ModelSpec(
...     name="demo", version="0.1.0", task=Task.BINARY,
...     architecture=ArchitectureSpec(name="smallcnn", args={"channels": [8, 16]}),
...     input=InputSpec(modalities=["US"], spatial_ndim=2, channels=1),
...     preprocessing=PreprocessingSpec(size=[28, 28], intensity=Intensity.SCALE_0_1),
...     labels=[LabelSpec(index=0, name="benign"),
...             LabelSpec(index=1, name="malignant",
...                       code=Code(value="86049000", scheme="SCT",
...                                 meaning="Malignant neoplasm, primary"))],
... )
>>> spec.labels[1].code.scheme, spec.task.value
('SCT', 'binary')
>>> ModelSpec.model_validate_json(spec.model_dump_json()) == spec
True
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medsight.core.codes import Code  # re-exported: models speak in coded concepts

__all__ = [
    "ArchitectureSpec",
    "Code",
    "InputSpec",
    "Intensity",
    "LabelSpec",
    "MetricValue",
    "ModelSpec",
    "PreprocessingSpec",
    "Task",
    "TrainingDataSummary",
]

FORMAT_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Task(StrEnum):
    """What a model predicts."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    ORDINAL = "ordinal"
    MULTILABEL = "multilabel"
    SEGMENTATION = "segmentation"


class Intensity(StrEnum):
    """Intensity normalisation applied before the network."""

    NONE = "none"
    SCALE_0_1 = "scale_0_1"  # divide by the dtype's maximum (8/16-bit photographs, PNG)
    ZSCORE = "zscore"  # per image (MR), optionally within the foreground
    CT_WINDOW = "ct_window"  # clip to [lower, upper] HU then z-score with dataset statistics
    DATASET_ZSCORE = "dataset_zscore"  # fixed mean/std from the training fingerprint


class LabelSpec(_Frozen):
    """One output class (classification) or label value (segmentation)."""

    index: int = Field(ge=0)
    name: str
    code: Code | None = None
    category: Code | None = None  # segmentation: DICOM CID 7150 property category
    color: tuple[int, int, int] | None = None


class ArchitectureSpec(_Frozen):
    """Network registry id and its keyword arguments (see :mod:`medsight.models.registry`)."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class InputSpec(_Frozen):
    """What a model accepts: a mismatch is refused with a clear error, not a silly answer."""

    modalities: list[str] = Field(default_factory=list)  # empty = any
    spatial_ndim: int = Field(ge=2, le=3)
    channels: int = Field(default=1, ge=1)
    body_parts: list[str] = Field(default_factory=list)
    series_description_pattern: str | None = None  # regular expression, case-insensitive


class PreprocessingSpec(_Frozen):
    """Deterministic preprocessing, compiled to MONAI transforms by the inference code."""

    target_spacing: list[float] | None = None
    size: list[int] | None = None  # resize (classification) or patch size (segmentation)
    intensity: Intensity = Intensity.NONE
    intensity_args: dict[str, float] = Field(default_factory=dict)
    channels: int = 1  # channels fed to the network (grey images may be repeated)


class MetricValue(_Frozen):
    """A metric with its 95% confidence interval, on a named split."""

    name: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    split: str = "val"
    n: int | None = None


class TrainingDataSummary(_Frozen):
    """What the model learned from, for the model card and out-of-distribution checks."""

    dataset: str
    source: str = ""
    license: str = ""
    n_cases: dict[str, int] = Field(default_factory=dict)
    class_counts: dict[str, int] = Field(default_factory=dict)
    intensity_mean: float | None = None
    intensity_std: float | None = None
    spacing_median: list[float] | None = None
    size_median: list[int] | None = None


class ModelSpec(_Frozen):
    """The whole ``model.json``."""

    format_version: int = FORMAT_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    version: str
    task: Task
    architecture: ArchitectureSpec
    input: InputSpec
    preprocessing: PreprocessingSpec
    labels: list[LabelSpec]
    thresholds: dict[str, float] = Field(default_factory=dict)
    temperature: float | None = None
    training_data: TrainingDataSummary | None = None
    metrics: list[MetricValue] = Field(default_factory=list)
    intended_use: str = ""
    limitations: str = ""
    seed: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _indices_unique(cls, labels: list[LabelSpec]) -> list[LabelSpec]:
        indices = [label.index for label in labels]
        if len(set(indices)) != len(indices):
            raise ValueError(f"label indices must be unique, got {indices}")
        return labels

    @model_validator(mode="after")
    def _format(self) -> ModelSpec:
        if self.format_version > FORMAT_VERSION:
            raise ValueError(
                f"format_version {self.format_version} is newer than this medsight reads "
                f"({FORMAT_VERSION}); upgrade medsight"
            )
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError("temperature must be positive")
        return self

    @property
    def label_names(self) -> list[str]:
        """Label names in index order."""
        return [label.name for label in sorted(self.labels, key=lambda lab: lab.index)]
