"""Pictures for people: a slice of the image with mask contours, a heatmap and their legends.

Display convention: rows of the picture are the image's ``j`` axis and columns its ``i`` axis,
as a DICOM viewer shows a slice.  Intensities are windowed to the 1st-99th percentile (or a
given window), so MR, CT and photographs all render sensibly.

Readability rules (the picture goes into the report and a DICOM Secondary Capture):

* Small slices (a 35x51 crop) are enlarged smoothly so the shorter side is at least
  ``min_size`` pixels, keeping the physical aspect ratio when the pixel spacing is anisotropic;
  huge photographs are reduced so the longer side is at most ``max_size``.  Masks are enlarged
  with the image and their contours drawn afterwards, so lines stay thin.
* A heatmap is shown beside the unmodified image, blended over a grey (desaturated) copy of
  it, so it is visible on colour photographs as on grey scans; a colour bar says what the
  colours mean ("Grad-CAM relevance", low .. high).
* Contours get a legend: each label's colour and name.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image

__all__ = [
    "HEAT_COLOURMAP",
    "LABEL_PALETTE",
    "best_slice",
    "display_size",
    "label_colour",
    "render_comparison",
    "render_overlay",
]

#: Fallback label colours (Okabe & Ito's colour-blind-safe palette) for labels whose package
#: spec names no colour; label value ``v`` gets entry ``(v - 1) % 7``, the same in every picture.
LABEL_PALETTE = [
    (230, 159, 0),  # orange
    (86, 180, 233),  # sky blue
    (0, 158, 115),  # bluish green
    (240, 228, 66),  # yellow
    (0, 114, 178),  # blue
    (213, 94, 0),  # vermillion
    (204, 121, 167),  # reddish purple
]
#: The matplotlib colour map used for heatmaps and their colour bar.
HEAT_COLOURMAP = "inferno"
_BACKGROUND = (0, 0, 0)
_TEXT = (235, 235, 235)


def label_colour(
    value: int, colours: Mapping[int, tuple[int, int, int]] | None = None
) -> tuple[int, int, int]:
    """The colour of label ``value``: the package's (``colours``), else the fallback palette.

    Examples
    --------
    >>> label_colour(1), label_colour(8), label_colour(2, {2: (1, 2, 3)})
    ((230, 159, 0), (230, 159, 0), (1, 2, 3))
    """
    given = (colours or {}).get(value)
    if given is not None:
        return (int(given[0]), int(given[1]), int(given[2]))
    return LABEL_PALETTE[(value - 1) % len(LABEL_PALETTE)]


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


def display_size(
    shape: tuple[int, int],
    spacing: tuple[float, float] = (1.0, 1.0),
    *,
    min_size: int = 384,
    max_size: int = 768,
) -> tuple[int, int]:
    """``(rows, columns)`` at which a slice of ``shape`` (rows, columns) is shown.

    ``spacing`` is the (row, column) pixel spacing: the result keeps the physical aspect.

    Examples
    --------
    >>> display_size((51, 35))
    (560, 384)
    >>> display_size((100, 100), (2.0, 1.0))
    (768, 384)
    >>> display_size((2000, 3000))
    (512, 768)
    """
    rows_mm, cols_mm = shape[0] * spacing[0], shape[1] * spacing[1]
    pixel = min(spacing)
    rows, cols = rows_mm / pixel, cols_mm / pixel
    scale = max(1.0, min_size / min(rows, cols))
    scale = min(scale, max_size / max(rows, cols))
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def _slice(arr: NDArray[Any], spatial_ndim: int, k: int) -> NDArray[Any]:
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
        grey = np.clip((np.nan_to_num(data, nan=lo) - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
    return (rgb * 255).astype(np.uint8)


def _heat_colour(heat: NDArray[np.floating]) -> NDArray[np.float32]:
    """The heatmap colour map (:data:`HEAT_COLOURMAP`) for values in [0, 1], as RGB in [0, 1]."""
    from matplotlib import colormaps

    return colormaps[HEAT_COLOURMAP](np.clip(heat, 0, 1))[..., :3].astype(np.float32)


def _resize_rgb(rgb: NDArray[np.uint8], size: tuple[int, int]) -> NDArray[np.float32]:
    from PIL import Image as PILImage

    if rgb.shape[:2] != size:
        up = size[0] >= rgb.shape[0]
        method = PILImage.Resampling.BICUBIC if up else PILImage.Resampling.LANCZOS
        rgb = np.asarray(PILImage.fromarray(rgb).resize((size[1], size[0]), method))
    return rgb.astype(np.float32) / 255


def _resize_float(plane: NDArray[Any], size: tuple[int, int]) -> NDArray[np.float32]:
    from PIL import Image as PILImage

    data = np.ascontiguousarray(plane, dtype=np.float32)
    if data.shape == size:
        return data
    resized = PILImage.fromarray(data, mode="F").resize(
        (size[1], size[0]), PILImage.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32)


@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    from pathlib import Path

    import matplotlib
    from PIL import ImageFont

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:  # pragma: no cover - matplotlib always ships DejaVu
        return ImageFont.load_default(size)


def _draw_contours(
    rgb: NDArray[np.float32],
    regions: list[tuple[NDArray[np.bool_], tuple[int, int, int]]],
    width: int,
) -> NDArray[np.float32]:
    from scipy.ndimage import binary_dilation
    from skimage.segmentation import find_boundaries

    out = rgb.copy()
    for region, colour in regions:
        edge = find_boundaries(region, mode="inner")
        if width > 1:
            edge = binary_dilation(edge, iterations=width - 1) & region
        out[edge] = np.asarray(colour, dtype=np.float32) / 255
    return out


def _heat_panel(
    rgb: NDArray[np.float32], heat: NDArray[np.float32], alpha: float
) -> NDArray[np.float32]:
    """The heatmap over a grey, slightly darkened copy of the picture (visible on colour)."""
    grey = (rgb @ np.asarray([0.299, 0.587, 0.114], np.float32))[..., None] * 0.8
    h = np.clip(heat, 0, 1)[..., None]
    a = alpha * (0.35 + 0.65 * h)  # low relevance dims the picture, high relevance shows
    return (1 - a) * grey + a * _heat_colour(h[..., 0])


def render_overlay(
    image: Image,
    *,
    mask: Image | None = None,
    heatmap: Image | None = None,
    colours: Mapping[int, tuple[int, int, int]] | None = None,
    names: Mapping[int, str] | None = None,
    slice_index: int | None = None,
    window: tuple[float, float] | None = None,
    heat_alpha: float = 0.7,
    min_size: int = 384,
    max_size: int = 768,
    legend: bool = True,
) -> NDArray[np.uint8]:
    """An RGB picture ``(rows, columns, 3)`` of one slice with contours, heatmap and legends.

    Layout, left to right: the (enlarged) slice with contours; with a heatmap, the heatmap
    over a grey copy of the slice; with ``legend``, a column with the heatmap's colour bar and
    the contour legend (label colours and ``names``).  ``min_size=0`` and ``legend=False``
    give the bare slice at native resolution.

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
    # (i, j, ...) -> (rows=j, columns=i, ...)
    plane = np.swapaxes(_to_rgb(np.asarray(_slice(image.array, nd, k)), window), 0, 1)
    spacing = (float(image.spacing[1]), float(image.spacing[0]))
    size = (
        display_size(plane.shape[:2], spacing, min_size=min_size, max_size=max_size)
        if min_size > 0
        else plane.shape[:2]
    )
    rgb = _resize_rgb(np.ascontiguousarray(plane), size)
    line = max(1, round(min(size) / 250))

    regions: list[tuple[NDArray[np.bool_], tuple[int, int, int]]] = []
    entries: list[tuple[tuple[int, int, int], str]] = []
    if mask is not None:
        labels = np.swapaxes(np.asarray(_slice(mask.array, nd, k)).astype(np.int64), 0, 1)
        present = [int(v) for v in np.unique(np.asarray(mask.array)) if v > 0]
        for value in present:
            colour = label_colour(value, colours)
            entries.append((colour, (names or {}).get(value, f"label {value}")))
            if np.any(labels == value):
                region = _resize_float(labels == value, size) >= 0.5
                regions.append((region, tuple(colour)))
    panels = [_draw_contours(rgb, regions, line)]
    if heatmap is not None:
        heat = _resize_float(np.swapaxes(np.asarray(_slice(heatmap.array, nd, k)), 0, 1), size)
        panels.append(_draw_contours(_heat_panel(rgb, heat, heat_alpha), regions, line))
    pictures = [(np.clip(p, 0, 1) * 255).astype(np.uint8) for p in panels]
    if not legend:
        return np.concatenate(pictures, axis=1) if len(pictures) > 1 else pictures[0]
    titles = ["image", "Grad-CAM heatmap"] if heatmap is not None else []
    if nd == 3:
        where = f"slice {k + 1} of {image.shape[2]}"
        titles = [f"{titles[0]} ({where})", *titles[1:]] if titles else [where]
    return _compose(pictures, titles, heat=heatmap is not None, entries=entries)


def render_comparison(
    before: Image,
    after: Image,
    *,
    slice_index: int | None = None,
    min_size: int = 256,
    max_size: int = 512,
) -> NDArray[np.uint8]:
    """Before, after and their difference, side by side, for a derived image (denoising).

    Before and after share one grey window (the before image's 1st-99th percentiles), so
    what the model changed is seen as it is; the difference ``after - before`` is shown with a
    symmetric window around 0 (mid grey = unchanged).

    Raises
    ------
    InvalidInputError
        The two images are not on the same grid.

    Examples
    --------
    >>> import numpy as np
    >>> a = Image(np.random.default_rng(0).normal(size=(32, 24)))
    >>> render_comparison(a, a.with_array(np.asarray(a.array) * 0.5)).shape[2]
    3
    """
    if before.shape != after.shape:
        raise InvalidInputError("derived image", f"shape {after.shape} != {before.shape}")
    nd = before.spatial_ndim
    k = best_slice(before) if slice_index is None else slice_index
    b = np.asarray(_slice(before.array, nd, k), dtype=np.float32)
    a = np.asarray(_slice(after.array, nd, k), dtype=np.float32)
    if b.ndim == 3:
        b, a = b[..., 0], a[..., 0]
    finite = b[np.isfinite(b)]
    window = (float(np.percentile(finite, 1)), float(np.percentile(finite, 99)))
    diff = a - b
    half = float(np.percentile(np.abs(diff[np.isfinite(diff)]), 99)) if diff.size else 0.0
    half = half if half > 0 else 1.0
    spacing = (float(before.spacing[1]), float(before.spacing[0]))
    size = display_size(b.shape[::-1], spacing, min_size=min_size, max_size=max_size)
    panels = []
    for plane, win in ((b, window), (a, window), (diff, (-half, half))):
        rgb = _resize_rgb(np.ascontiguousarray(np.swapaxes(_to_rgb(plane, win), 0, 1)), size)
        panels.append((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    where = f" (slice {k + 1} of {before.shape[2]})" if nd == 3 else ""
    titles = [f"before{where}", "after", "difference (after - before)"]
    return _compose(panels, titles, heat=False, entries=[])


def _compose(
    pictures: list[NDArray[np.uint8]],
    titles: list[str],
    *,
    heat: bool,
    entries: list[tuple[tuple[int, int, int], str]],
) -> NDArray[np.uint8]:
    """Panels side by side, titles above, and a column with the colour bar and legend."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    rows, cols = pictures[0].shape[:2]
    fs = int(np.clip(round(min(rows, cols) / 24), 13, 26))
    font = _font(fs)
    pad = max(6, fs // 2)
    measure = ImageDraw.Draw(PILImage.new("RGB", (1, 1)))

    def text_width(text: str) -> int:
        return int(np.ceil(measure.textlength(text, font=font)))

    head = fs + 2 * pad if any(titles) else 0
    bar_w, swatch = max(14, fs), fs
    side_texts = ([f"{s}" for s in ("Grad-CAM", "relevance", "high", "low")] if heat else []) + (
        ["contours"] + [n for _, n in entries] if entries else []
    )
    side = 0
    if side_texts:
        widths = [text_width(t) for t in side_texts]
        side = 2 * pad + max(max(widths), bar_w + pad + text_width("high") if heat else 0)
        side += swatch + pad if entries else 0
    bar_top = 2 * fs + 2 + pad  # the colour bar's title, above it
    listed = (fs + pad) * (1 + len(entries)) if entries else 0
    bar_h = int(np.clip(rows - bar_top - 2 * pad - listed, 4 * fs, 300)) if heat else 0
    width = len(pictures) * cols + (len(pictures) - 1) * pad + (pad + side if side else 0)
    height = head + max(rows, (bar_top + bar_h + 2 * pad if heat else 0) + listed)
    canvas = PILImage.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for n, picture in enumerate(pictures):
        x = n * (cols + pad)
        canvas.paste(PILImage.fromarray(picture), (x, head))
        if n < len(titles) and titles[n]:
            draw.text((x + pad, pad), titles[n], fill=_TEXT, font=font)
    x0 = len(pictures) * (cols + pad) + pad
    y = head
    if heat:
        draw.text((x0, y), "Grad-CAM", fill=_TEXT, font=font)
        draw.text((x0, y + fs + 2), "relevance", fill=_TEXT, font=font)
        y += bar_top
        values = np.linspace(1, 0, bar_h, dtype=np.float32)  # top = high
        bar = (_heat_colour(values)[:, None, :] * 255).astype(np.uint8)
        canvas.paste(PILImage.fromarray(np.repeat(bar, bar_w, axis=1)), (x0, y))
        draw.text((x0 + bar_w + pad // 2, y), "high", fill=_TEXT, font=font)
        draw.text((x0 + bar_w + pad // 2, y + bar_h - fs - 2), "low", fill=_TEXT, font=font)
        y += bar_h + 2 * pad
    if entries:
        draw.text((x0, y), "contours", fill=_TEXT, font=font)
        y += fs + pad
        for colour, name in entries:
            draw.rectangle((x0, y + 2, x0 + swatch - 2, y + swatch), fill=colour)
            draw.text((x0 + swatch + pad // 2, y), name, fill=_TEXT, font=font)
            y += fs + pad
    return np.asarray(canvas, dtype=np.uint8)
