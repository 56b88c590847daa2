"""Burned-in text: flag the images that may carry it, find it, black it out, and check.

Header de-identification cannot remove a name written into the pixels.

* :func:`burned_in_risk` lists why an image may carry text: Burned In Annotation YES (any
  modality), or a modality that usually carries it (US, OT/SC and every Secondary Capture
  class, ES/XC photographs, screen captures: flagged even if the header says NO, which vendors
  often write wrongly) or that often does (XA, RF, CR, DX, MG, IO, PX: flagged unless the header
  says NO).
* :func:`find_burned_in` finds the text of one frame two ways: OCR on several renderings
  (:mod:`~medsight.privacy.ocr`) and a text-line detector that needs no reading
  (:mod:`~medsight.privacy.text_regions`; with ``keep-readable``, a line only it found is
  then OCRed on its own), and matches what OCR read against the header's
  identifying values and generic date and ID patterns (:mod:`~medsight.privacy.identifiers`).
* :func:`scrub_burned_in_text` blacks out, in every frame, a box over each whole line with a
  safety margin (a third of the line height, at least 3 pixels; a whole line height left and
  right of a line that matched an identifier, in case OCR read only part of it), not just the
  characters read.
* :func:`read_burned_in` is the verification: it OCRs pixels (the output) with the same
  renderings, and each line the detector still finds on its own, and returns every
  identifying value or date it can still read, masked.

Policy (:class:`~medsight.privacy.profile.PixelText`): by default every text line found in a
flagged image is scrubbed, identifying or not: lines the detector finds, lines OCR reads that
match an identifier or pattern, and other lines OCR reads if they hold a clear word (3+
characters, confidence 75+; OCR alone reads speckle as short words).  With ``keep-readable``
a line that OCR reads confidently and that matches no identifying value, date or ID-like
pattern (e.g. ``L``, ``R``, ``5 cm``, ``MI 1.1``) is kept; a line the detector sees but OCR
cannot read is still scrubbed.
In images that usually carry text (US, SC/OT, ES/XC) lines are searched everywhere; in
radiographs and angiograms (text is in the margins, anatomy in the middle) only lines that
match an identifier anywhere, or any text line within the outer fifth of the frame, are
scrubbed.

Multi-frame images (cine loops): OCR runs on the first, middle and last frame and on the
per-pixel minimum over all frames (static overlays stay bright there, moving anatomy fades),
the text-line detector on every frame; boxes found are blacked out in every frame.

Limits: OCR and the detector miss text that is rotated, very small (under about 6 pixels
high), or of contrast lower than about a third of the image's range, and text drawn over
speckle; a flagged image still deserves a human look.  ``benchmarks/deid_burnin_recall.py``
measures recall on drawn images.

Examples
--------
>>> from pydicom import examples
>>> burned_in_risk(examples.ct)
[]
>>> burned_in_risk(examples.rgb_color)
['modality US (usually carries burned-in text)']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from medsight.privacy.errors import DeidError
from medsight.privacy.identifiers import IdentifyingValue, Match, header_values, mask, match_text
from medsight.privacy.ocr import OcrLine, read_crops, read_lines, tesseract_binary
from medsight.privacy.text_regions import find_text_lines

__all__ = [
    "FoundLine",
    "PixelLeak",
    "ScrubRegion",
    "TextBox",
    "burned_in_risk",
    "find_burned_in",
    "find_text",
    "frames_of",
    "read_burned_in",
    "scrub_burned_in_text",
    "tesseract_binary",
]

_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
TEXT_MODALITIES = frozenset({"US", "OT", "SC", "ES", "XC", "GM", "DOC"})
OFTEN_TEXT_MODALITIES = frozenset({"XA", "RF", "CR", "DX", "MG", "IO", "PX"})
_BORDER = 0.2
# match kinds that make verification fail (ID-like patterns only warn: scale labels look alike)
FAILING_KINDS = frozenset(
    {"name", "id", "institution", "date", "address", "phone", "device", "date pattern"}
)


@dataclass(frozen=True)
class TextBox:
    """A word OCR found: frame index, box in pixels (left, top, width, height), text."""

    frame: int
    left: int
    top: int
    width: int
    height: int
    text: str
    confidence: float


@dataclass(frozen=True)
class ScrubRegion:
    """A box blacked out: ``frame`` (None: every frame), box in pixels, how it was found
    (``ocr``, ``text-region`` or both), the kinds of identifying values matched and the text
    read, masked (:func:`~medsight.privacy.identifiers.mask`)."""

    frame: int | None
    left: int
    top: int
    width: int
    height: int
    sources: tuple[str, ...]
    kinds: tuple[str, ...] = ()
    masked: str = ""

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready description (never the text in clear)."""
        return {
            "frame": "all" if self.frame is None else self.frame,
            "box": [self.left, self.top, self.width, self.height],
            "found_by": list(self.sources),
            "matched": list(self.kinds),
            "text_masked": self.masked,
        }

    def __str__(self) -> str:
        where = "all frames" if self.frame is None else f"frame {self.frame}"
        kinds = ", ".join(self.kinds) or "unmatched text"
        read = f" '{self.masked}'" if self.masked else ""
        return (
            f"{where} ({self.left},{self.top},{self.width}x{self.height}) "
            f"by {'+'.join(self.sources)}: {kinds}{read}"
        )


@dataclass(frozen=True)
class PixelLeak:
    """An identifying value or a date OCR still reads in pixels (masked)."""

    frame: int | None
    kind: str
    masked: str
    box: tuple[int, int, int, int]


def burned_in_risk(ds: Dataset) -> list[str]:
    """Reasons why ``ds`` may carry burned-in text; an empty list if none is known."""
    reasons = []
    annotation = str(ds.get("BurnedInAnnotation", "") or "").upper()
    modality = str(ds.get("Modality", "") or "").upper()
    if annotation == "YES":
        reasons.append("Burned In Annotation is YES")
    if modality in TEXT_MODALITIES:
        reasons.append(f"modality {modality} (usually carries burned-in text)")
    elif modality in OFTEN_TEXT_MODALITIES and annotation != "NO":
        reasons.append(f"modality {modality} without Burned In Annotation NO")
    if str(ds.get("SOPClassUID", "")).startswith(_SECONDARY_CAPTURE_PREFIX):
        reasons.append("secondary capture image")
    if ds.get("ConversionType") in ("WSD", "SYN", "DF", "DV", "DI"):
        reasons.append(f"conversion type {ds.ConversionType} (screen, scan or video capture)")
    image_type = [str(v).upper() for v in ds.get("ImageType", []) or []]
    if "SCREEN SAVE" in image_type or "SCREENSHOT" in image_type:
        reasons.append("image type says screen save")
    return reasons


def _text_everywhere(ds: Dataset) -> bool:
    """Whether text may be anywhere (screens, ultrasound) rather than in the margins only."""
    modality = str(ds.get("Modality", "") or "").upper()
    if modality in TEXT_MODALITIES:
        return True
    if str(ds.get("SOPClassUID", "")).startswith(_SECONDARY_CAPTURE_PREFIX):
        return True
    return ds.get("ConversionType") in ("WSD", "SYN")


def find_text(image: np.ndarray, *, frame: int = 0) -> list[TextBox]:
    """Words OCR reads confidently in one 2-D (or colour-last) frame, on every rendering."""
    boxes: dict[tuple[int, int, int, int, str], TextBox] = {}
    for line in read_lines(image):
        for w in line.words:
            if w.confidence >= 60 and sum(c.isalnum() for c in w.text) >= 2:
                key = (w.left, w.top, w.width, w.height, w.text)
                boxes[key] = TextBox(frame, w.left, w.top, w.width, w.height, w.text, w.confidence)
    return sorted(boxes.values(), key=lambda b: (b.top, b.left))


@dataclass
class FoundLine:
    """A line of burned-in text found in one frame (box: left, top, right, bottom), by which
    methods (``ocr``, ``text-region``), what it matched and what OCR read; ``texts`` are in
    clear, so mask them before showing them (:class:`ScrubRegion` does)."""

    left: int
    top: int
    right: int
    bottom: int
    sources: set[str] = field(default_factory=set)
    matches: list[Match] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    readable: bool = False  # read confidently by OCR with no identifying match
    strong: bool = False  # OCR read a clear word (see OcrLine.strong)

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def joins(self, other: FoundLine) -> bool:
        """Overlapping, or side by side on one line (within 2.5 line heights: words of one
        line that OCR and the detector saw only in parts become one box)."""
        tall = max(self.height, other.height, 1)
        vertical = min(self.bottom, other.bottom) - max(self.top, other.top)
        if vertical < 0.4 * min(self.height, other.height):
            return False
        gap = max(self.left, other.left) - min(self.right, other.right)
        return gap <= 2.5 * tall

    def absorb(self, other: FoundLine) -> None:
        self.left, self.top = min(self.left, other.left), min(self.top, other.top)
        self.right, self.bottom = max(self.right, other.right), max(self.bottom, other.bottom)
        self.matches += other.matches
        self.texts += other.texts
        self.strong = self.strong or other.strong
        if "ocr" not in other.sources:
            pass  # a detector box adds no reading: the OCR verdict stands
        elif "ocr" not in self.sources:
            self.readable = other.readable
        else:
            self.readable = self.readable and other.readable
        self.sources |= other.sources


def _merge(candidates: list[FoundLine]) -> list[FoundLine]:
    merged = True
    while merged:
        merged = False
        out: list[FoundLine] = []
        for cand in sorted(candidates, key=lambda c: (c.top, c.left)):
            for kept in out:
                if kept.joins(cand):
                    kept.absorb(cand)
                    merged = True
                    break
            else:
                out.append(cand)
        candidates = out
    return candidates


_MAX_CROPS = 60


def _overlap(a: FoundLine, b: FoundLine) -> bool:
    return a.left < b.right and b.left < a.right and a.top < b.bottom and b.top < a.bottom


def _read_region(region: FoundLine, image: np.ndarray, values: list[IdentifyingValue]) -> None:
    """OCR a line only the detector found, on its own (it gives the line a text and a verdict)."""
    lines: list[OcrLine] = read_crops(
        image, [(region.left, region.top, region.right - region.left, region.height)]
    )
    texts = [line.text for line in lines if line.text.strip()]
    if not texts:
        return
    matches = [m for line in lines for m in match_text(line.text, values)]
    region.sources.add("ocr")
    region.texts += texts
    region.matches += matches
    region.readable = any(line.confident for line in lines) and not matches
    region.strong = any(line.strong for line in lines)


def _in_border(c: FoundLine, shape: tuple[int, ...]) -> bool:
    rows, cols = shape[0], shape[1]
    cy, cx = (c.top + c.bottom) / 2, (c.left + c.right) / 2
    return min(cy, rows - cy) < _BORDER * rows or min(cx, cols - cx) < _BORDER * cols


def find_burned_in(
    frame: np.ndarray,
    values: list[IdentifyingValue],
    *,
    everywhere: bool = True,
    keep_readable: bool = False,
    ocr_frame: np.ndarray | None = None,
    extra_regions: list[np.ndarray] | None = None,
) -> list[FoundLine]:
    """Lines of text to scrub in one frame (see the module docs for the policy).

    ``ocr_frame`` is read by OCR instead of ``frame`` (the temporal minimum of a cine loop);
    ``extra_regions`` are more frames whose text lines count too.
    """
    shape = frame.shape
    candidates: list[FoundLine] = []
    for line in read_lines(frame if ocr_frame is None else ocr_frame):
        matches = match_text(line.text, values)
        if not matches and not line.confident:
            continue
        candidates.append(
            FoundLine(
                line.left,
                line.top,
                line.left + line.width,
                line.top + line.height,
                {"ocr"},
                matches,
                [line.text],
                readable=line.confident and not matches,
                strong=line.strong,
            )
        )
    read = list(candidates)
    for image in [frame, *(extra_regions or [])]:
        for box in find_text_lines(image):
            region = FoundLine(
                box.left, box.top, box.left + box.width, box.top + box.height, {"text-region"}
            )
            # a line only the detector found is blacked out anyway; to keep it, read it first
            unread = not any(_overlap(region, c) for c in read)
            if keep_readable and unread and len(candidates) < _MAX_CROPS:
                _read_region(region, frame if ocr_frame is None else ocr_frame, values)
            candidates.append(region)
    lines = _merge(candidates)
    chosen = []
    for line in lines:
        if line.matches:
            chosen.append(line)
            continue
        if not everywhere and not _in_border(line, shape):
            continue
        if line.sources == {"ocr"} and not line.strong:
            continue  # short words OCR alone reads, unmatched: speckle more often than text
        if keep_readable and line.readable and "ocr" in line.sources:
            continue
        chosen.append(line)
    return chosen


def frames_of(ds: Dataset) -> np.ndarray:
    """The decoded frames of ``ds``, frames first (a single frame gets a length-1 axis)."""
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for undecodable pixel data
        raise DeidError(None, f"cannot decode pixel data for OCR: {exc}") from exc
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels = apply_color_lut(pixels, ds)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return pixels if frames > 1 else pixels[np.newaxis]


def _ocr_plan(stack: np.ndarray) -> list[tuple[int | None, np.ndarray]]:
    """(frame index or None for a summary image, image to OCR) for a stack of frames."""
    count = stack.shape[0]
    if count <= 3:
        return [(i, stack[i]) for i in range(count)]
    picks = sorted({0, count // 2, count - 1})
    return [(i, stack[i]) for i in picks] + [(None, stack.min(axis=0))]


def _display(stack: np.ndarray, ds: Dataset) -> np.ndarray:
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        return stack.max() - stack  # OCR and the detector see it as displayed
    return stack


def scrub_burned_in_text(
    ds: Dataset,
    *,
    values: list[IdentifyingValue] | None = None,
    keep_readable: bool = False,
) -> list[ScrubRegion]:
    """Black out the burned-in text of ``ds`` (modified in place); return the boxes removed.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An image; its header (before de-identification) supplies the identifying values.
    values : list of IdentifyingValue, optional
        Values to match instead of those of ``ds``'s header.
    keep_readable : bool
        Keep lines OCR reads confidently that match nothing identifying (see module docs).

    Returns
    -------
    list of ScrubRegion
        Empty when nothing was found; then Pixel Data is untouched (also its transfer syntax).
        Otherwise Pixel Data is rewritten uncompressed (Explicit VR Little Endian), the SOP
        Instance UID unchanged.
    """
    if "PixelData" not in ds:
        return []
    values = header_values(ds) if values is None else values
    raw = frames_of(ds)
    stack = _display(raw, ds)
    everywhere = _text_everywhere(ds)
    regions: list[ScrubRegion] = []
    plan = _ocr_plan(stack)
    single = stack.shape[0] == 1
    for index, image in plan:
        others = [stack[i] for i in range(stack.shape[0])] if index is None else None
        base = stack[0] if index is None else image
        found = find_burned_in(
            base,
            values,
            everywhere=everywhere,
            keep_readable=keep_readable,
            ocr_frame=image,
            extra_regions=others,
        )
        for c in found:
            pad = max(3, round(c.height / 3))
            # an identifying line OCR read only in part: widen by a line height each side
            wide = max(pad, c.height) if c.matches else pad
            left, top = max(c.left - wide, 0), max(c.top - pad, 0)
            right = min(c.right + wide, stack.shape[2])
            bottom = min(c.bottom + pad, stack.shape[1])
            kinds = tuple(dict.fromkeys(m.kind for m in c.matches))
            regions.append(
                ScrubRegion(
                    0 if single else None,
                    left,
                    top,
                    right - left,
                    bottom - top,
                    tuple(sorted(c.sources)),
                    kinds,
                    mask(" ".join(dict.fromkeys(c.texts))) if c.texts else "",
                )
            )
    if not regions:
        return []
    _write_scrubbed(ds, raw, regions)
    return regions


def _write_scrubbed(ds: Dataset, raw: np.ndarray, regions: list[ScrubRegion]) -> None:
    samples = int(ds.get("SamplesPerPixel", 1))
    photometric = str(ds.PhotometricInterpretation)
    if photometric == "PALETTE COLOR":
        raw = frames_of_indices(ds)
    monochrome1 = photometric == "MONOCHROME1"
    out = raw.copy()
    if photometric == "PALETTE COLOR":
        fill: object = _darkest_palette_index(ds, out)
    else:
        fill = out.max() if monochrome1 else (0 if samples > 1 else out.min())
    for r in regions:
        out[:, r.top : r.top + r.height, r.left : r.left + r.width] = fill
    if samples > 1 and photometric.startswith("YBR"):
        photometric = "RGB"  # pydicom decodes YBR data to RGB
    result = out if int(ds.get("NumberOfFrames", 1) or 1) > 1 else out[0]
    ds.set_pixel_data(
        result, photometric, int(ds.get("BitsStored", 8)), generate_instance_uid=False
    )


def frames_of_indices(ds: Dataset) -> np.ndarray:
    """The stored palette indices of a PALETTE COLOR image, frames first."""
    pixels = ds.pixel_array
    return pixels if int(ds.get("NumberOfFrames", 1) or 1) > 1 else pixels[np.newaxis]


def _darkest_palette_index(ds: Dataset, indices: np.ndarray) -> int:
    from pydicom.pixels import apply_color_lut

    present = np.unique(indices)
    colours = apply_color_lut(present, ds).reshape(len(present), -1).sum(axis=-1)
    return int(present[int(np.argmin(colours))])


def read_burned_in(ds: Dataset, values: list[IdentifyingValue]) -> list[PixelLeak]:
    """Identifying values, dates and ID-like strings OCR still reads in the pixels of ``ds``.

    The verification of :func:`scrub_burned_in_text`: the same renderings and, for cine loops,
    the same frames.  Kinds in :data:`FAILING_KINDS` are leaks; ``id pattern`` is a warning.
    """
    if "PixelData" not in ds:
        return []
    stack = _display(frames_of(ds), ds)
    leaks = []
    for index, image in _ocr_plan(stack):
        lines = read_lines(image)
        read = [FoundLine(x.left, x.top, x.left + x.width, x.top + x.height) for x in lines]
        read = [c for c, x in zip(read, lines, strict=True) if x.confident]
        boxes = []
        for b in find_text_lines(image):  # lines OCR did not read clearly: on their own
            box = FoundLine(b.left, b.top, b.left + b.width, b.top + b.height)
            if not any(_overlap(box, c) for c in read):
                boxes.append((b.left, b.top, b.width, b.height))
        for line in lines + read_crops(image, boxes[:_MAX_CROPS]):
            for found in match_text(line.text, values):
                box = (line.left, line.top, line.width, line.height)
                leaks.append(PixelLeak(index, found.kind, found.masked, box))
    unique = {(leak.kind, leak.masked, leak.box): leak for leak in leaks}
    return list(unique.values())
