"""Slices of a stored study as windowed PNGs, and AI masks as transparent overlays.

Loaded volumes are cached (a few studies) so scrolling does not re-read the files.

Colour images (RGB, YBR and PALETTE COLOR, which the reader turns into RGB 0-255) are served
in their own colours, as RGB PNGs: a colour-Doppler ultrasound withheld for its colour shows
the flow the reason names.  Window and level apply to grey-scale images only; a colour
series says so in :func:`series_info` (``colour`` and ``window_note``) and its slices ignore
``center`` / ``width``.  The overlays are separate RGBA PNGs on the same grid, so they blend
over a colour slice as over a grey one.

Examples
--------
>>> import numpy as np
>>> window(np.array([0.0, 50.0, 100.0]), center=50, width=100).tolist()
[0, 127, 255]
"""

from __future__ import annotations

import functools
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.service.errors import NotFoundError
from medsight.service.settings import ServiceSettings

__all__ = [
    "COLOUR_PHOTOMETRIC",
    "encode_png",
    "is_colour",
    "mask_png",
    "matching_mask",
    "render_slice",
    "series_info",
    "window",
]

_lock = threading.Lock()

#: Photometric interpretations whose pixels the reader returns as RGB 0-255.
COLOUR_PHOTOMETRIC = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")
WINDOW_NOTE = (
    "Colour image: shown in its own colours; window and level apply to grey-scale images only."
)


def is_colour(image: Any) -> bool:
    """Whether ``image`` (a medsight Image) holds colour pixels: an RGB channel axis from a
    colour photometric interpretation (not echoes or time points).

    Examples
    --------
    >>> import numpy as np
    >>> from medsight.core.image import Image
    >>> rgb = np.zeros((4, 3, 3), np.uint8)
    >>> is_colour(Image(rgb, np.eye(4), spatial_ndim=2, meta={"photometric_interpretation": "RGB"}))
    True
    >>> is_colour(Image(rgb, np.eye(4), spatial_ndim=2))
    False
    """
    photometric = str(image.meta.get("photometric_interpretation", "")).upper()
    return (
        photometric in COLOUR_PHOTOMETRIC
        and image.has_channels
        and image.n_channels == 3
        and image.meta.get("channel_axis") is None
    )


def window(values: NDArray[Any], *, center: float, width: float) -> NDArray[np.uint8]:
    """Map ``center +- width/2`` linearly to 0..255 (clipped)."""
    low = center - width / 2
    scaled = (np.asarray(values, dtype=np.float64) - low) / max(width, 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _volumes(folder: str, _stamp: float) -> list[tuple[dict[str, Any], NDArray[Any]]]:
    from medsight.io.study import read_study

    out = []
    for entry in read_study(folder):
        try:
            image = entry.load()
        except Exception:
            continue
        colour = is_colour(image)
        if colour:  # (i, j[, k], 3) uint8 RGB, kept as it is
            arr = np.clip(np.asarray(image.array), 0, 255).astype(np.uint8)
            arr = arr[:, :, None, :] if image.spatial_ndim == 2 else arr
        else:
            arr = np.asarray(image.array, dtype=np.float32)
            if image.has_channels:
                arr = arr.mean(axis=-1)
            if arr.ndim == 2:
                arr = arr[:, :, None]
        meta = {
            "affine": np.asarray(image.affine).round(4).tolist(),
            "modality": entry.modality,
            "description": entry.description,
            "slices": int(arr.shape[2]),
            "rows": int(arr.shape[1]),
            "columns": int(arr.shape[0]),
            "colour": colour,
            "photometric": str(image.meta.get("photometric_interpretation", "")) or None,
        }
        if colour:
            meta["center"], meta["width"] = 127.5, 255.0
            meta["window_note"] = WINDOW_NOTE
        else:
            low, high = np.percentile(arr, [0.5, 99.5])
            meta["center"], meta["width"] = float((low + high) / 2), float(max(high - low, 1.0))
        out.append((meta, arr))
    return out


def _load(settings: ServiceSettings, uid: str) -> list[tuple[dict[str, Any], NDArray[Any]]]:
    folder = settings.home / "studies" / uid
    if not folder.is_dir():
        raise NotFoundError(f"study {uid}", "has no stored files")
    stamp = max((p.stat().st_mtime for p in folder.rglob("*.dcm")), default=0.0)
    with _lock:
        return _volumes(str(folder), stamp)


def series_info(settings: ServiceSettings, uid: str) -> list[dict[str, Any]]:
    """One dict per viewable series: modality, description, slices, default window, affine."""
    return [dict(meta, index=i) for i, (meta, _) in enumerate(_load(settings, uid))]


def _as_3d(arr: NDArray[Any]) -> NDArray[Any]:
    return arr[:, :, None] if arr.ndim == 2 else arr


def matching_mask(
    settings: ServiceSettings, uid: str, index: int, masks: list[Path]
) -> Path | None:
    """The first mask on the grid of series ``index`` (same shape and affine), if any.

    A mask is only ever drawn over the series it was computed on.
    """
    from medsight.io import read_image

    vols = _load(settings, uid)
    if not 0 <= index < len(vols):
        raise NotFoundError(f"series {index}", f"does not exist (the study has {len(vols)})")
    meta, arr = vols[index]
    for mask_file in masks:
        mask = read_image(mask_file)
        same_shape = _as_3d(np.asarray(mask.array)).shape == arr.shape[:3]  # colour: (..., 3)
        if same_shape and np.allclose(mask.affine, meta["affine"], atol=1e-3):
            return mask_file
    return None


def _png(array: NDArray[Any]) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def encode_png(array: NDArray[Any]) -> bytes:
    """An (rows, columns[, 3 or 4]) uint8 array as PNG bytes."""
    return _png(array)


def _slice(vols: list[tuple[dict[str, Any], NDArray[Any]]], index: int, k: int) -> NDArray[Any]:
    if not 0 <= index < len(vols):
        raise NotFoundError(f"series {index}", f"does not exist (the study has {len(vols)})")
    arr = vols[index][1]
    if not 0 <= k < arr.shape[2]:
        raise InvalidInputError("slice", f"{k} is outside 0..{arr.shape[2] - 1}")
    # (i, j) index order -> rows are j; a colour plane keeps its samples last
    return np.swapaxes(arr[:, :, k], 0, 1)


def render_slice(
    settings: ServiceSettings,
    uid: str,
    index: int,
    k: int,
    *,
    center: float | None = None,
    width: float | None = None,
) -> bytes:
    """PNG of slice ``k`` of series ``index`` (default window: the series' 0.5-99.5 %).

    A colour series gives an RGB PNG of its own pixels; ``center`` and ``width`` are ignored.
    """
    vols = _load(settings, uid)
    plane = _slice(vols, index, k)
    meta = vols[index][0]
    if meta["colour"]:
        return _png(np.ascontiguousarray(plane))
    return _png(
        window(
            plane, center=meta["center"] if center is None else center, width=width or meta["width"]
        )
    )


def mask_png(mask_file: Path, k: int, colour: tuple[int, int, int] = (255, 40, 40)) -> bytes:
    """Slice ``k`` of a mask (NIfTI written by the analysis) as a half-transparent RGBA PNG."""
    from medsight.io import read_image

    arr = _as_3d(np.asarray(read_image(mask_file).array))
    if not 0 <= k < arr.shape[2]:
        raise InvalidInputError("slice", f"{k} is outside 0..{arr.shape[2] - 1}")
    plane = arr[:, :, k].T > 0
    rgba = np.zeros((*plane.shape, 4), dtype=np.uint8)
    rgba[plane] = (*colour, 140)
    return _png(rgba)
