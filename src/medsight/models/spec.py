"""The typed contents of a ModelPackage's ``model.json`` (pydantic, no torch).

Everything a Predictor, a report or a model card needs about a trained model lives here:
architecture and its arguments, what input it accepts, how to preprocess it, its labels as coded
concepts with their clinical meaning (:mod:`medsight.core.significance`), operating thresholds,
calibration, the data it was trained on and its validated metrics with confidence intervals.

Examples
--------
>>> spec = ModelSpec(
...     name="demo", version="0.1.0", task=Task.BINARY,
...     architecture=ArchitectureSpec(name="smallcnn", args={"channels": [8, 16]}),
...     input=InputSpec(modalities=["US"], spatial_ndim=2, channels=1),
...     preprocessing=PreprocessingSpec(size=[28, 28], intensity=Intensity.SCALE_0_1),
...     labels=[LabelSpec(index=0, name="benign", significance=Significance.BENIGN),
...             LabelSpec(index=1, name="malignant",
...                       code=Code(value="86049000", scheme="SCT",
...                                 meaning="Malignant neoplasm, primary"),
...                       significance=Significance.ACTIONABLE, urgency=Urgency.URGENT)],
... )
>>> spec.labels[1].code.scheme, spec.task.value, spec.labels[1].urgency.value
('SCT', 'binary', 'urgent')
>>> ModelSpec.model_validate_json(spec.model_dump_json()) == spec
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medsight.core.codes import Code  # re-exported: models speak in coded concepts
from medsight.core.errors import InvalidInputError
from medsight.core.significance import Significance, Urgency, parse_meaning
from medsight.core.task import Task  # re-exported: one Task for data sets and models
from medsight.models.group_thresholds import GroupThresholds, check_group_thresholds
from medsight.models.roles import RoleSpec, check_roles
from medsight.models.tta import TTASpec

__all__ = [
    "MODEL_TASKS",
    "ArchitectureSpec",
    "CalibrationMethod",
    "CalibrationSpec",
    "Code",
    "EnsembleMember",
    "EnsembleSpec",
    "GroupThresholds",
    "InputSpec",
    "Intensity",
    "LabelSpec",
    "MetricValue",
    "ModelSpec",
    "PreprocessingSpec",
    "ReliabilitySpec",
    "RoleSpec",
    "Significance",
    "TTASpec",
    "Task",
    "TrainingDataSummary",
    "Urgency",
    "apply_meanings",
]

FORMAT_VERSION = 1
# what a model can predict (a data set's task may also be detection or none)
MODEL_TASKS = (
    Task.BINARY,
    Task.MULTICLASS,
    Task.ORDINAL,
    Task.MULTILABEL,
    Task.SEGMENTATION,
    Task.DENOISING,  # a cleaner image of the input; no labels
    Task.SYNTHESIS,  # generates images of a class; labels, no thresholds
    Task.DETECTION,  # boxes / circles with a score; labels = the foreground classes
    Task.RISK,  # an outcome from image embeddings + clinical variables (models.fusion)
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Intensity(StrEnum):
    """Intensity normalisation applied before the network (classification and segmentation).

    Applied by :func:`medsight.transforms.preprocess.normalize_intensity`, per channel or over
    all channels jointly as :attr:`PreprocessingSpec.per_channel` says.  A segmentation plan's
    ``normalization`` is one of ``CT_WINDOW`` (CT: clip to the data set's foreground 0.5/99.5
    percentiles, z-score with its foreground mean/std), ``ZSCORE_NONZERO`` (MR), ``ZSCORE`` or
    ``NONE``.  The legacy plan value ``"ct"`` reads as ``CT_WINDOW``.

    Examples
    --------
    >>> Intensity("ct") is Intensity.CT_WINDOW, Intensity("zscore_nonzero").value
    (True, 'zscore_nonzero')
    """

    NONE = "none"
    SCALE_0_1 = "scale_0_1"  # divide by the dtype's maximum (8/16-bit photographs, PNG)
    ZSCORE = "zscore"  # per image: (x - mean) / std over all voxels
    ZSCORE_NONZERO = "zscore_nonzero"  # per image over the non-zero voxels; zeros stay 0 (MR)
    CT_WINDOW = "ct_window"  # clip to [lower, upper] HU then z-score with dataset statistics
    DATASET_ZSCORE = "dataset_zscore"  # fixed mean/std from the training fingerprint
    # per image: (x - p_low) / (p_high - p_low), percentiles percentile_low / percentile_high
    # (default 0.5 / 99.5) of the input itself (denoisers: the noisy image, as at inference)
    ROBUST_PERCENTILE = "robust_percentile"

    @classmethod
    def _missing_(cls, value: object) -> Intensity | None:
        # plan.json files written before the enums were merged say "ct"
        return cls.CT_WINDOW if value == "ct" else None


class LabelSpec(_Frozen):
    """One output class (classification) or label value (segmentation)."""

    index: int = Field(ge=0)
    name: str
    code: Code | None = None
    category: Code | None = None  # segmentation: DICOM CID 7150 property category
    color: tuple[int, int, int] | None = None
    # clinical meaning (medsight.core.significance); None = not stated, triaged as indeterminate
    significance: Significance | None = None
    urgency: Urgency | None = None  # actionable labels only; None = triaged as urgent

    @model_validator(mode="after")
    def _urgency_actionable(self) -> LabelSpec:
        if self.urgency is not None and self.significance is not Significance.ACTIONABLE:
            raise ValueError(f"label {self.name!r}: only actionable labels have an urgency")
        return self

    def with_meaning(self, meaning: str) -> LabelSpec:
        """This label with ``meaning`` (``"benign"``, ``"actionable:urgent"`` ...)."""
        significance, urgency = parse_meaning(meaning)
        return self.model_copy(update={"significance": significance, "urgency": urgency})


def apply_meanings(labels: Sequence[LabelSpec], meanings: Mapping[str, str]) -> list[LabelSpec]:
    """``labels`` with the meanings given by label name (from ``--label-meaning NAME=MEANING``).

    Raises
    ------
    InvalidInputError
        A name that is not one of the labels, or an invalid meaning.
    """
    names = {label.name for label in labels}
    unknown = sorted(set(meanings) - names)
    if unknown:
        raise InvalidInputError(
            f"label meaning for {', '.join(map(repr, unknown))}",
            f"names no label; the labels are {', '.join(map(repr, sorted(names)))}",
        )
    return [
        label.with_meaning(meanings[label.name]) if label.name in meanings else label
        for label in labels
    ]


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
    # intended use beyond the header match (medsight.models.scope): outside it, withheld
    grey_only: bool = False  # trained on grey-scale images: colour content (Doppler) is out
    photometric: list[str] = Field(default_factory=list)  # allowed DICOM photometric; empty=any
    min_size: list[int] | None = None  # smallest in-plane size (pixels per spatial axis)
    max_size: list[int] | None = None  # largest size (pixels per spatial axis)
    # several series, one per channel (FLAIR / T1 / T2 ...), found in the study by their
    # headers and resampled onto the reference role's grid (medsight.models.roles); empty =
    # one series holding every channel (as before roles existed)
    roles: list[RoleSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _roles_fill_channels(self) -> InputSpec:
        check_roles(self.roles, self.channels)
        return self


class PreprocessingSpec(_Frozen):
    """Deterministic preprocessing, compiled to MONAI transforms by the inference code."""

    target_spacing: list[float] | None = None
    size: list[int] | None = None  # resize (classification) or patch size (segmentation)
    intensity: Intensity = Intensity.NONE
    intensity_args: dict[str, float] = Field(default_factory=dict)
    # z-score each channel on its own (segmentation, nnU-Net) instead of all channels jointly
    per_channel: bool = False
    channels: int = 1  # channels fed to the network (grey images may be repeated)


class CalibrationMethod(StrEnum):
    """How logits become probabilities (fitted on validation data, see ``CalibrationSpec``)."""

    NONE = "none"  # plain softmax / sigmoid
    TEMPERATURE = "temperature"  # params: {"temperature": T}
    VECTOR = "vector"  # params: {"scale": [...], "bias": [...]} (binary: 1 each, on the margin)
    ISOTONIC = "isotonic"  # params: {"x": [[...] per class], "y": [[...] per class]}


class ReliabilitySpec(_Frozen):
    """Validation reliability of the reported probability, in equal-width bins on [0, 1].

    ``kind`` says which probability: ``positive-class`` (binary: the positive label's
    probability against how often the label was present), ``top-label`` (multi-class /
    ordinal: the predicted class's probability against how often it was right) or
    ``per-label`` (multi-label, every case and label pooled).  ``confidence`` and ``observed``
    are ``None`` in empty bins.  See :mod:`medsight.models.reliability`.
    """

    kind: str
    edges: list[float]
    count: list[int]
    confidence: list[float | None]
    observed: list[float | None]
    ece: float
    n: int
    split: str = "val"
    how: str = ""  # e.g. "out-of-fold: 5-fold cross-fitted calibration within validation"

    @model_validator(mode="after")
    def _lengths(self) -> ReliabilitySpec:
        k = len(self.edges) - 1
        if k < 1 or not len(self.count) == len(self.confidence) == len(self.observed) == k:
            raise ValueError("reliability bins: edges must have one more entry than the bins")
        return self


class CalibrationSpec(_Frozen):
    """The fitted calibration map and how well it did (see :mod:`medsight.models.calibration`).

    ``converged`` is False when the chosen method's fit failed (e.g. a temperature at the edge
    of its search range); ``note`` says what was tried and why this method was chosen;
    ``cv_nll`` holds each candidate's held-out negative log-likelihood.
    """

    method: CalibrationMethod
    params: dict[str, Any] = Field(default_factory=dict)
    converged: bool = True
    note: str = ""
    n: int | None = None  # validation cases it was fitted on
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    cv_nll: dict[str, float] = Field(default_factory=dict)
    reliability: ReliabilitySpec | None = None

    @model_validator(mode="after")
    def _params(self) -> CalibrationSpec:
        p = self.params
        if self.method is CalibrationMethod.TEMPERATURE:
            if not float(p.get("temperature", 0)) > 0:
                raise ValueError("temperature calibration needs a positive params.temperature")
        elif self.method is CalibrationMethod.VECTOR:
            if len(p.get("scale", [])) == 0 or len(p["scale"]) != len(p.get("bias", [])):
                raise ValueError("vector calibration needs params.scale and params.bias alike")
        elif self.method is CalibrationMethod.ISOTONIC:
            xs, ys = p.get("x", []), p.get("y", [])
            if (
                len(xs) == 0
                or len(xs) != len(ys)
                or any(len(a) == 0 or len(a) != len(b) for a, b in zip(xs, ys, strict=True))
            ):
                raise ValueError("isotonic calibration needs params.x and params.y alike")
        return self


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


class EnsembleMember(_Frozen):
    """One member of a seed / fold ensemble (:mod:`medsight.models.ensemble`)."""

    index: int = Field(ge=0)
    seed: int | None = None
    fold: int | None = None  # k-fold ensembles: the fold this member held out
    temperature: float = Field(gt=0)  # fitted on the member's own validation / held-out fold
    val_auc: float | None = None  # the member's validation metric (AUC, macro where several)
    n_val: int = Field(0, ge=0)


class EnsembleSpec(_Frozen):
    """How an ensemble package was made: its members and where its threshold was fitted."""

    method: str = Field(pattern=r"^(seeds|folds)$")
    members: list[EnsembleMember] = Field(min_length=2)
    threshold_fitted_on: str = ""  # e.g. "pooled out-of-fold predictions (n=546)"
    explanations: str = ""  # how the OOD gate and Grad-CAM use the members


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
    # binary: per-group thresholds, used only where a case's group is known
    group_thresholds: GroupThresholds | None = None
    temperature: float | None = None  # temperature-only packages; ``calibration`` wins
    calibration: CalibrationSpec | None = None
    training_data: TrainingDataSummary | None = None
    metrics: list[MetricValue] = Field(default_factory=list)
    intended_use: str = ""
    limitations: str = ""
    seed: int | None = None
    ensemble: EnsembleSpec | None = None  # architecture "ensemble": its members
    # classifiers: test-time views and the validation choice (medsight.models.tta); None in
    # packages written before it: the identity view only
    tta: TTASpec | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("task")
    @classmethod
    def _model_task(cls, task: Task) -> Task:
        if task not in MODEL_TASKS:
            raise ValueError(
                f"a model predicts one of {[t.value for t in MODEL_TASKS]}, not {task.value!r}"
            )
        return task

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
        indices = sorted(lab.index for lab in self.labels)
        if self.task is Task.DETECTION and (not indices or indices != list(range(len(indices)))):
            raise ValueError("a detection model's labels are its foreground classes, 0..n-1")
        if self.group_thresholds is not None:
            check_group_thresholds(
                self.group_thresholds, self.task.value, self.label_names, self.thresholds
            )
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError("temperature must be positive")
        cal = self.calibration
        if (
            cal is not None
            and self.temperature is not None
            and (
                cal.method is not CalibrationMethod.TEMPERATURE
                or abs(float(cal.params["temperature"]) - self.temperature) > 1e-9
            )
        ):
            raise ValueError("temperature and calibration disagree; set temperature to null")
        _check_ensemble(self)
        _check_tta(self)
        return self

    @property
    def label_names(self) -> list[str]:
        """Label names in index order."""
        return [label.name for label in sorted(self.labels, key=lambda lab: lab.index)]


def _check_tta(spec: ModelSpec) -> None:
    """Test-time views belong to classifiers and flip only the input's spatial axes."""
    if spec.tta is None:
        return
    if spec.task not in (Task.BINARY, Task.MULTICLASS, Task.ORDINAL, Task.MULTILABEL):
        raise ValueError(f"tta is for classifiers, not {spec.task.value} models")
    bad = [a for view in spec.tta.flips for a in view if a >= spec.input.spatial_ndim]
    if bad:
        raise ValueError(
            f"tta flips spatial axes {sorted(set(bad))}; the input has "
            f"{spec.input.spatial_ndim} spatial axes"
        )


def _check_ensemble(spec: ModelSpec) -> None:
    """An ``ensemble`` architecture and the ``ensemble`` field describe the same members."""
    is_ensemble = spec.architecture.name.lower() == "ensemble"
    if spec.ensemble is None:
        if is_ensemble:
            raise ValueError("architecture 'ensemble' needs the ensemble field (its members)")
        return
    if not is_ensemble:
        raise ValueError("the ensemble field needs architecture 'ensemble'")
    members = spec.architecture.args.get("members", [])
    temps = [float(t) for t in spec.architecture.args.get("temperatures", [])]
    listed = spec.ensemble.members
    if len(members) != len(listed) or [m.index for m in listed] != list(range(len(listed))):
        raise ValueError(
            f"ensemble lists {len(listed)} members (indices 0..n-1 in order); the architecture "
            f"has {len(members)}"
        )
    if len(temps) != len(listed) or any(
        abs(t - m.temperature) > 1e-9 for t, m in zip(temps, listed, strict=True)
    ):
        raise ValueError("ensemble member temperatures disagree with the architecture's")
    if spec.calibration is not None or spec.temperature is not None:
        raise ValueError(
            "an ensemble is calibrated per member; set calibration and temperature to null"
        )
