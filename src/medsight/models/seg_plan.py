"""The segmentation plan's data model (``plan.json``): what a segmentation network expects.

The plan is written by the planner (:mod:`medsight.training.plan`, nnU-Net's rules) and read by
training, inference and the report; it is applied to images and undone on predictions by
:mod:`medsight.transforms.seg_plan`.  This module holds the data only (pydantic, no torch).

The plan is the single description of a segmentation package's preprocessing:
:meth:`SegmentationPlan.preprocessing` is the :class:`~medsight.models.spec.PreprocessingSpec`
inference applies, and the trainer writes exactly that to ``model.json`` (checked on load by
:meth:`medsight.models.package.ModelPackage.load`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from medsight.core.errors import InvalidInputError, UnreadableFileError
from medsight.io.atomic import write_text_atomic
from medsight.models.spec import Intensity, PreprocessingSpec

__all__ = [
    "PLAN_FILE",
    "PLAN_NORMALIZATIONS",
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


#: Former name of the plan's normalisation enum, kept for older imports: it is
#: :class:`~medsight.models.spec.Intensity` (``"ct"`` in old plans reads as ``CT_WINDOW``).
Normalization = Intensity
#: The normalisations a segmentation plan can ask for (nnU-Net's per-modality schemes).
PLAN_NORMALIZATIONS = (
    Intensity.CT_WINDOW,  # CT: clip to data-set foreground percentiles, z-score with its stats
    Intensity.ZSCORE_NONZERO,  # MR: per image, over non-zero voxels
    Intensity.ZSCORE,  # anything else: per image, all voxels
    Intensity.NONE,
)


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
    normalization: Intensity
    intensity: IntensityStats = Field(default_factory=IntensityStats)
    label_names: dict[int, str]
    deep_supervision: bool = True
    network: str = SEG_NETWORK

    @field_validator("normalization")
    @classmethod
    def _plan_normalization(cls, value: Intensity) -> Intensity:
        if value not in PLAN_NORMALIZATIONS:
            raise ValueError(
                f"a segmentation plan normalises with one of "
                f"{[n.value for n in PLAN_NORMALIZATIONS]}, not {value.value!r}"
            )
        return value

    def preprocessing(self, channels: int = 1) -> PreprocessingSpec:
        """The PreprocessingSpec inference applies for this plan (and ``model.json`` holds).

        Target spacing, patch size and the plan's normalisation, each channel on its own; CT
        clips to the data set's foreground 0.5/99.5 percentiles and z-scores with its
        foreground mean/std (``intensity_args`` lower/upper/mean/std).

        Examples
        --------
        >>> p = SegmentationPlan(spatial_ndim=2, target_spacing=[1.0, 1.0], median_shape=[8, 8],
        ...     patch_size=[8, 8], batch_size=2, kernel_size=[[3, 3]] * 3,
        ...     strides=[[1, 1]] + [[2, 2]] * 2, filters=[32, 64, 128], normalization="ct",
        ...     intensity={"mean": 40.0, "std": 20.0, "percentile_00_5": -90.0,
        ...                "percentile_99_5": 210.0}, label_names={0: "bg", 1: "x"})
        >>> s = p.preprocessing(channels=1)
        >>> s.intensity.value, s.intensity_args, s.size, s.per_channel
        ('ct_window', {'lower': -90.0, 'upper': 210.0, 'mean': 40.0, 'std': 20.0}, [8, 8], True)
        """
        args: dict[str, float] = {}
        if self.normalization is Intensity.CT_WINDOW:
            st = self.intensity
            args = {
                "lower": st.percentile_00_5,
                "upper": st.percentile_99_5,
                "mean": st.mean,
                "std": st.std,
            }
        return PreprocessingSpec(
            target_spacing=list(self.target_spacing),
            size=list(self.patch_size),
            intensity=self.normalization,
            intensity_args=args,
            per_channel=True,
            channels=channels,
        )

    def legacy_preprocessing(self, channels: int = 1) -> PreprocessingSpec:
        """What medsight wrote to ``model.json`` for this plan before the plan was its truth.

        ``zscore`` (over all channels jointly) for every non-CT plan, and for CT ``ct_window``
        with the plan's raw intensity statistics as arguments.  Only used to recognise such
        packages on load, which then use :meth:`preprocessing` instead.
        """
        ct = self.normalization is Intensity.CT_WINDOW
        return PreprocessingSpec(
            target_spacing=self.target_spacing,
            size=self.patch_size,
            intensity=Intensity.CT_WINDOW if ct else Intensity.ZSCORE,
            intensity_args=self.intensity.model_dump() if ct else {},
            channels=channels,
        )

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
