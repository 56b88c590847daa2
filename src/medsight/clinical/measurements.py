"""Measurements from a segmentation mask, in physical units when they are known (RECIST-like).

For each label of a mask :func:`measure_mask` returns a :class:`StructureMeasurements`: the
number of connected lesions (26-/8-connected components), their total size, and per lesion its
size, centroid, bounding box (voxel indices and size), longest diameter and the perpendicular
short axis.  Diameters follow RECIST 1.1: measured in the acquisition plane (the first two index
axes), on the slice where the lesion's longest diameter is largest.

* **Volumetric masks** (3D with more than one slice) report a *volume* in mL.
* **Planar masks** (2D, or a 3D array of a single slice) report an *area* in mm2 and never a
  volume: one slice has no measured thickness.
* When the image has **no known pixel spacing** (PNG/JPEG, DICOM without any spacing attribute:
  :func:`medsight.core.image.spacing_known`), every size is in pixels (``{pixels}``,
  ``{square_pixels}``, ``{voxels}``), the Measurements say "pixel spacing unknown", and the
  ``*_mm`` / ``*_ml`` properties are None.  Nothing is ever reported in mm that was not measured
  in mm.
* The **longest diameter** is the largest distance between two points of the lesion, taken
  over the corners of its voxels (so a 10 x 4 mm rectangle measures its 10.77 mm diagonal).
* The **short axis** is the longest chord perpendicular to the long axis: lines perpendicular
  to it are sampled every quarter voxel, and each line's length inside the lesion is measured
  at quarter-voxel steps.  It is exact up to about one voxel.

Results convert to :class:`~medsight.core.findings.Measurement` objects (SNOMED CT concepts,
UCUM units) with :meth:`LesionMeasurements.measurements` for reports.

Examples
--------
>>> import numpy as np
>>> from medsight.core import Image
>>> m = np.zeros((20, 20, 5), np.uint8); m[5:15, 8:12, 1:4] = 1   # 10 x 4 x 3 voxels
>>> s = measure_mask(Image(m, spacing=(1.0, 1.0, 2.0)))[0]
>>> s.volume_ml, s.n_lesions, round(s.lesions[0].long_axis_mm, 2)
(0.24, 1, 10.77)
>>> flat = measure_mask(Image(m[:, :, 1], spacing=(0.5, 0.5)))[0]          # a 2D mask
>>> [str(x) for x in flat.measurements()]
['Area: 10 mm2', 'Long Axis: 5.39 mm', 'Short Axis: 2.25 mm']
>>> px = measure_mask(Image(m[:, :, 1], meta={"spacing_known": False}))[0]  # e.g. a PNG
>>> [str(x) for x in px.measurements()], px.area_mm2
(['Area: 40 square pixels', 'Long Axis: 10.8 pixels', 'Short Axis: 4.5 pixels'], None)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from medsight.core.codes import (
    AREA,
    LONG_AXIS,
    MILLILITER,
    MILLIMETER,
    PIXELS,
    SHORT_AXIS,
    SQUARE_MILLIMETER,
    SQUARE_PIXELS,
    VOLUME,
    VOXELS,
    Code,
)
from medsight.core.errors import InvalidInputError
from medsight.core.findings import Measurement
from medsight.core.image import Image, spacing_known

__all__ = ["LesionMeasurements", "StructureMeasurements", "diameters_2d", "measure_mask"]

#: Qualifier of every Measurement made without a known pixel spacing.
UNKNOWN_SPACING = "pixel spacing unknown"


def _units(known: bool) -> tuple[Code, Code, Code]:
    """(length, area, volume) units."""
    if known:
        return MILLIMETER, SQUARE_MILLIMETER, MILLILITER
    return PIXELS, SQUARE_PIXELS, VOXELS


def _qualifier(*parts: str, known: bool) -> str:
    return "; ".join(p for p in (*parts, "" if known else UNKNOWN_SPACING) if p)


@dataclasses.dataclass(frozen=True)
class LesionMeasurements:
    """One connected component of one label.

    Sizes are in mm, mm2 and mL when ``spacing_known``, else in pixels, square pixels and
    voxels.  ``area`` is set for planar masks, ``volume`` for volumetric ones (the other is
    None).
    """

    index: int  # 1-based, largest lesion first
    n_voxels: int
    centroid: tuple[float, ...]  # LPS mm; voxel index coordinates when the spacing is unknown
    bbox_index: tuple[tuple[int, int], ...]  # (first, last) voxel index per axis
    bbox_size: tuple[float, ...]  # per axis, mm or voxels
    long_axis: float
    short_axis: float
    area: float | None
    volume: float | None
    slice_index: int | None  # slice of the diameters (3D), None for 2D
    spacing_known: bool = True

    @property
    def volume_ml(self) -> float | None:
        """Volume in mL (None for planar masks or an unknown spacing)."""
        return self.volume if self.spacing_known else None

    @property
    def area_mm2(self) -> float | None:
        """Area in mm2 (None for volumetric masks or an unknown spacing)."""
        return self.area if self.spacing_known else None

    @property
    def long_axis_mm(self) -> float | None:
        """Longest diameter in mm (None when the spacing is unknown)."""
        return self.long_axis if self.spacing_known else None

    @property
    def short_axis_mm(self) -> float | None:
        """Short axis in mm (None when the spacing is unknown)."""
        return self.short_axis if self.spacing_known else None

    @property
    def centroid_lps_mm(self) -> tuple[float, ...] | None:
        """Centroid in LPS mm (None when the spacing is unknown)."""
        return self.centroid if self.spacing_known else None

    @property
    def bbox_size_mm(self) -> tuple[float, ...] | None:
        """Bounding-box size per axis in mm (None when the spacing is unknown)."""
        return self.bbox_size if self.spacing_known else None

    def measurements(self) -> tuple[Measurement, ...]:
        """Volume (or area, for planar masks), long axis and short axis as Measurements."""
        length, area, volume = _units(self.spacing_known)
        where = f"on slice {self.slice_index}" if self.slice_index is not None else ""
        q = _qualifier(where, known=self.spacing_known)
        size = (
            Measurement(VOLUME, self.volume, volume, qualifier=q)
            if self.volume is not None
            else Measurement(AREA, self.area or 0.0, area, qualifier=q)
        )
        return (
            size,
            Measurement(LONG_AXIS, self.long_axis, length, qualifier=q),
            Measurement(SHORT_AXIS, self.short_axis, length, qualifier=q),
        )


@dataclasses.dataclass(frozen=True)
class StructureMeasurements:
    """All lesions of one label value.

    ``size`` is the total volume (volumetric masks) or area (planar masks) of every lesion, in
    mL or mm2, or in voxels or square pixels when the spacing is unknown.
    """

    label: int
    name: str
    size: float
    n_lesions: int
    lesions: tuple[LesionMeasurements, ...]
    planar: bool = False
    spacing_known: bool = True

    @property
    def volume_ml(self) -> float | None:
        """Total volume in mL (None for planar masks or an unknown spacing)."""
        return self.size if self.spacing_known and not self.planar else None

    @property
    def area_mm2(self) -> float | None:
        """Total area in mm2 (None for volumetric masks or an unknown spacing)."""
        return self.size if self.spacing_known and self.planar else None

    def measurements(self, *, anatomy: bool = False) -> tuple[Measurement, ...]:
        """The total volume (or area), and the diameters of the largest lesion.

        ``anatomy``: the label is a normal structure (an organ, the hippocampus), whose total
        is qualified "whole structure", not "all lesions".
        """
        _, area, volume = _units(self.spacing_known)
        q = _qualifier("whole structure" if anatomy else "all lesions", known=self.spacing_known)
        total = (
            Measurement(AREA, self.size, area, qualifier=q)
            if self.planar
            else Measurement(VOLUME, self.size, volume, qualifier=q)
        )
        return (total, *self.lesions[0].measurements()[1:]) if self.lesions else (total,)


def _corners(points: np.ndarray) -> np.ndarray:
    offsets = np.array([[dx, dy] for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)])
    return (points[:, None, :] + offsets[None]).reshape(-1, 2)


def diameters_2d(mask2d: np.ndarray, spacing: tuple[float, float]) -> tuple[float, float]:
    """Longest diameter and perpendicular short axis of a 2D binary mask, in ``spacing`` units.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((30, 30), bool); m[5:15, 10:14] = True      # 10 x 4 voxels of 1 mm
    >>> [round(v, 2) for v in diameters_2d(m, (1.0, 1.0))]       # diagonal 10.77; 4.31 ideal
    [10.77, 4.5]
    """
    idx = np.argwhere(mask2d)
    if len(idx) == 0:
        return 0.0, 0.0
    sp = np.asarray(spacing, dtype=float)
    pts = _corners(idx.astype(float)) * sp
    if len(idx) > 2:  # voxel corners are never collinear, so the hull exists
        from scipy.spatial import ConvexHull

        pts = pts[ConvexHull(pts).vertices]
    d = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=-1)
    i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    long_axis = float(d[i, j])
    u = (pts[j] - pts[i]) / long_axis
    n = np.array([-u[1], u[0]])
    step = float(sp.min()) / 4
    centres = idx * sp
    along = centres @ u
    across = centres @ n
    t_values = np.arange(along.min(), along.max() + step, step)
    s_values = np.arange(across.min() - sp.max(), across.max() + sp.max() + step, step)
    best = 0.0
    shape = np.asarray(mask2d.shape)
    for t in t_values:
        line = t * u[None] + s_values[:, None] * n[None]
        vox = np.round(line / sp).astype(int)
        ok = np.all((vox >= 0) & (vox < shape), axis=1)
        inside = np.zeros(len(line), bool)
        inside[ok] = mask2d[vox[ok, 0], vox[ok, 1]]
        best = max(best, float(inside.sum()) * step)
    return long_axis, best


def _lesion(
    comp: np.ndarray,
    index: int,
    spacing: np.ndarray,
    affine: np.ndarray | None,
    planar: bool,
) -> LesionMeasurements:
    """``affine`` None: the spacing is unknown (``spacing`` is then all ones, in voxels)."""
    idx = np.argwhere(comp)
    centre = idx.mean(axis=0)
    if affine is None:
        centroid = tuple(float(v) for v in centre)
    else:
        homog = np.zeros(4)
        homog[: len(centre)] = centre
        homog[3] = 1.0
        centroid = tuple(float(v) for v in (affine @ homog)[:3])
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    plane = (float(spacing[0]), float(spacing[1]))
    if comp.ndim == 2:
        long_axis, short_axis = diameters_2d(comp, plane)
        slice_index = None
    else:
        long_axis, short_axis, slice_index = 0.0, 0.0, int(lo[2])
        for k in range(int(lo[2]), int(hi[2]) + 1):
            la, sa = diameters_2d(comp[:, :, k], plane)
            if la > long_axis:
                long_axis, short_axis, slice_index = la, sa, k
    known = affine is not None
    pixel_area = plane[0] * plane[1]
    voxel_size = float(np.prod(spacing)) / (1000.0 if known else 1.0)
    return LesionMeasurements(
        index=index,
        n_voxels=len(idx),
        centroid=centroid,
        bbox_index=tuple((int(a), int(b)) for a, b in zip(lo, hi, strict=True)),
        bbox_size=tuple(float(v) for v in (hi - lo + 1) * spacing),
        long_axis=long_axis,
        short_axis=short_axis,
        area=len(idx) * pixel_area if planar else None,
        volume=None if planar else len(idx) * voxel_size,
        slice_index=slice_index,
        spacing_known=known,
    )


def measure_mask(
    mask: Image, label_names: Mapping[int, str] | None = None
) -> list[StructureMeasurements]:
    """Measure every label (or the labels named in ``label_names``) of a label-mask Image.

    A 2D mask, or a 3D mask of a single slice, is planar: areas, no volumes.  A mask whose
    :func:`~medsight.core.image.spacing_known` is False, or a volumetric mask whose third axis
    is frame order (``meta["slice_spacing_known"]`` False: a cine without positions), is
    measured in pixels and voxels.

    Raises
    ------
    InvalidInputError
        The mask has a channel axis with more than one channel.
    """
    from scipy import ndimage

    arr = np.asarray(mask.array)
    if mask.has_channels:
        if mask.n_channels != 1:
            raise InvalidInputError("mask", f"has {mask.n_channels} channels, expected a label map")
        arr = arr[..., 0]
    planar = arr.ndim == 2 or arr.shape[2] == 1
    # frames of a cine are 1 "unit" apart in time, not in mm: no volume in mL from them
    known = spacing_known(mask) and (planar or mask.meta.get("slice_spacing_known", True))
    spacing = np.asarray(mask.spacing, dtype=float) if known else np.ones(arr.ndim)
    affine = mask.affine if known else None
    unit = float(spacing[0] * spacing[1]) if planar else float(np.prod(spacing))
    if known and not planar:
        unit /= 1000.0  # mm3 -> mL
    names = dict(label_names) if label_names else {int(v): str(v) for v in np.unique(arr) if v}
    structure = np.ones((3,) * arr.ndim, bool)
    out = []
    for label, name in sorted(names.items()):
        comps, n = ndimage.label(arr == label, structure)
        sizes = np.bincount(comps.ravel())[1:]
        order = np.argsort(-sizes, kind="stable") + 1
        lesions = tuple(
            _lesion(comps == c, i + 1, spacing, affine, planar) for i, c in enumerate(order)
        )
        out.append(
            StructureMeasurements(
                label=int(label),
                name=name,
                size=float(sizes.sum()) * unit,
                n_lesions=int(n),
                lesions=lesions,
                planar=planar,
                spacing_known=known,
            )
        )
    return out
