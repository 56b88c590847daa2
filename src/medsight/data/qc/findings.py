"""What a quality check reports: a :class:`Finding` of a :class:`CheckKind` and a severity.

Examples
--------
>>> f = Finding(kind="exact_duplicate", severity="warning", message="2 identical images",
...             files=["a.png", "b.png"])
>>> f.kind, f.severity
(<CheckKind.EXACT_DUPLICATE: 'exact_duplicate'>, <Severity.WARNING: 'warning'>)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["CheckKind", "Finding", "Severity"]


class Severity(StrEnum):
    """How much a finding matters: errors break training or evaluation, warnings bias them."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class CheckKind(StrEnum):
    """The kinds of problem the quality report looks for."""

    UNREADABLE = "unreadable"
    MISSING_FILE = "missing_file"
    ORPHAN_FILE = "orphan_file"
    DUPLICATE_ROW = "duplicate_row"
    BAD_ANNOTATION = "bad_annotation"
    MISSING_LABEL = "missing_label"
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    SPLIT_LEAKAGE = "split_leakage"
    CONFLICTING_LABELS = "conflicting_labels"
    PATIENT_IN_SEVERAL_SPLITS = "patient_in_several_splits"
    SEVERAL_IMAGES_PER_PATIENT = "several_images_per_patient"
    MASK_SHAPE_MISMATCH = "mask_shape_mismatch"
    MASK_GEOMETRY_MISMATCH = "mask_geometry_mismatch"
    MASK_UNREADABLE = "mask_unreadable"
    EMPTY_MASK = "empty_mask"
    MASK_VALUES = "mask_values"
    BOX_OUT_OF_IMAGE = "box_out_of_image"
    LABEL_IMBALANCE = "label_imbalance"
    DTYPE_MIX = "dtype_mix"
    CHANNEL_MIX = "channel_mix"
    INTENSITY_SCALE_MIX = "intensity_scale_mix"
    INTENSITY_OUTLIER = "intensity_outlier"
    SIZE_OUTLIER = "size_outlier"
    SPACING_OUTLIER = "spacing_outlier"
    SPACING_MIX = "spacing_mix"
    ORIENTATION_MIX = "orientation_mix"
    PROTOCOL_VARIABILITY = "protocol_variability"
    MISSING_ATTRIBUTE = "missing_attribute"


class Finding(BaseModel):
    """One problem found in a data set, naming the files concerned."""

    kind: CheckKind
    severity: Severity
    message: str
    files: list[str] = Field(default_factory=list)
    case_ids: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
