"""OCR of one frame with tesseract, on several renderings, grouped into lines of text.

One rendering is not enough: tesseract reads dark text on a light page, while burned-in text is
usually bright (white, yellow, cyan) on a dark image, sometimes on a coloured band, sometimes
tiny.  :func:`renderings` makes, from one frame,

* ``bright``: the per-pixel maximum over colour channels, binarised at a high threshold (bright
  text of any colour becomes black on white);
* ``inverted``: the inverted luminance (bright text becomes dark, anti-aliasing kept);
* ``dark``: the luminance as is, only when the frame is mostly light (dark text on a light
  screen capture);
* ``colour``: for colour frames with coloured pixels, the chroma (largest minus smallest
  channel) binarised: yellow, cyan or green annotations over grey anatomy stand out alone;

each enlarged 3x (frames up to 512 pixels), 2x (up to 1024) or not at all.  :func:`read_lines`
runs ``tesseract --psm 11`` (sparse text) on each and returns the lines it found (word boxes
united per line), in the frame's pixel grid, with the rendering they came from.  The binary is
called directly (Debian's ``tesseract-ocr``), single-threaded, its TSV output parsed.
:func:`read_crops` reads single lines (boxes the text-line detector found) on their own, each
with its own threshold.

Examples
--------
>>> import numpy as np
>>> [name for name, _, _ in renderings(np.zeros((64, 64), np.uint8))]
['bright', 'inverted']
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsight.privacy.errors import DeidError, OcrUnavailableError

__all__ = [
    "OcrLine",
    "OcrWord",
    "read_crops",
    "read_lines",
    "renderings",
    "tesseract_binary",
    "to_uint8",
]


@dataclass(frozen=True)
class OcrWord:
    """One word: box (left, top, width, height) in frame pixels, text, confidence 0-100."""

    left: int
    top: int
    width: int
    height: int
    text: str
    confidence: float


@dataclass(frozen=True)
class OcrLine:
    """Words tesseract put on one line of one rendering; the box unites theirs."""

    left: int
    top: int
    width: int
    height: int
    words: tuple[OcrWord, ...]
    rendering: str

    @property
    def text(self) -> str:
        """The words joined by spaces."""
        return " ".join(w.text for w in self.words)

    @property
    def confident(self) -> bool:
        """Whether a word of 2+ letters or digits was read with confidence 60 or more."""
        return any(w.confidence >= 60 and sum(c.isalnum() for c in w.text) >= 2 for w in self.words)

    @property
    def strong(self) -> bool:
        """Whether a word of 3+ letters or digits, 6+ pixels high, was read with confidence 75
        or more (OCR reads speckle as short, tiny, two-letter words; rarely as this)."""
        return any(
            w.confidence >= 75 and sum(c.isalnum() for c in w.text) >= 3 and w.height >= 6
            for w in self.words
        )


def tesseract_binary() -> str:
    """Path of the tesseract binary, or :class:`OcrUnavailableError` with how to install it."""
    path = shutil.which("tesseract")
    if path is None:
        raise OcrUnavailableError(
            "tesseract", "OCR binary not found", hint="apt-get install tesseract-ocr"
        )
    return path


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """Scale a frame (any dtype, 2-D or colour-last) to 0-255 over its own range."""
    frame = frame.astype(np.float64)
    low, high = float(frame.min()), float(frame.max())
    if high <= low:
        return np.zeros(frame.shape, np.uint8)
    return ((frame - low) / (high - low) * 255.0).round().astype(np.uint8)


_MIN_CHROMA = 40


def _scale_for(shape: tuple[int, ...]) -> int:
    size = max(shape[:2])
    return 3 if size <= 512 else 2 if size <= 1024 else 1


def renderings(frame: np.ndarray) -> list[tuple[str, np.ndarray, int]]:
    """``(name, 8-bit image for tesseract, scale)`` for one frame (see the module docs)."""
    from PIL import Image

    pixels = to_uint8(frame)
    if pixels.ndim == 3:
        luminance = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])[: pixels.shape[-1]]
        luminance = luminance.round().astype(np.uint8)
        brightest = pixels.max(axis=-1)
    else:
        luminance = brightest = pixels
    threshold = max(float(np.percentile(brightest, 99.5)) * 0.55, 48.0)
    bright = np.where(brightest >= threshold, 0, 255).astype(np.uint8)
    out = [("bright", bright), ("inverted", 255 - luminance)]
    if pixels.ndim == 3:
        chroma = pixels.max(axis=-1).astype(np.int16) - pixels.min(axis=-1)
        if np.percentile(chroma, 99.9) >= _MIN_CHROMA:  # coloured text over grey anatomy
            out.append(("colour", np.where(chroma >= _MIN_CHROMA, 0, 255).astype(np.uint8)))
    if np.median(luminance) > 160:
        out.append(("dark", luminance))
    scale = _scale_for(pixels.shape)
    result = []
    for name, image in out:
        img = Image.fromarray(image)
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.Resampling.LANCZOS)
        result.append((name, np.asarray(img), scale))
    return result


def _otsu_binary(gray: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    if gray.max() <= gray.min():
        return np.full(gray.shape, 255, np.uint8)
    return np.where(gray > threshold_otsu(gray), 0, 255).astype(np.uint8)


def read_crops(frame: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[OcrLine]:
    """OCR each box (left, top, width, height: a text line the detector found) on its own.

    The crop (with a margin of half its height) is binarised with Otsu's threshold on its
    brightest channel, so text over a coloured band or dim text gets its own threshold, enlarged
    to about 64 pixels of line height and read as one line (``--psm 7``).
    """
    from PIL import Image

    pixels = to_uint8(frame)
    brightest = pixels.max(axis=-1) if pixels.ndim == 3 else pixels
    found: list[OcrLine] = []
    for left, top, width, height in boxes:
        pad = max(2, height // 2)
        y0, x0 = max(top - pad, 0), max(left - pad, 0)
        crop = brightest[y0 : top + height + pad, x0 : left + width + pad]
        if crop.size == 0:
            continue
        scale = max(1, min(8, round(64 / max(height, 1))))
        for name, image in (("crop-bright", _otsu_binary(crop)),):
            img = Image.fromarray(image)
            img = img.resize((img.width * scale, img.height * scale), Image.Resampling.LANCZOS)
            for line in _parse(_run_tesseract(np.asarray(img), psm="7"), scale, name):
                found.append(
                    OcrLine(
                        line.left + x0,
                        line.top + y0,
                        line.width,
                        line.height,
                        tuple(
                            OcrWord(
                                w.left + x0, w.top + y0, w.width, w.height, w.text, w.confidence
                            )
                            for w in line.words
                        ),
                        name,
                    )
                )
    return found


def _run_tesseract(image: np.ndarray, psm: str = "11") -> str:
    from PIL import Image

    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    with tempfile.TemporaryDirectory(prefix="medsight-ocr-") as tmp:
        png = Path(tmp) / "frame.png"
        Image.fromarray(image).save(png)
        run = subprocess.run(
            [tesseract_binary(), str(png), "stdout", "--psm", psm, "tsv"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=env,
        )
    if run.returncode != 0:
        raise DeidError("tesseract", f"OCR failed: {run.stderr.strip()[:200]}")
    return run.stdout


def _parse(tsv: str, scale: int, rendering: str) -> list[OcrLine]:
    lines: dict[tuple[str, str, str], list[OcrWord]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        left, top, width, height = (int(c) // scale for c in cols[6:10])
        word = OcrWord(left, top, max(width, 1), max(height, 1), cols[11].strip(), float(cols[10]))
        lines.setdefault((cols[2], cols[3], cols[4]), []).append(word)
    out = []
    for words in lines.values():
        left = min(w.left for w in words)
        top = min(w.top for w in words)
        right = max(w.left + w.width for w in words)
        bottom = max(w.top + w.height for w in words)
        out.append(OcrLine(left, top, right - left, bottom - top, tuple(words), rendering))
    return out


def read_lines(frame: np.ndarray) -> list[OcrLine]:
    """Lines of text tesseract finds in one frame, on every rendering (see the module docs).

    Lines of different renderings overlap; callers unite or match them as they need.
    """
    found: list[OcrLine] = []
    for name, image, scale in renderings(frame):
        found += _parse(_run_tesseract(image), scale, name)
    return found
