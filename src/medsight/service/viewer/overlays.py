"""The AI overlays of a job for the viewer: which belong to a series, their legend, their PNGs.

A job's result folder holds, per model, ``mask_<model>.nii.gz`` (segmentation labels) and
``heatmap_<model>.nii.gz`` (Grad-CAM ...), both on the grid of the series the model ran on,
and the report's picture ``overlay_<model>.png``.  :func:`overlay_info` lists the models whose
volumes lie on a series' grid (same shape and affine), so the viewer draws a mask, a heatmap
or a report picture only beside the series it was computed on.  Each label is drawn in its
colour from the package spec (fallback: the colour-blind-safe palette of
:mod:`medsight.reporting.overlay`), and the legend names the labels.

Examples
--------
>>> import numpy as np
>>> rgba = heat_rgba(np.array([[0.0, 1.0]]))
>>> rgba.shape, int(rgba[0, 0, 3]), int(rgba[0, 1, 3]) > 100
((1, 2, 4), 0, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.service.catalog import PackageCatalog
from medsight.service.settings import ServiceSettings

__all__ = [
    "ModelVolumes",
    "find_volume",
    "heat_rgba",
    "heatmap_png",
    "label_png",
    "model_volumes",
    "overlay_info",
]

#: Below this (of 0..1) a heatmap pixel is transparent, so the anatomy stays visible.
HEAT_FLOOR = 0.05


@dataclasses.dataclass(frozen=True)
class ModelVolumes:
    """One model's overlay files in a job's result folder."""

    slug: str
    package_id: str
    mask: Path | None
    heatmap: Path | None
    picture: str | None  # report picture file name
    names: Mapping[int, str]
    colours: Mapping[int, tuple[int, int, int]]


def model_volumes(folder: Path, catalog: PackageCatalog) -> list[ModelVolumes]:
    """The models with a mask or heatmap volume in ``folder``, with their label names/colours."""
    from medsight.analysis.studies import slug

    by_slug = {slug(p.spec.name): (pid, p) for pid, p in catalog.packages().items()}
    slugs = sorted(
        {f.name.split("_", 1)[1].removesuffix(".nii.gz") for f in folder.glob("mask_*.nii.gz")}
        | {f.name.split("_", 1)[1].removesuffix(".nii.gz") for f in folder.glob("heatmap_*.nii.gz")}
    )
    out = []
    for name in slugs:
        pid, pkg = by_slug.get(name, (name, None))
        labels = pkg.spec.labels if pkg is not None else []
        mask, heat, pic = (
            folder / f"mask_{name}.nii.gz",
            folder / f"heatmap_{name}.nii.gz",
            f"overlay_{name}.png",
        )
        out.append(
            ModelVolumes(
                slug=name,
                package_id=pid,
                mask=mask if mask.is_file() else None,
                heatmap=heat if heat.is_file() else None,
                picture=pic if (folder / pic).is_file() else None,
                names={lab.index: lab.name for lab in labels},
                colours={lab.index: lab.color for lab in labels if lab.color},
            )
        )
    return out


def _hex(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def _on_series(settings: ServiceSettings, uid: str, index: int, file: Path | None) -> bool:
    from medsight.service.viewer.slices import matching_mask

    return file is not None and matching_mask(settings, uid, index, [file]) is not None


def overlay_info(
    settings: ServiceSettings, uid: str, index: int, folder: Path, catalog: PackageCatalog
) -> dict[str, Any]:
    """What the viewer may draw over series ``index``: models, their labels and pictures."""
    from medsight.io import read_image
    from medsight.reporting.overlay import label_colour

    models, elsewhere = [], []
    for vol in model_volumes(folder, catalog):
        has_mask = _on_series(settings, uid, index, vol.mask)
        has_heat = _on_series(settings, uid, index, vol.heatmap)
        if not (has_mask or has_heat):
            if vol.picture:
                elsewhere.append(vol.picture)
            continue
        labels = []
        if has_mask and vol.mask is not None:
            # the package's labels (what each colour would mean) and any other value present
            present = {int(v) for v in np.unique(np.asarray(read_image(vol.mask).array))}
            values = sorted(v for v in present | set(vol.names) if v > 0)
            labels = [
                {
                    "value": v,
                    "name": vol.names.get(v, f"label {v}"),
                    "colour": _hex(label_colour(v, vol.colours)),
                    "present": v in present,
                }
                for v in values
            ]
        models.append(
            {
                "model": vol.slug,
                "package": vol.package_id,
                "mask": has_mask,
                "heatmap": has_heat,
                "picture": vol.picture,
                "labels": labels,
            }
        )
    # report pictures of models whose volumes lie on another series: not shown beside this one
    return {"series": index, "models": models, "elsewhere": elsewhere}


def find_volume(folder: Path, catalog: PackageCatalog, model: str, kind: str) -> Path:
    """The ``kind`` ('mask' or 'heatmap') volume file of model ``model`` (its slug)."""
    from medsight.service.errors import NotFoundError

    for vol in model_volumes(folder, catalog):
        found = vol.mask if kind == "mask" else vol.heatmap
        if vol.slug == model and found is not None:
            return found
    raise NotFoundError(f"{kind} of model {model!r}", "is not among the job's results")


def _plane(file: Path, k: int) -> NDArray[Any]:
    from medsight.io import read_image

    arr = np.asarray(read_image(file).array)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    if not 0 <= k < arr.shape[2]:
        raise InvalidInputError("slice", f"{k} is outside 0..{arr.shape[2] - 1}")
    return arr[:, :, k].T  # (i, j) -> rows are j, as the slice PNGs


def label_png(file: Path, k: int, colours: Mapping[int, tuple[int, int, int]]) -> bytes:
    """Slice ``k`` of a label mask as an RGBA PNG, each label in its colour (half opaque)."""
    from medsight.reporting.overlay import label_colour
    from medsight.service.viewer.slices import encode_png

    plane = np.rint(_plane(file, k)).astype(np.int64)
    rgba = np.zeros((*plane.shape, 4), dtype=np.uint8)
    for value in np.unique(plane):
        if value > 0:
            rgba[plane == value] = (*label_colour(int(value), colours), 150)
    return encode_png(rgba)


def heat_rgba(plane: NDArray[Any]) -> NDArray[np.uint8]:
    """A heatmap plane in 0..1 as RGBA: the report's colour map, transparent where ~0."""
    from matplotlib import colormaps

    from medsight.reporting.overlay import HEAT_COLOURMAP

    h = np.clip(np.nan_to_num(np.asarray(plane, dtype=np.float64)), 0, 1)
    rgba = (colormaps[HEAT_COLOURMAP](h) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(h > HEAT_FLOOR, (80 + 150 * h).astype(np.uint8), 0)
    return rgba


def heatmap_png(file: Path, k: int) -> bytes:
    """Slice ``k`` of a heatmap volume (0..1) as a transparent RGBA PNG."""
    from medsight.service.viewer.slices import encode_png

    return encode_png(heat_rgba(_plane(file, k)))
