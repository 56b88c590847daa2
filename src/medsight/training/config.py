"""Typed configuration of classification training (written as ``config.json`` in the run).

Examples
--------
>>> cfg = ClassifyConfig(data="medmnist:breastmnist.npz", out="runs/breast", epochs=5)
>>> cfg.arch, cfg.imbalance.value, cfg.threshold.value
('smallcnn', 'weighted_loss', 'youden')
>>> ClassifyConfig.model_validate_json(cfg.model_dump_json()) == cfg
True
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medsight.core.significance import parse_meaning
from medsight.models.tta import TTAMode
from medsight.training.balance import Balance

__all__ = ["Balance", "ClassifyConfig", "Imbalance", "TTAMode", "ThresholdMethod"]


class Imbalance(StrEnum):
    """How rare classes are given weight."""

    NONE = "none"
    WEIGHTED_LOSS = "weighted_loss"  # cross-entropy weights ~ 1/sqrt(class frequency)
    BALANCED_SAMPLER = "balanced_sampler"  # sample every class equally often


class ThresholdMethod(StrEnum):
    """How the binary operating threshold is chosen on validation data."""

    YOUDEN = "youden"  # maximise sensitivity + specificity - 1
    ACCURACY = "accuracy"  # maximise accuracy
    HALF = "half"  # 0.5 on the calibrated probability


class ClassifyConfig(BaseModel):
    """Everything that defines a classification training run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: str  # data set spec for medsight.data.load_dataset, e.g. "medmnist:path.npz"
    out: Path
    splits: Path | None = None  # a splits.json (medsight split); default: the data set's own
    arch: str = "smallcnn"
    arch_args: dict[str, Any] = Field(default_factory=dict)  # merged over the defaults
    size: list[int] | None = None  # resize; default: the images' own size, capped (128 / 64)
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(64, ge=1)  # global: split over torchrun's processes
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(10, ge=1)  # early stopping on the validation metric
    seed: int = 0
    imbalance: Imbalance = Imbalance.WEIGHTED_LOSS
    augment: bool = True
    threshold: ThresholdMethod = ThresholdMethod.YOUDEN
    # test-time flips (medsight.training.tta): auto = only where validation shows a gain
    tta: TTAMode = TTAMode.AUTO
    init: Path | None = None  # a ModelPackage to start from
    pretrained: Path | None = None  # a self-supervised encoder checkpoint (medsight.training.ssl)
    freeze_epochs: int = Field(0, ge=0)  # epochs with the encoder frozen (head only)
    resume: bool = False
    max_cases: int | None = Field(None, ge=2)  # per split, for smoke tests
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    progress: bool = True
    name: str | None = None  # package name; default "<dataset>-<arch>"
    license: str | None = None  # of the training data; default from the adapter when known
    n_resamples: int = Field(1000, ge=10)  # bootstrap resamples for the validation CIs
    # label name -> clinical meaning ("normal", "benign", "actionable:urgent" ...), see
    # medsight.core.significance; a label left out is "not stated" (triaged as indeterminate)
    label_meanings: dict[str, str] = Field(default_factory=dict)
    # a folder from `medsight synthesize`: its images join the training split only
    synthetic: Path | None = None
    synthetic_ratio: float = Field(0.5, ge=0)  # synthetic images per real training image
    # bias mitigation over a case attribute (medsight.training.balance): balance its
    # (group, label) cells in training, and / or fit per-group thresholds on validation
    group: str | None = None  # the attribute, e.g. "sex"
    balance: Balance = Balance.NONE
    group_thresholds: bool = False
    # stop after the epoch that brings the training seconds to this (architecture search)
    time_budget_s: float | None = Field(None, gt=0)

    @field_validator("label_meanings")
    @classmethod
    def _meanings(cls, meanings: dict[str, str]) -> dict[str, str]:
        for meaning in meanings.values():
            parse_meaning(meaning)
        return meanings

    @model_validator(mode="after")
    def _one_init(self) -> ClassifyConfig:
        if self.init is not None and self.pretrained is not None:
            raise ValueError("give either init (a package) or pretrained (an SSL encoder)")
        if (self.balance is not Balance.NONE or self.group_thresholds) and not self.group:
            raise ValueError("balance and group_thresholds need group (the case attribute)")
        return self
