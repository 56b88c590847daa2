"""A synthetic growth of a real structure: a real MR image warped with a known volume change.

:func:`grow` scales the space around the labelled structure's centre by ``factor ** (1/3)``
inside a ball holding the whole structure (so its volume changes by ``factor``), fades the
scaling to nothing over a shell outside it (a smooth, fold-free warp), then moves the whole
image rigidly (rotation about the image centre, then a translation).  Image and mask are
resampled through the same map (linear for the image, nearest for the mask).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medsight.core.image import Image


def rotation(axis: int, degrees: float) -> np.ndarray:
    """A 3x3 rotation about one LPS axis."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i] = r[j, j] = c
    r[i, j], r[j, i] = -s, s
    return r


def grow(
    image: Image,
    mask: Image,
    factor: float,
    rotation_matrix: np.ndarray,
    translation: np.ndarray,
    shell_mm: float = 6.0,
) -> tuple[Image, Image]:
    """The "current" image and mask: ``mask`` grown by ``factor`` in volume, then moved.

    A current point ``p`` is mapped to the prior point it shows: first the rigid motion
    ``q = R (p - centre) + centre + t``, then the growth about the structure's centre ``c``.
    """
    arr = np.asarray(image.array, dtype=float)
    lab = (np.asarray(mask.array) > 0).astype(np.uint8)
    a = image.affine
    grid = np.stack(np.meshgrid(*map(np.arange, arr.shape), indexing="ij"), -1).reshape(-1, 3)
    world = grid @ a[:3, :3].T + a[:3, 3]
    inside = np.argwhere(lab) @ a[:3, :3].T + a[:3, 3]
    c = inside.mean(0)
    centre = (np.asarray(arr.shape) - 1) / 2 @ a[:3, :3].T + a[:3, 3]
    q = (world - centre) @ np.asarray(rotation_matrix).T + centre + np.asarray(translation)
    r0 = np.linalg.norm(inside - c, axis=1).max() + 2.0
    r = np.linalg.norm(q - c, axis=1)
    w = np.clip((r0 + shell_mm - r) / shell_mm, 0.0, 1.0)
    src = c + (q - c) * (1.0 - (1.0 - factor ** (-1 / 3)) * w)[:, None]
    idx = ((src - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T).T
    out = ndimage.map_coordinates(arr, idx, order=1, mode="nearest").reshape(arr.shape)
    out_mask = ndimage.map_coordinates(lab, idx, order=0, mode="constant").reshape(arr.shape)
    return image.with_array(out.astype(np.float32)), mask.with_array(out_mask.astype(np.uint8))
