"""The segmentation plan's data model (``plan.json``): what a segmentation network expects.

The plan is written by the planner (:mod:`medsight.training.plan`, nnU-Net's rules) and read by
training, inference and the report; it is applied to images and undone on predictions by
:mod:`medsight.transforms.seg_plan`.  This module holds the data only (pydantic, no torch).
"""

from __future__ import annotations

import math
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from medsight.core.errors import InvalidInputError, UnreadableFileError
from medsight.io.atomic import write_text_atomic

__all__ = [
    "PLAN_FILE",
    "SEG_ARCHES",
    "SEG_NETWORK",
    "IntensityStats",
    "Normalization",
    "SegmentationPlan",
]

PLAN_FILE = "plan.json"
#: Registry name of MONAI's DynUNet with each parameter stored once
#: (see :mod:`medsight.models.dynunet`).
SEG_NETWORK = "dynunet_single"
#: ``medsight train segment --arch`` choice -> the plan's ``network`` (registry name).
SEG_ARCHES = {
    "dynunet": SEG_NETWORK,
    "unet": "unet",
    "segresnet": "segresnet",
    "unetr": "unetr",
    "swinunetr": "swinunetr",
}
#: Networks whose every patch side must be a multiple of a fixed size: SegResNet down-samples
#: 3 times, UNETR cuts 16-voxel tokens, SwinUNETR needs ``patch_size ** 5`` = 32 (MONAI).
_PATCH_MULTIPLE = {"segresnet": 8, "unetr": 16, "swinunetr": 32}


class Normalization(StrEnum):
    """Per-modality intensity normalisation."""

    CT = "ct"  # clip to data-set foreground percentiles, z-score with data-set stats
    ZSCORE_NONZERO = "zscore_nonzero"  # per image, over non-zero voxels (MR)
    ZSCORE = "zscore"  # per image, all voxels
    NONE = "none"


class IntensityStats(BaseModel):
    """Foreground intensity statistics of the training data (used by CT normalisation)."""

    mean: float = 0.0
    std: float = 1.0
    percentile_00_5: float = 0.0
    percentile_99_5: float = 0.0


class SegmentationPlan(BaseModel):
    """Everything training and inference need to configure themselves (``plan.json``)."""

    version: int = 1
    dataset: str = ""
    spatial_ndim: int = Field(ge=2, le=3)
    modality: str = ""
    orientation: str | None = None  # the training data's axis codes (3D); inputs are reoriented
    target_spacing: list[float]
    median_shape: list[int]  # at target spacing
    patch_size: list[int]
    batch_size: int = Field(ge=1)
    kernel_size: list[list[int]]
    strides: list[list[int]]
    filters: list[int]
    normalization: Normalization
    intensity: IntensityStats = Field(default_factory=IntensityStats)
    label_names: dict[int, str]
    deep_supervision: bool = True
    network: str = SEG_NETWORK

    @property
    def n_classes(self) -> int:
        """Number of output channels (background included)."""
        return max(self.label_names) + 1

    def patch_multiples(self) -> list[int]:
        """What each patch side must be a multiple of for ``network``.

        DynUNet and UNet: the product of the planned strides on that axis; SegResNet 8,
        UNETR 16, SwinUNETR 32.
        """
        fixed = _PATCH_MULTIPLE.get(self.network.lower())
        if fixed is not None:
            return [fixed] * self.spatial_ndim
        return [math.prod(s[a] for s in self.strides) for a in range(self.spatial_ndim)]

    def valid_patch_size(self) -> list[int]:
        """``patch_size`` rounded up to the nearest size ``network`` accepts.

        SwinUNETR's deepest level (1/32 of the patch) is instance-normalised, so it needs more
        than one voxel: a patch of 32 on every side gets its first side doubled.
        """
        multiples = self.patch_multiples()
        patch = [math.ceil(s / m) * m for s, m in zip(self.patch_size, multiples, strict=True)]
        if self._one_voxel_bottleneck(patch):
            patch[0] *= 2
        return patch

    def _one_voxel_bottleneck(self, patch: list[int]) -> bool:
        return self.network.lower() == "swinunetr" and all(s <= 32 for s in patch)

    def check_patch_size(self, source: str | os.PathLike[str] = PLAN_FILE) -> None:
        """Raise :class:`InvalidInputError` (naming ``source``) if ``network`` rejects the patch.

        Examples
        --------
        >>> p = SegmentationPlan(spatial_ndim=2, target_spacing=[1.0, 1.0], median_shape=[40, 40],
        ...     patch_size=[40, 40], batch_size=2, kernel_size=[[3, 3]] * 3,
        ...     strides=[[1, 1]] + [[2, 2]] * 2, filters=[32, 64, 128],
        ...     normalization="zscore", label_names={0: "bg", 1: "x"}, network="unetr")
        >>> p.patch_multiples(), p.valid_patch_size()
        ([16, 16], [48, 48])
        """
        if len(self.patch_size) != self.spatial_ndim:
            raise InvalidInputError(
                source, f"patch_size {self.patch_size} is not {self.spatial_ndim}-dimensional"
            )
        multiples = self.patch_multiples()
        if any(s % m for s, m in zip(self.patch_size, multiples, strict=True)):
            each = (
                f"each side must be a multiple of {multiples[0]}"
                if len(set(multiples)) == 1
                else f"the sides must be multiples of {multiples} (the strides' product)"
            )
            raise InvalidInputError(
                source,
                f"patch_size {self.patch_size} is invalid for network {self.network}: "
                f"{each} (e.g. patch_size {self.valid_patch_size()})",
            )
        if self._one_voxel_bottleneck(self.patch_size):
            raise InvalidInputError(
                source,
                f"patch_size {self.patch_size} is invalid for network {self.network}: at least "
                f"one side must be 64 or more (e.g. patch_size {self.valid_patch_size()})",
            )

    def network_args(self, in_channels: int = 1) -> dict[str, Any]:
        """Keyword arguments (MONAI's own names) of ``network`` for this plan.

        ``dynunet_single`` (the default; DynUNet) uses the planned kernels, strides and
        filters with deep supervision; ``unet``, ``segresnet``, ``unetr`` and ``swinunetr``
        (the latter needs ``einops``) are built from the same depth and patch size.

        Examples
        --------
        >>> p = SegmentationPlan(spatial_ndim=2, target_spacing=[1.0, 1.0], median_shape=[64, 64],
        ...     patch_size=[64, 64], batch_size=2, kernel_size=[[3, 3]] * 5,
        ...     strides=[[1, 1]] + [[2, 2]] * 4, filters=[32, 64, 128, 256, 512],
        ...     normalization="zscore", label_names={0: "bg", 1: "x"})
        >>> a = p.network_args(); a["spatial_dims"], a["out_channels"], len(a["strides"])
        (2, 2, 5)
        >>> p.model_copy(update={"network": "unet"}).network_args()["channels"]
        [32, 64, 128, 256, 512]
        """
        common = {
            "spatial_dims": self.spatial_ndim,
            "in_channels": in_channels,
            "out_channels": self.n_classes,
        }
        name = self.network.lower()
        if name == "unet":
            return common | {
                "channels": self.filters,
                "strides": [list(s) for s in self.strides[1:]],
                "num_res_units": 2,
                "norm": "instance",
            }
        if name == "segresnet":
            # its GroupNorm has 8 groups: the filters must be a multiple of 8
            return common | {"init_filters": max(8, self.filters[0] // 8 * 8)}
        if name == "unetr":
            return common | {"img_size": self.patch_size, "feature_size": 16}
        if name == "swinunetr":
            return common | {"feature_size": 24}
        return common | {
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "upsample_kernel_size": self.strides[1:],
            "filters": self.filters,
            "norm_name": ["instance", {"affine": True}],
            "act_name": ["leakyrelu", {"inplace": True, "negative_slope": 0.01}],
            # DynUNet needs more up-sampling layers than supervision heads
            "deep_supervision": self.deep_supervision and len(self.strides) >= 3,
            "deep_supr_num": max(1, min(2, len(self.strides) - 2)),
            "res_block": False,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan as JSON (atomically)."""
        target = Path(path)
        write_text_atomic(target, self.model_dump_json(indent=2) + "\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SegmentationPlan:
        """Read a ``plan.json``; a bad file raises an error naming it and the field."""
        p = Path(path)
        try:
            return cls.model_validate_json(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UnreadableFileError(p, f"cannot be read ({exc})") from None
        except ValueError as exc:
            errors = getattr(exc, "errors", lambda: [])()
            where = ".".join(str(x) for x in errors[0]["loc"]) if errors else "plan"
            msg = errors[0]["msg"] if errors else str(exc)
            raise InvalidInputError(p, f"invalid field {where}: {msg}") from None
