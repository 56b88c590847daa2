"""Transforms: typed preprocessing specs applied to Images (numpy or MONAI) and augmentation."""

from medsight.transforms.arrays import CaseArrays, case_arrays, encode_label
from medsight.transforms.augment import (
    AugmentConfig,
    AugmentParams,
    apply_params,
    augmentation_for,
    sample_params,
)
from medsight.transforms.preprocess import normalize_intensity, resize, to_monai, to_network_input

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "CaseArrays",
    "apply_params",
    "augmentation_for",
    "case_arrays",
    "encode_label",
    "normalize_intensity",
    "resize",
    "sample_params",
    "to_monai",
    "to_network_input",
]
