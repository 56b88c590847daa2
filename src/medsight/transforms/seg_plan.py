"""Applying a segmentation plan to Images and undoing it: orientation, intensity, spacing.

The plan itself (:class:`~medsight.models.seg_plan.SegmentationPlan`, ``plan.json``) is data in
:mod:`medsight.models.seg_plan`; training and inference both prepare images through this module,
so they see the same network input.  Intensity and resampling are medsight's one
:func:`~medsight.transforms.preprocess.normalize_intensity` (with the plan's
:meth:`~medsight.models.seg_plan.SegmentationPlan.preprocessing`) and
:func:`~medsight.transforms.preprocess.resize`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from medsight.core.errors import InvalidInputError
from medsight.core.geometry import LPS_TO_RAS
from medsight.core.image import Image
from medsight.models.seg_plan import SegmentationPlan
from medsight.transforms.preprocess import normalize_intensity, resize

__all__ = ["PreparedImage", "normalize", "prepare_image", "prepare_label", "restore_array"]


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


def normalize(arr: np.ndarray, plan: SegmentationPlan) -> np.ndarray:
    """Apply the plan's intensity normalisation to ``(C, *spatial)`` float32, each channel alone.

    That is :func:`~medsight.transforms.preprocess.normalize_intensity` with the plan's
    :meth:`~medsight.models.seg_plan.SegmentationPlan.preprocessing` spec.

    Examples
    --------
    >>> p = SegmentationPlan(spatial_ndim=2, modality="MR", target_spacing=[1.0, 1.0],
    ...     median_shape=[8, 8], patch_size=[8, 8], batch_size=2, kernel_size=[[3, 3]] * 3,
    ...     strides=[[1, 1], [2, 2], [2, 1]], filters=[32, 64, 128],
    ...     normalization="zscore_nonzero", label_names={0: "bg", 1: "x"})
    >>> a = np.zeros((1, 8, 8), np.float32); a[0, 2:6, 2:6] = np.arange(16).reshape(4, 4)
    >>> n = normalize(a, p); round(float(n[0][a[0] != 0].mean()), 6), float(n[0, 0, 0])
    (0.0, 0.0)
    """
    x = np.array(arr, dtype=np.float32)
    return normalize_intensity(x, plan.preprocessing(channels=int(x.shape[0])))


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
    arr = resize(normalize(arr, plan), new_shape)
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
    return resize(arr, prepared.array.shape[1:], nearest=True)[0].round().astype(np.int16)


def restore_array(arr: np.ndarray, prepared: PreparedImage) -> np.ndarray:
    """Map ``(C, *spatial)`` network-grid values back to the input image's grid."""
    out = resize(np.asarray(arr, dtype=np.float32), prepared.oriented_shape)
    out = _apply_ornt(out, prepared.from_plan)
    if tuple(out.shape[1:]) != prepared.input_shape:  # pragma: no cover - defensive
        raise InvalidInputError("prediction", "could not be mapped back to the input grid")
    return out
