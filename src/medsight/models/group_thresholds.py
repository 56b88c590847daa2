"""Group-aware operating points of a binary classifier, as ``model.json`` stores them.

A package may carry, besides its global threshold, one threshold per value of a case
attribute (e.g. ``sex``), fitted on validation predictions so that every group with enough
cases reaches the same sensitivity (:func:`medsight.evaluation.fairness.fit_group_thresholds`).
They are deterministic thresholds: unlike Fairlearn's ``ThresholdOptimizer``, which randomises
between two thresholds per group to hit its constraint exactly, a case's decision here never
depends on a coin flip, as a clinical decision must not.

They are applied (:func:`medsight.inference.decision.group_decisions`) only where the case's
attribute is known and has a fitted threshold; any other case gets the global threshold, and
the decision says which one was used.  A group is never guessed.

Examples
--------
>>> gt = GroupThresholds(attribute="sex", label="malignant", target_sensitivity=0.8,
...                      global_threshold=0.4, thresholds={"F": 0.35, "M": 0.45})
>>> gt.threshold_for("F"), gt.threshold_for(None), gt.threshold_for("X")
(0.35, None, None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["GroupThresholds", "check_group_thresholds"]


class GroupThresholds(BaseModel):
    """Per-group thresholds for the positive label of a binary model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attribute: str = Field(min_length=1)  # the case attribute, e.g. "sex"
    label: str  # the positive label the thresholds apply to
    method: str = "equal_sensitivity"  # each group's highest threshold reaching the target
    target_sensitivity: float = Field(ge=0, le=1)  # the global threshold's, on validation
    global_threshold: float = Field(ge=0, le=1)
    thresholds: dict[str, float] = Field(default_factory=dict)  # group value -> threshold
    # group value -> {"positives": .., "negatives": ..} on the fitting split
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    skipped: dict[str, str] = Field(default_factory=dict)  # group value -> why global is kept
    split: str = "val"

    @field_validator("thresholds")
    @classmethod
    def _in_unit_interval(cls, thresholds: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in thresholds.items() if not 0 <= v <= 1 or not k}
        if bad:
            raise ValueError(f"group thresholds must be in [0, 1] for named groups, got {bad}")
        return thresholds

    def threshold_for(self, value: object) -> float | None:
        """The group's threshold, or ``None`` (unknown value, or no threshold fitted)."""
        if value is None or str(value) == "":
            return None
        return self.thresholds.get(str(value))


def check_group_thresholds(
    gt: GroupThresholds, task: str, label_names: Sequence[str], thresholds: Mapping[str, float]
) -> None:
    """Raise ``ValueError`` unless ``gt`` fits the model: binary, the positive label, and the
    global threshold the package stores."""
    if task != "binary":
        raise ValueError("group thresholds are for binary models only")
    if len(label_names) < 2 or gt.label != label_names[1]:
        raise ValueError(f"group thresholds name label {gt.label!r}, not the positive label")
    stored = thresholds.get(gt.label, 0.5)
    if abs(stored - gt.global_threshold) > 1e-9:
        raise ValueError(
            f"group thresholds were fitted around threshold {gt.global_threshold}, but the "
            f"package's threshold for {gt.label!r} is {stored}"
        )
