"""The marked image of a detection model: its image with numbered boxes / circles and scores.

The picture follows :mod:`medsight.reporting.overlay`'s display convention (rows are the
image's ``j`` axis, columns its ``i`` axis; the slice enlarged to a readable size keeping the
physical aspect) and its title style.  Each detection finding is drawn as its region's outline
(a rectangle for a box, an ellipse for a circle / ellipse), labelled ``#n class score`` with
``n`` its number in the report (findings are numbered in the order given, highest score first).
For a volume the slice through the centre of the first (highest-scoring) detection is shown,
with every detection whose region crosses that slice.

Index coordinates are voxel centres: the outline of a region centred at ``c`` with size ``s``
runs from pixel edge ``c - s/2 + 0.5`` to ``c + s/2 + 0.5``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.core.findings import Finding, Region
from medsight.core.image import Image
from medsight.reporting.overlay import _compose, _font, _resize_rgb, _to_rgb, display_size

__all__ = ["mark_label", "render_detections"]

_PALETTE = [(255, 64, 64), (64, 200, 255), (80, 230, 80), (255, 200, 0), (220, 90, 255)]


def mark_label(number: int, finding: Finding) -> str:
    """The text beside a mark: ``#1 Mass 0.91``.

    Examples
    --------
    >>> from medsight.core.codes import MASS
    >>> from medsight.core.findings import FindingKind, Region
    >>> f = Finding(MASS, "m", "1", kind=FindingKind.DETECTION, probability=0.912,
    ...             region=Region((5, 5), (2, 2)))
    >>> mark_label(1, f)
    '#1 Mass 0.91'
    """
    score = f" {finding.probability:.2f}" if finding.probability is not None else ""
    return f"#{number} {finding.finding.meaning}{score}"


def _slice_of(image: Image, regions: Sequence[Region]) -> int:
    """The slice through the first region's centre (the middle slice without one)."""
    if image.spatial_ndim == 2:
        return 0
    for r in regions:
        if r.ndim == 3:
            return int(np.clip(round(r.center[2]), 0, image.shape[2] - 1))
    return image.shape[2] // 2


def render_detections(
    image: Image,
    findings: Sequence[Finding],
    *,
    colours: Mapping[str, tuple[int, int, int]] | None = None,
    slice_index: int | None = None,
    window: tuple[float, float] | None = None,
    min_size: int = 384,
    max_size: int = 768,
) -> NDArray[np.uint8]:
    """An RGB picture ``(rows, columns, 3)`` of ``image`` with each finding's region marked.

    Parameters
    ----------
    findings : sequence of Finding
        Findings with a :attr:`~medsight.core.findings.Finding.region` in ``image``'s index
        space (others are skipped); numbered from 1 in this order.
    colours : mapping, optional
        Outline colour per finding meaning (class); a palette otherwise.

    Raises
    ------
    InvalidInputError
        A region's dimensionality differs from the image's.

    Examples
    --------
    >>> from medsight.core.codes import MASS
    >>> from medsight.core.findings import FindingKind, Region
    >>> f = Finding(MASS, "m", "1", kind=FindingKind.DETECTION, probability=0.9,
    ...             region=Region((20, 10), (8, 8), "ellipse"))
    >>> render_detections(Image(np.zeros((40, 30))), [f]).shape[2]
    3
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    marked = [(f, f.region) for f in findings if f.region is not None]
    for f, r in marked:
        if r.ndim != image.spatial_ndim:
            raise InvalidInputError(
                f"finding {f.finding.meaning}",
                f"has a {r.ndim}D region on a {image.spatial_ndim}D image",
            )
    nd = image.spatial_ndim
    k = _slice_of(image, [r for _, r in marked]) if slice_index is None else slice_index
    arr = np.asarray(image.array)
    plane = arr[:, :, k] if nd == 3 else arr
    rgb = np.swapaxes(_to_rgb(plane, window), 0, 1)  # rows = j, columns = i
    spacing = (float(image.spacing[1]), float(image.spacing[0]))
    size = display_size(rgb.shape[:2], spacing, min_size=min_size, max_size=max_size)
    shown = (np.clip(_resize_rgb(np.ascontiguousarray(rgb), size), 0, 1) * 255).astype(np.uint8)
    sx, sy = size[1] / rgb.shape[1], size[0] / rgb.shape[0]  # display pixels per image pixel
    canvas = PILImage.fromarray(shown)
    draw = ImageDraw.Draw(canvas)
    fs = int(np.clip(round(min(size) / 28), 12, 22))
    font = _font(fs)
    line = max(2, round(min(size) / 200))
    palette: dict[str, tuple[int, int, int]] = dict(colours or {})
    for n, (f, r) in enumerate(marked, start=1):
        if nd == 3 and abs(k - r.center[2]) > max(r.size[2] / 2, 0.5):
            continue  # the region does not cross the slice shown
        colour = palette.setdefault(f.finding.meaning, _PALETTE[len(palette) % len(_PALETTE)])
        x0 = (r.center[0] - r.size[0] / 2 + 0.5) * sx
        x1 = (r.center[0] + r.size[0] / 2 + 0.5) * sx
        y0 = (r.center[1] - r.size[1] / 2 + 0.5) * sy
        y1 = (r.center[1] + r.size[1] / 2 + 0.5) * sy
        box = (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))
        if r.shape == "ellipse":
            draw.ellipse(box, outline=colour, width=line)
        else:
            draw.rectangle(box, outline=colour, width=line)
        text = mark_label(n, f)
        width = draw.textlength(text, font=font)
        tx = float(np.clip(x0, 0, max(0, size[1] - width)))
        ty = y0 - fs - line - 2 if y0 - fs - line - 2 >= 0 else min(y1 + line, size[0] - fs - 2)
        draw.rectangle((tx, ty, tx + width + 4, ty + fs + 2), fill=(0, 0, 0))
        draw.text((tx + 2, ty), text, fill=colour, font=font)
    title = f"{len(marked)} detection{'s' if len(marked) != 1 else ''}"
    if nd == 3:
        title += f" (slice {k + 1} of {image.shape[2]})"
    return _compose([np.asarray(canvas, dtype=np.uint8)], [title], heat=False, entries=[])
