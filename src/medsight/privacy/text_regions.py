"""Text-line detection without reading: bright (or dark) thin strokes in a row of similar glyphs.

OCR misses words it cannot read (odd fonts, tiny letters, a character touching a scale bar) and
it returns nothing for a word it reads as garbage with low confidence.  Burned-in annotations
still look like text: thin strokes of one uniform intensity, much brighter (or darker) than
their surroundings, forming glyph-sized connected components of similar height side by side.
:func:`find_text_lines` finds those without reading them:

1. a morphological top-hat (:func:`scipy.ndimage.white_tophat`, and the black one for dark
   text) keeps structures thinner than the footprint: strokes, not organs;
2. components that are bright enough (a fraction of the frame's range), glyph-sized (5 pixels
   up to 12% of the frame height or 48 pixels, not much wider than tall unless glyphs touch) and of
   uniform intensity are glyph candidates (:func:`skimage.measure.regionprops`);
3. candidates that overlap vertically, have similar heights and lie within about a glyph
   height of each other are joined into lines; a line needs three glyphs, or two spanning more
   than twice their height, and glyphs of similar brightness.

For colour frames the same runs on the chroma (largest minus smallest channel) too: coloured
annotations over grey anatomy stand out there alone.  Speckle in ultrasound also makes bright
blobs; step 3 (aligned, equal-height, equally bright)
rejects most of them.  The benchmark ``benchmarks/deid_burnin_recall.py`` measures the area
falsely flagged on text-free, speckled images.

Examples
--------
>>> import numpy as np
>>> from PIL import Image, ImageDraw, ImageFont
>>> img = Image.new("L", (200, 60), 20)
>>> ImageDraw.Draw(img).text((10, 20), "DOE JOHN", fill=240, font=ImageFont.load_default(16))
>>> [(b.left <= 12, b.width > 60, b.height < 25) for b in find_text_lines(np.asarray(img))]
[(True, True, True)]
>>> find_text_lines(np.full((100, 100), 50, np.uint8))
[]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LineBox", "find_text_lines"]

_MIN_GLYPH = 5
_MAX_GLYPH_FRACTION = 0.12
_MIN_CONTRAST = 0.30  # top-hat response, as a fraction of the frame's range


@dataclass(frozen=True)
class LineBox:
    """A text line found by :func:`find_text_lines`: box in pixels and number of glyphs."""

    left: int
    top: int
    width: int
    height: int
    glyphs: int


@dataclass
class _Glyph:
    top: int
    left: int
    bottom: int
    right: int
    level: float

    @property
    def height(self) -> int:
        return self.bottom - self.top


def _gray(frame: np.ndarray) -> np.ndarray:
    data = frame.astype(np.float64)
    if data.ndim == 3:
        data = data.max(axis=-1)  # coloured text is bright in one channel at least
    low, high = float(data.min()), float(data.max())
    return np.zeros(data.shape) if high <= low else (data - low) / (high - low)


def _glyphs(gray: np.ndarray, max_height: int) -> tuple[list[_Glyph], np.ndarray]:
    from scipy import ndimage
    from skimage.measure import label, regionprops

    size = max(7, min(15, max_height // 2 | 1))
    tophat = ndimage.white_tophat(gray, size=(size, size))
    mask = tophat >= _MIN_CONTRAST
    if mask.mean() > 0.25:  # a texture, not text on a background
        return [], mask
    labels = label(mask, connectivity=2)
    glyphs = []
    for region in regionprops(labels, intensity_image=gray):
        top, left, bottom, right = region.bbox
        height, width = bottom - top, right - left
        if not _MIN_GLYPH <= height <= max_height or width > 12 * height or region.area < 6:
            continue
        if not 0.08 <= region.extent <= 0.95:
            continue
        half_stroke = float(ndimage.distance_transform_edt(np.pad(region.image, 1)).max())
        if half_stroke > max(2.5, 0.12 * height):  # a blob, not a stroke
            continue
        glyphs.append(_Glyph(top, left, bottom, right, float(region.intensity_max)))
    return glyphs, mask


def _background_is_plain(gray: np.ndarray, mask: np.ndarray, box: tuple[int, ...]) -> bool:
    """Around a text line the background is much darker than the strokes (a plain band or
    the black border of the image), unlike a bright structure inside anatomy."""
    from scipy import ndimage

    top, left, bottom, right, level = box
    pad = max(2, (bottom - top) // 3)
    top, left = max(top - pad, 0), max(left - pad, 0)
    window = gray[top : bottom + pad, left : right + pad]
    strokes = ndimage.binary_dilation(mask[top : bottom + pad, left : right + pad], iterations=2)
    rest = window[~strokes]
    return rest.size == 0 or float(np.percentile(rest, 75)) <= level - 0.35


def _aligned(members: list[_Glyph]) -> bool:
    """Glyphs of a line share a baseline or a cap line (most of them; descenders differ)."""
    size = float(np.median([g.height for g in members]))
    for edge in ([g.bottom for g in members], [g.top for g in members]):
        spread = np.median(np.abs(np.array(edge) - np.median(edge)))
        if spread <= 0.15 * size + 0.5:
            return True
    return False


def _lines(glyphs: list[_Glyph], mask: np.ndarray, gray: np.ndarray) -> list[LineBox]:
    glyphs = sorted(glyphs, key=lambda g: g.left)
    parent = list(range(len(glyphs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(glyphs):
        for j in range(i + 1, len(glyphs)):
            b = glyphs[j]
            tall = max(a.height, b.height)
            if b.left - a.right > 1.2 * tall:
                if b.left - a.right > 1.2 * 80:
                    break
                continue
            overlap = min(a.bottom, b.bottom) - max(a.top, b.top)
            if overlap < 0.5 * min(a.height, b.height) or tall > 2.5 * min(a.height, b.height):
                continue
            parent[root(j)] = root(i)
    groups: dict[int, list[_Glyph]] = {}
    for i, glyph in enumerate(glyphs):
        groups.setdefault(root(i), []).append(glyph)
    out = []
    for members in groups.values():
        top = min(g.top for g in members)
        bottom = max(g.bottom for g in members)
        left = min(g.left for g in members)
        right = max(g.right for g in members)
        height, width = bottom - top, right - left
        levels = np.array([g.level for g in members])
        enough = len(members) >= 3 or (len(members) == 2 and width >= 1.2 * height)
        if not enough or width < 1.5 * height or levels.std() > 0.12 * levels.mean():
            continue
        if not _aligned(members):
            continue
        if not _background_is_plain(gray, mask, (top, left, bottom, right, levels.min())):
            continue
        out.append(LineBox(left, top, width, height, len(members)))
    return out


def find_text_lines(frame: np.ndarray, *, dark_text: bool = True) -> list[LineBox]:
    """Text-like lines in one frame (2-D or colour-last), bright text and, with ``dark_text``,
    dark text on a light background too.  Boxes are in the frame's pixel grid."""
    gray = _gray(frame)
    if gray.max() <= 0:
        return []
    rows = gray.shape[0]
    max_height = max(_MIN_GLYPH + 1, int(_MAX_GLYPH_FRACTION * rows), min(48, rows // 2))
    found = _lines(*_glyphs(gray, max_height), gray)
    if frame.ndim == 3 and frame.shape[-1] >= 3:  # coloured text over grey anatomy
        data = frame.astype(np.float64)
        chroma = data.max(axis=-1) - data.min(axis=-1)
        if chroma.max() > 0.15 * max(float(data.max()), 1.0):
            chroma_gray = chroma / chroma.max()
            found += _lines(*_glyphs(chroma_gray, max_height), chroma_gray)
    if dark_text and np.median(gray) > 0.6:
        found += _lines(*_glyphs(1.0 - gray, max_height), 1.0 - gray)
    return found
