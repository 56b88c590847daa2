"""Self-configuring segmentation plan (nnU-Net's rules), written to ``plan.json``.

The plan is the second stage of segmentation training: *data set -> fingerprint -> plan.json ->
preprocessed arrays -> checkpoints -> ModelPackage*.  It is derived from the data alone (no
hand-set hyper-parameters) and is plain JSON the user can read and edit before training.

Rules (after Isensee et al., "nnU-Net", Nature Methods 2021, and its ``ExperimentPlanner``):

* **target spacing**: the median spacing; for anisotropic data (largest / smallest median
  spacing > 3) the low-resolution axis uses the 10th percentile of its spacings instead.  When
  the median image at that spacing holds more voxels than the budget
  (``max_voxels``; 128**3 in 3D, 256**2 in 2D) the spacing is enlarged isotropically so it fits.
* **patch size**: the median shape at target spacing, capped by the budget; each axis is then
  rounded *up* to a multiple of ``2**n_pool``.
* **topology** (DynUNet): an axis is down-sampled while its feature map stays >= 4 voxels (at most
  5 times); kernel size 1 along an axis whose spacing is > 2x the finest one, until pooling has
  made it comparable; 32 filters doubled per level, at most 320 (3D) / 512 (2D); at least two
  down-samplings (DynUNet's minimum), even for patches under 16 voxels.
* **batch size**: as many patches as fit a fixed voxel budget, at least 2, and at most 5% of the
  data set's voxels per batch.
* **normalisation**: CT -> clip to the foreground 0.5/99.5 percentiles, then z-score with the
  foreground mean/std of the data set; MR -> z-score per image over its non-zero (foreground)
  voxels; anything else (US, photographs) -> z-score per image.

Examples
--------
>>> plan = make_plan(spacings=[[1.0, 1.0, 1.0]] * 260, shapes=[[36, 50, 35]] * 260,
...                  label_names={0: "background", 1: "anterior", 2: "posterior"},
...                  modality="MR", dataset="hippocampus")
>>> plan.patch_size, plan.strides
([40, 56, 40], [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]])
>>> plan.normalization.value, plan.batch_size > 2
('zscore_nonzero', True)
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from medsight.core.errors import InvalidInputError, UnreadableFileError
from medsight.core.geometry import LPS_TO_RAS
from medsight.core.image import Image
from medsight.io.atomic import write_text_atomic

__all__ = [
    "IntensityStats",
    "Normalization",
    "PreparedImage",
    "SegmentationPlan",
    "make_plan",
    "normalize",
    "plan_from_dataset",
    "plan_from_fingerprint",
    "prepare_image",
    "prepare_label",
    "register_segmentation_networks",
    "restore_array",
]

PLAN_FILE = "plan.json"
#: Registry name of MONAI's DynUNet with each parameter stored once (see ``_dynunet_single``).
SEG_NETWORK = "dynunet_single"
_MAX_VOXELS = {2: 256 * 256, 3: 128**3}
_BATCH_VOXELS = {2: 12 * 256 * 256, 3: 2 * 128**3}
_MAX_FILTERS = {2: 512, 3: 320}
_MIN_FEATURE = 4
_MAX_POOL = 5


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

    def network_args(self, in_channels: int = 1) -> dict[str, Any]:
        """Keyword arguments (MONAI's own names) of ``network`` for this plan.

        ``dynunet_single`` (the default; DynUNet) uses the planned kernels, strides and
        filters with deep supervision; ``unet``, ``segresnet``, ``unetr`` and ``swinunetr``
        (the latter needs ``einops``) are built from the same depth and patch size.

        Examples
        --------
        >>> p = make_plan(spacings=[[1.0, 1.0]], shapes=[[64, 64]], label_names={0: "bg", 1: "x"})
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
            return common | {"init_filters": self.filters[0]}
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


def _dynunet_single(**kwargs: Any) -> Any:
    """MONAI ``DynUNet`` whose state dict lists every tensor once.

    DynUNet registers its blocks twice (``input_block`` ... and again under ``skip_layers``), so
    its state dict holds each weight under two names, which doubles a package's size and which
    safetensors refuses.  The alias names are dropped when saving and filled back in from their
    canonical names when loading; the network itself is unchanged.
    """
    from monai.networks.nets import DynUNet

    net = DynUNet(**kwargs)
    first: dict[int, str] = {}
    alias: dict[str, str] = {}
    for key, tensor in net.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            alias[key] = first[id(tensor)]
        else:
            first[id(tensor)] = key

    def drop(module: Any, state: dict[str, Any], prefix: str, local: Any) -> None:
        for key in alias:
            state.pop(prefix + key, None)

    def fill(state: dict[str, Any], prefix: str, *args: Any) -> None:
        for key, canonical in alias.items():
            if prefix + key not in state and prefix + canonical in state:
                state[prefix + key] = state[prefix + canonical]

    net._register_state_dict_hook(drop)
    net._register_load_state_dict_pre_hook(fill)
    return net


def register_segmentation_networks() -> None:
    """Add :data:`SEG_NETWORK` to the network registry (idempotent)."""
    from medsight.models.registry import available_networks, register_network

    if SEG_NETWORK not in available_networks():
        register_network(SEG_NETWORK, _dynunet_single)


def _target_spacing(spacings: np.ndarray) -> np.ndarray:
    median = np.median(spacings, axis=0)
    if median.max() / median.min() > 3:
        worst = int(np.argmax(median))
        median[worst] = np.percentile(spacings[:, worst], 10)
    return median


def _topology(
    patch: list[int], spacing: Sequence[float]
) -> tuple[list[int], list[list[int]], list[list[int]]]:
    """Pools per axis, then DynUNet kernel sizes and strides per level."""
    n_pool = [
        max(0, min(_MAX_POOL, math.floor(math.log2(max(s, 1) / _MIN_FEATURE)))) for s in patch
    ]
    if max(n_pool) < 2:  # DynUNet needs at least two down-samplings (patches are >= 8 voxels)
        n_pool[int(np.argmax(patch))] = 2
    patch = [int(math.ceil(s / 2**p) * 2**p) for s, p in zip(patch, n_pool, strict=True)]
    depth = max(n_pool)
    sp = list(spacing)
    kernels: list[list[int]] = []
    strides: list[list[int]] = [[1] * len(patch)]
    for level in range(depth + 1):
        kernels.append([3 if s <= 2 * min(sp) else 1 for s in sp])
        if level < depth:
            stride = [2 if n_pool[a] > level else 1 for a in range(len(patch))]
            strides.append(stride)
            sp = [s * st for s, st in zip(sp, stride, strict=True)]
    return patch, kernels, strides


def make_plan(
    *,
    spacings: Sequence[Sequence[float]],
    shapes: Sequence[Sequence[int]],
    label_names: Mapping[int, str],
    modality: str | None = None,
    intensity: IntensityStats | None = None,
    orientation: str | None = None,
    dataset: str = "",
    max_voxels: int | None = None,
    max_filters: int | None = None,
) -> SegmentationPlan:
    """Derive a plan from per-case spacings and shapes (index order) and the labels.

    Parameters
    ----------
    spacings, shapes : sequences of per-case spacing (mm) and shape, in index order.
    label_names : mapping
        Label value -> name, background (0) included.
    modality : str, optional
        DICOM modality code; decides the normalisation.
    intensity : IntensityStats, optional
        Foreground statistics, needed for CT.
    max_voxels : int, optional
        Voxel budget of the median image and of a patch (default 128**3 / 256**2).
    max_filters : int, optional
        Cap on the filters per level (default nnU-Net's 320 in 3D, 512 in 2D).

    Raises
    ------
    InvalidInputError
        Empty or inconsistent input.
    """
    sp = np.asarray(spacings, dtype=float)
    sh = np.asarray(shapes, dtype=float)
    if sp.ndim != 2 or sp.shape != sh.shape or len(sp) == 0 or sp.shape[1] not in (2, 3):
        raise InvalidInputError("plan", f"need per-case 2D/3D spacings and shapes, got {sp.shape}")
    ndim = sp.shape[1]
    budget = max_voxels or _MAX_VOXELS[ndim]
    target = _target_spacing(sp)
    median_shape = np.median(sh * sp / target, axis=0)
    if np.prod(median_shape) > budget:
        factor = (np.prod(median_shape) / budget) ** (1.0 / ndim)
        target = target * factor
        median_shape = median_shape / factor
    patch = [max(8, round(s)) for s in median_shape]
    patch, kernels, strides = _topology(patch, target.tolist())
    while np.prod(patch) > budget * 1.5:  # rounding up may overshoot; shrink the largest axis
        axis = int(np.argmax(np.asarray(patch) * target))
        patch[axis] = max(8, patch[axis] - 2 ** sum(s[axis] == 2 for s in strides))
        patch, kernels, strides = _topology(patch, target.tolist())
    n_cases_voxels = float(np.sum(np.prod(sh * sp / target, axis=1)))
    batch = int(_BATCH_VOXELS[ndim] // np.prod(patch))
    batch = max(2, min(batch, int(0.05 * n_cases_voxels // np.prod(patch))))
    depth = len(strides)
    cap = max_filters or _MAX_FILTERS[ndim]
    filters = [min(32 * 2**i, cap) for i in range(depth)]
    mod = (modality or "").upper()
    norm = (
        Normalization.CT
        if mod == "CT"
        else Normalization.ZSCORE_NONZERO
        if mod == "MR"
        else Normalization.ZSCORE
    )
    if norm is Normalization.CT and intensity is None:
        raise InvalidInputError("plan", "CT normalisation needs the foreground intensity stats")
    return SegmentationPlan(
        dataset=dataset,
        spatial_ndim=ndim,
        modality=mod,
        orientation=orientation if ndim == 3 else None,
        target_spacing=[round(float(t), 6) for t in target],
        median_shape=[round(s) for s in median_shape],
        patch_size=patch,
        batch_size=batch,
        kernel_size=kernels,
        strides=strides,
        filters=filters,
        normalization=norm,
        intensity=intensity or IntensityStats(),
        label_names={int(k): str(v) for k, v in label_names.items()},
    )


def plan_from_dataset(
    dataset: Any,
    *,
    modality: str | None = None,
    samples_per_case: int = 2000,
    seed: int = 0,
    max_voxels: int | None = None,
    max_filters: int | None = None,
) -> SegmentationPlan:
    """Read every case of a segmentation :class:`~medsight.data.Dataset` and plan it.

    The statistics the plan needs (spacings, shapes, majority orientation, foreground intensity
    percentiles from ``samples_per_case`` seeded voxels per case) are computed here directly;
    :func:`medsight.data.fingerprint.compute_fingerprint` holds the same numbers and more.

    Raises
    ------
    InvalidInputError
        A case without a mask, or an empty data set.
    """
    rng = np.random.default_rng(seed)
    spacings, shapes, orients, samples, mods = [], [], [], [], []
    for case in dataset:
        img = case.image()
        mask = case.mask()
        if mask is None:
            raise InvalidInputError(f"case {case.case_id}", "has no mask to train on")
        spacings.append(img.spacing.tolist())
        shapes.append(list(img.shape))
        orients.append(img.orientation)
        mods.append(img.modality)
        arr = np.asarray(img.array, dtype=np.float32)
        if img.has_channels:
            arr = arr[..., 0]
        fg = arr[np.asarray(mask.array).reshape(arr.shape) > 0]
        if fg.size:
            samples.append(rng.choice(fg, size=min(samples_per_case, fg.size), replace=False))
    if not spacings:
        raise InvalidInputError(f"data set {getattr(dataset, 'name', '')}", "has no cases")
    pool = np.concatenate(samples) if samples else np.zeros(1, np.float32)
    p05, p995 = np.percentile(pool, [0.5, 99.5])
    stats = IntensityStats(
        mean=float(pool.mean()),
        std=float(pool.std() or 1.0),
        percentile_00_5=float(p05),
        percentile_99_5=float(p995),
    )
    known = [m for m in mods if m]
    modality = modality or (max(set(known), key=known.count) if known else None)
    return make_plan(
        spacings=spacings,
        shapes=shapes,
        label_names=dict(dataset.label_names),
        modality=modality,
        intensity=stats,
        orientation=max(set(orients), key=orients.count),
        dataset=getattr(dataset, "name", ""),
        max_voxels=max_voxels,
        max_filters=max_filters,
    )


# --- applying a plan: orientation, intensity, spacing ------------------------------------------


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """An image made ready for the network, and what is needed to map results back.

    ``array`` is ``(channels, *spatial)`` float32 in the plan's orientation and target spacing.
    """

    array: np.ndarray
    input_shape: tuple[int, ...]
    oriented_shape: tuple[int, ...]
    to_plan: np.ndarray | None  # nibabel orientation transform (input -> plan), None if unchanged
    from_plan: np.ndarray | None


def _orientation_transforms(image: Image, code: str | None) -> tuple[Any, Any]:
    if code is None or image.spatial_ndim != 3 or image.orientation == code:
        return None, None
    from nibabel import orientations as nio

    src = nio.io_orientation(LPS_TO_RAS @ image.affine)
    dst = nio.axcodes2ornt(tuple(code))
    return nio.ornt_transform(src, dst), nio.ornt_transform(dst, src)


def _apply_ornt(arr: np.ndarray, ornt: np.ndarray | None) -> np.ndarray:
    """Reorient the trailing spatial axes of ``(C, *spatial)``."""
    if ornt is None:
        return arr
    from nibabel import orientations as nio

    return np.stack([nio.apply_orientation(a, ornt) for a in arr])


def _resize(arr: np.ndarray, shape: Sequence[int], *, nearest: bool = False) -> np.ndarray:
    """Resize ``(C, *spatial)`` to ``shape`` (linear, or nearest for labels)."""
    if tuple(arr.shape[1:]) == tuple(shape):
        return arr
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
    if nearest:
        out = F.interpolate(t, size=tuple(shape), mode="nearest-exact")
    else:
        mode = "bilinear" if len(shape) == 2 else "trilinear"
        out = F.interpolate(t, size=tuple(shape), mode=mode, align_corners=False)
    return out[0].numpy()


def normalize(arr: np.ndarray, plan: SegmentationPlan) -> np.ndarray:
    """Apply the plan's intensity normalisation to ``(C, *spatial)`` float32.

    Examples
    --------
    >>> p = make_plan(spacings=[[1.0, 1.0]], shapes=[[8, 8]], label_names={0: "bg", 1: "x"},
    ...               modality="MR")
    >>> a = np.zeros((1, 8, 8), np.float32); a[0, 2:6, 2:6] = np.arange(16).reshape(4, 4)
    >>> n = normalize(a, p); round(float(n[0][a[0] != 0].mean()), 6), float(n[0, 0, 0])
    (0.0, 0.0)
    """
    out = np.asarray(arr, dtype=np.float32).copy()
    for c in range(out.shape[0]):
        x = out[c]
        if plan.normalization is Normalization.CT:
            st = plan.intensity
            x = np.clip(x, st.percentile_00_5, st.percentile_99_5)
            out[c] = (x - st.mean) / max(st.std, 1e-8)
        elif plan.normalization is Normalization.ZSCORE_NONZERO:
            fg = x != 0
            if fg.any():
                vals = x[fg]
                out[c] = np.where(fg, (x - vals.mean()) / max(float(vals.std()), 1e-8), 0.0)
        elif plan.normalization is Normalization.ZSCORE:
            out[c] = (x - x.mean()) / max(float(x.std()), 1e-8)
    return out


def _channels_first(image: Image) -> np.ndarray:
    arr = np.asarray(image.array, dtype=np.float32)
    return np.moveaxis(arr, -1, 0) if image.has_channels else arr[None]


def prepare_image(image: Image, plan: SegmentationPlan) -> PreparedImage:
    """Reorient, normalise and resample an Image as the plan says.

    Raises
    ------
    InvalidInputError
        The image has a different number of spatial axes than the plan.
    """
    if image.spatial_ndim != plan.spatial_ndim:
        raise InvalidInputError(
            "image",
            f"is {image.spatial_ndim}D but the model was planned for {plan.spatial_ndim}D data",
        )
    to_plan, from_plan = _orientation_transforms(image, plan.orientation)
    arr = _apply_ornt(_channels_first(image), to_plan)
    spacing = np.asarray(image.spacing, dtype=float)
    if to_plan is not None:
        spacing = spacing[np.argsort(to_plan[:, 0])]
    target = np.asarray(plan.target_spacing, dtype=float)
    new_shape = [max(1, round(s)) for s in np.asarray(arr.shape[1:]) * spacing / target]
    arr = _resize(normalize(arr, plan), new_shape)
    return PreparedImage(
        array=arr.astype(np.float32),
        input_shape=tuple(image.shape),
        oriented_shape=tuple(
            int(s) for s in _apply_ornt(np.zeros((1, *image.shape)), to_plan).shape[1:]
        ),
        to_plan=to_plan,
        from_plan=from_plan,
    )


def prepare_label(mask: Image, prepared: PreparedImage) -> np.ndarray:
    """The mask in the same grid as ``prepared.array`` (nearest neighbour), int16 ``(*spatial)``."""
    arr = np.asarray(mask.array)
    if arr.ndim > len(prepared.input_shape):
        arr = arr[..., 0]
    arr = _apply_ornt(arr[None].astype(np.float32), prepared.to_plan)
    return _resize(arr, prepared.array.shape[1:], nearest=True)[0].round().astype(np.int16)


def restore_array(arr: np.ndarray, prepared: PreparedImage) -> np.ndarray:
    """Map ``(C, *spatial)`` network-grid values back to the input image's grid."""
    out = _resize(np.asarray(arr, dtype=np.float32), prepared.oriented_shape)
    out = _apply_ornt(out, prepared.from_plan)
    if tuple(out.shape[1:]) != prepared.input_shape:  # pragma: no cover - defensive
        raise InvalidInputError("prediction", "could not be mapped back to the input grid")
    return out


def plan_from_fingerprint(
    fingerprint: Any,
    label_names: Mapping[int, str],
    *,
    modality: str | None = None,
    max_voxels: int | None = None,
    max_filters: int | None = None,
) -> SegmentationPlan:
    """Plan from a :class:`medsight.data.fingerprint.Fingerprint` (``fingerprint.json``).

    Uses its per-case spacings and shapes, majority orientation and modality, and the
    foreground intensity statistics of channel 0 (for CT normalisation).

    Examples
    --------
    >>> import numpy as np
    >>> from medsight.core import Case, Image
    >>> from medsight.data import Dataset
    >>> from medsight.data.fingerprint import compute_fingerprint
    >>> cases = [Case(f"c{i}", images={"image": Image(np.full((40, 40, 20), 5.0),
    ...          spacing=(1.0, 1.0, 2.0), modality="CT")},
    ...          label=Image(np.ones((40, 40, 20), np.uint8))) for i in range(3)]
    >>> ds = Dataset("toy", cases, task="segmentation", label_names={0: "bg", 1: "organ"})
    >>> plan = plan_from_fingerprint(compute_fingerprint(ds), ds.label_names)
    >>> plan.normalization.value, plan.target_spacing, plan.intensity.mean
    ('ct', [1.0, 1.0, 2.0], 5.0)
    """
    channel = fingerprint.intensity_per_channel.get("0")
    stats = None
    if channel is not None:
        stats = IntensityStats(
            mean=channel.mean,
            std=channel.std or 1.0,
            percentile_00_5=channel.percentile_00_5,
            percentile_99_5=channel.percentile_99_5,
        )
    mods = {k: v for k, v in fingerprint.modalities.items() if k and k != "None"}
    orients = fingerprint.orientations
    return make_plan(
        spacings=fingerprint.spacings,
        shapes=fingerprint.shapes,
        label_names=label_names,
        modality=modality or (max(mods, key=mods.get) if mods else None),
        intensity=stats,
        orientation=max(orients, key=orients.get) if orients else None,
        dataset=fingerprint.dataset,
        max_voxels=max_voxels,
        max_filters=max_filters,
    )
