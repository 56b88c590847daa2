"""Pictures for people: a slice of the image with mask contours and a heatmap blended in.

Display convention: rows of the picture are the image's ``j`` axis and columns its ``i`` axis,
as a DICOM viewer shows a slice.  Intensities are windowed to the 1st-99th percentile (or a
given window), so MR, CT and photographs all render sensibly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image

__all__ = ["best_slice", "render_overlay"]

_DEFAULT_COLOURS = [(255, 64, 64), (64, 160, 255), (64, 220, 64), (255, 200, 0), (200, 64, 255)]


def best_slice(image: Image, mask: Image | None = None) -> int:
    """The slice with the largest mask area, or the middle slice.

    Examples
    --------
    >>> m = np.zeros((4, 4, 5), np.uint8); m[1:3, 1:3, 3] = 1
    >>> best_slice(Image(np.zeros((4, 4, 5))), Image(m))
    3
    """
    if image.spatial_ndim == 2:
        return 0
    if mask is not None and np.any(mask.array):
        return int(np.argmax(np.asarray(mask.array > 0).sum(axis=(0, 1))))
    return image.shape[2] // 2


def _slice(arr: NDArray[np.generic], spatial_ndim: int, k: int) -> NDArray[np.generic]:
    return arr[:, :, k] if spatial_ndim == 3 else arr


def _to_rgb(plane: NDArray[np.generic], window: tuple[float, float] | None) -> NDArray[np.uint8]:
    data = plane.astype(np.float32)
    if data.ndim == 3 and data.shape[-1] == 3:
        lo, hi = window or (float(np.percentile(data, 0.5)), float(np.percentile(data, 99.5)))
        rgb = np.clip((data - lo) / max(hi - lo, 1e-6), 0, 1)
    else:
        if data.ndim == 3:  # several channels: show the first
            data = data[..., 0]
        finite = data[np.isfinite(data)]
        lo, hi = window or (
            (float(np.percentile(finite, 1)), float(np.percentile(finite, 99)))
            if finite.size
            else (0.0, 1.0)
        )
        grey = np.clip((data - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
    return (rgb * 255).astype(np.uint8)


def _heat_colour(heat: NDArray[np.floating]) -> NDArray[np.float32]:
    """A perceptual colour map (matplotlib's inferno) for values in [0, 1]."""
    from matplotlib import colormaps

    return colormaps["inferno"](np.clip(heat, 0, 1))[..., :3].astype(np.float32)


def render_overlay(
    image: Image,
    *,
    mask: Image | None = None,
    heatmap: Image | None = None,
    colours: Mapping[int, tuple[int, int, int]] | None = None,
    slice_index: int | None = None,
    window: tuple[float, float] | None = None,
    heat_alpha: float = 0.45,
) -> NDArray[np.uint8]:
    """An RGB picture ``(rows, columns, 3)`` of one slice with contours and heatmap.

    Raises
    ------
    InvalidInputError
        If the mask or heatmap is not on the image's grid.
    """
    for name, other in (("mask", mask), ("heatmap", heatmap)):
        if other is not None and other.shape != image.shape:
            raise InvalidInputError(name, f"shape {other.shape} differs from image {image.shape}")
    k = best_slice(image, mask) if slice_index is None else slice_index
    nd = image.spatial_ndim
    rgb = _to_rgb(np.asarray(_slice(image.array, nd, k)), window).astype(np.float32) / 255
    if heatmap is not None:
        heat = np.asarray(_slice(heatmap.array, nd, k), dtype=np.float32)
        alpha = heat_alpha * np.clip(heat, 0, 1)[..., None]
        rgb = (1 - alpha) * rgb + alpha * _heat_colour(heat)
    if mask is not None:
        from skimage.segmentation import find_boundaries

        labels = np.asarray(_slice(mask.array, nd, k)).astype(np.int64)
        for n, value in enumerate(v for v in np.unique(labels) if v > 0):
            colour = (colours or {}).get(int(value), _DEFAULT_COLOURS[n % len(_DEFAULT_COLOURS)])
            edge = find_boundaries(labels == value, mode="inner")
            rgb[edge] = np.asarray(colour, dtype=np.float32) / 255
    # (i, j, 3) -> (rows=j, columns=i, 3)
    return (np.swapaxes(np.clip(rgb, 0, 1), 0, 1) * 255).astype(np.uint8)
