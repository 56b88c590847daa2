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

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsight.core.errors import InvalidInputError

# The plan's data model lives in ``models`` and its application in ``transforms`` (inference
# reads them from there, never from the planner); re-exported here for older imports.
from medsight.models.dynunet import _dynunet_single as _dynunet_single
from medsight.models.dynunet import register_segmentation_networks
from medsight.models.seg_plan import PLAN_FILE as PLAN_FILE
from medsight.models.seg_plan import SEG_ARCHES, IntensityStats, SegmentationPlan
from medsight.models.seg_plan import SEG_NETWORK as SEG_NETWORK
from medsight.models.seg_plan import Normalization as Normalization  # = Intensity, older name
from medsight.models.spec import Intensity
from medsight.transforms.seg_plan import (
    PreparedImage,
    normalize,
    prepare_image,
    prepare_label,
    restore_array,
)
from medsight.transforms.seg_plan import _apply_ornt as _apply_ornt
from medsight.transforms.seg_plan import _channels_first as _channels_first
from medsight.transforms.seg_plan import _orientation_transforms as _orientation_transforms

__all__ = [
    "IntensityStats",
    "Normalization",
    "PreparedImage",
    "SegmentationPlan",
    "make_plan",
    "normalize",
    "plan_for_network",
    "plan_from_dataset",
    "plan_from_fingerprint",
    "prepare_image",
    "prepare_label",
    "register_segmentation_networks",
    "restore_array",
]

_MAX_VOXELS = {2: 256 * 256, 3: 128**3}
_BATCH_VOXELS = {2: 12 * 256 * 256, 3: 2 * 128**3}
_MAX_FILTERS = {2: 512, 3: 320}
_MIN_FEATURE = 4
_MAX_POOL = 5


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
        Intensity.CT_WINDOW
        if mod == "CT"
        else Intensity.ZSCORE_NONZERO
        if mod == "MR"
        else Intensity.ZSCORE
    )
    if norm is Intensity.CT_WINDOW and intensity is None:
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


def plan_for_network(plan: SegmentationPlan, arch: str) -> SegmentationPlan:
    """``plan`` for another network (an ``--arch`` choice or a registry name).

    The patch is rounded up on each side to the nearest size the network accepts
    (:meth:`SegmentationPlan.patch_multiples`: UNETR 16, SwinUNETR 32 ...), and the batch shrinks
    so a batch holds no more voxels than before (at least 2 patches).

    Examples
    --------
    >>> p = make_plan(spacings=[[1.0, 1.0]], shapes=[[40, 24]], label_names={0: "b", 1: "x"})
    >>> q = plan_for_network(p, "swinunetr")
    >>> p.patch_size, p.batch_size, q.network, q.patch_size, q.batch_size
    ([40, 24], 2, 'swinunetr', [64, 32], 2)
    """
    network = SEG_ARCHES.get(arch.lower(), arch)
    new = plan.model_copy(update={"network": network})
    patch = new.valid_patch_size()
    if patch != plan.patch_size:
        old_voxels, new_voxels = math.prod(plan.patch_size), math.prod(patch)
        batch = max(2, min(plan.batch_size, plan.batch_size * old_voxels // new_voxels))
        new = new.model_copy(update={"patch_size": patch, "batch_size": batch})
    return new


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
    ('ct_window', [1.0, 1.0, 2.0], 5.0)
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
