"""One image onto another's grid, in patient space (SimpleITK), and how much of it it covers.

Used to stack the series of a multi-input model (FLAIR, T1, T2 ...) as channels of one
Image: every series is resampled onto the reference series' voxels through its own geometry
(affine), linearly for intensities (nearest neighbour for label maps).  Points of the reference
grid outside the moving image get ``default``; :func:`grid_coverage` says beforehand how many
there are, so a caller can refuse a series that does not overlap.

Examples
--------
>>> import numpy as np
>>> from medsight.core.image import Image
>>> ref = Image(np.zeros((4, 4, 2)), spacing=(1.0, 1.0, 2.0))
>>> moving = Image(np.full((8, 8, 4), 5.0), spacing=(0.5, 0.5, 1.0))
>>> out = resample_to_grid(moving, ref)
>>> out.shape, float(out.array.mean()), grid_coverage(moving, ref)
((4, 4, 2), 5.0, 1.0)
"""

from __future__ import annotations

import numpy as np

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image

__all__ = ["grid_coverage", "resample_to_grid"]


def _as_3d(image: Image) -> Image:
    """A 2D Image as a one-slice volume with the same affine (its plane keeps its position)."""
    if image.spatial_ndim == 3:
        return image
    arr = np.asarray(image.array)
    arr = arr[:, :, None, :] if image.has_channels else arr[:, :, None]
    return image.with_array(arr, spatial_ndim=3)


def resample_to_grid(
    moving: Image, reference: Image, *, linear: bool = True, default: float = 0.0
) -> Image:
    """``moving`` sampled at ``reference``'s voxel centres (float32; shape and affine of it).

    2D images are treated as one-slice volumes at their position in patient space, so two
    pictures of different planes do not silently coincide.  The result keeps ``moving``'s
    modality and meta, and takes ``reference``'s geometry and source.

    Raises
    ------
    InvalidInputError
        ``moving`` has a channel axis (resample each channel on its own).
    """
    import SimpleITK as sitk

    if moving.has_channels:
        raise InvalidInputError("image", "has channels; resample a single-channel image")
    ref3, mov3 = _as_3d(reference), _as_3d(moving)
    ref_itk = (
        ref3.with_array(np.asarray(ref3.array)[..., 0]) if ref3.has_channels else ref3
    ).to_sitk()
    mov_itk = mov3.with_array(np.asarray(mov3.array, np.float32)).to_sitk()
    out = sitk.Resample(
        mov_itk,
        ref_itk,
        sitk.Transform(),
        sitk.sitkLinear if linear else sitk.sitkNearestNeighbor,
        float(default),
        sitk.sitkFloat32,
    )
    arr = sitk.GetArrayFromImage(out).transpose(2, 1, 0)
    if reference.spatial_ndim == 2:
        arr = arr[:, :, 0]
    return Image(
        arr,
        reference.affine,
        spatial_ndim=reference.spatial_ndim,
        modality=moving.modality,
        source=reference.source,
        meta=moving.meta,
    )


def grid_coverage(moving: Image, reference: Image, *, max_points: int = 32) -> float:
    """Share of ``reference``'s voxel centres that fall inside ``moving`` (0 to 1).

    Inside means within half a voxel of ``moving``'s outer voxel centres, as ITK resampling
    counts it; at most ``max_points`` centres per axis are tested (an even sub-grid).
    """
    ref3, mov3 = _as_3d(reference), _as_3d(moving)
    axes = [np.linspace(0, n - 1, min(n, max_points)) for n in ref3.shape[: ref3.spatial_ndim]]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    world = grid @ ref3.affine[:3, :3].T + ref3.affine[:3, 3]
    inverse = np.linalg.inv(mov3.affine)
    index = world @ inverse[:3, :3].T + inverse[:3, 3]
    size = np.asarray(mov3.shape[:3], dtype=np.float64)
    inside = np.all((index >= -0.5) & (index <= size - 0.5), axis=1)
    return float(inside.mean())
