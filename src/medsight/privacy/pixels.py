"""Burned-in text: flag the images that may carry it, find it with OCR and black it out.

Header de-identification cannot remove a name written into the pixels.  :func:`burned_in_risk`
lists the reasons an image may carry text (Burned In Annotation = YES, ultrasound, secondary
capture, workstation screen captures).  :func:`scrub_burned_in_text` runs the ``tesseract`` OCR
binary (Debian package ``tesseract-ocr``) on every frame, fills each word box it finds (confident
words of two or more characters, no taller than a line of text) with the darkest value and
writes the pixels back uncompressed (a compressed input is decoded and the output is Explicit VR
Little Endian).

Limits: OCR misses text it cannot read (tiny, rotated, low contrast), so a flagged image still
deserves a human look; and on anatomy it now and then reads a structure as a short word (in one
of eight sampled slices of the brain MR study), which would black out real pixels.  That is why
the batch scrubs only flagged images unless asked for all
(:class:`~medsight.privacy.profile.PixelScrub`).

Examples
--------
>>> from pydicom import examples
>>> burned_in_risk(examples.ct)
[]
>>> ds = examples.rgb_color
>>> burned_in_risk(ds)
['modality US (ultrasound images usually carry text)']
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medsight.privacy.errors import DeidError, OcrUnavailableError

__all__ = ["TextBox", "burned_in_risk", "find_text", "scrub_burned_in_text"]

_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
# OCR reads letters into anatomy and noise; keep only confident words of 2+ letters or digits
# whose box is no taller than a line of text (10% of the image, at least 32 pixels)
_MIN_CONFIDENCE = 60.0
_MIN_CHARACTERS = 2
_MAX_LINE_FRACTION = 0.10


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


def burned_in_risk(ds: Dataset) -> list[str]:
    """Reasons why ``ds`` may carry burned-in text; an empty list if none is known."""
    reasons = []
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        reasons.append("Burned In Annotation is YES")
    if ds.get("Modality") == "US":
        reasons.append("modality US (ultrasound images usually carry text)")
    if str(ds.get("SOPClassUID", "")).startswith(_SECONDARY_CAPTURE_PREFIX):
        reasons.append("secondary capture image")
    if ds.get("ConversionType") in ("WSD", "SYN"):
        reasons.append(f"conversion type {ds.ConversionType} (screen or synthetic capture)")
    image_type = [str(v).upper() for v in ds.get("ImageType", []) or []]
    if "SCREEN SAVE" in image_type or "SCREENSHOT" in image_type:
        reasons.append("image type says screen save")
    return reasons


def tesseract_binary() -> str:
    """Path of the tesseract binary, or :class:`OcrUnavailableError` with how to install it."""
    path = shutil.which("tesseract")
    if path is None:
        raise OcrUnavailableError(
            "tesseract", "OCR binary not found", hint="apt-get install tesseract-ocr"
        )
    return path


def _to_uint8(frame: np.ndarray, monochrome1: bool) -> np.ndarray:
    if frame.ndim == 3:
        frame = frame.astype(np.float64).mean(axis=-1)
    frame = frame.astype(np.float64)
    low, high = float(frame.min()), float(frame.max())
    scaled = np.zeros_like(frame) if high <= low else (frame - low) / (high - low) * 255.0
    if monochrome1:
        scaled = 255.0 - scaled
    return scaled.astype(np.uint8)


def find_text(image: np.ndarray, *, frame: int = 0) -> list[TextBox]:
    """Words tesseract finds in one 2-D (or RGB) frame, boxes in the frame's pixel grid.

    The frame is scaled to 8 bits, inverted when bright (OCR reads dark text on light best: it
    tries both polarities) and enlarged 2x when small.
    """
    from PIL import Image

    binary = tesseract_binary()
    gray = _to_uint8(image, monochrome1=False)
    scale = 2 if max(gray.shape) < 1000 else 1
    boxes: dict[tuple[int, int, int, int], TextBox] = {}
    with tempfile.TemporaryDirectory(prefix="medsight-ocr-") as tmp:
        for polarity, pixels in (("dark", gray), ("light", 255 - gray)):
            png = Path(tmp) / f"{polarity}.png"
            img = Image.fromarray(pixels)
            if scale > 1:
                img = img.resize((img.width * scale, img.height * scale), Image.Resampling.LANCZOS)
            img.save(png)
            run = subprocess.run(
                [binary, str(png), "stdout", "--psm", "11", "tsv"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if run.returncode != 0:
                raise DeidError("tesseract", f"OCR failed: {run.stderr.strip()[:200]}")
            for line in run.stdout.splitlines()[1:]:
                cols = line.split("\t")
                if len(cols) < 12 or cols[0] != "5":
                    continue
                text, conf = cols[11].strip(), float(cols[10])
                if conf < _MIN_CONFIDENCE or sum(ch.isalnum() for ch in text) < _MIN_CHARACTERS:
                    continue
                left, top, width, height = (int(c) // scale for c in cols[6:10])
                if height > max(_MAX_LINE_FRACTION * gray.shape[0], 32):
                    continue
                boxes[(left, top, width, height)] = TextBox(
                    frame, left, top, max(width, 1), max(height, 1), text, conf
                )
    return sorted(boxes.values(), key=lambda b: (b.top, b.left))


def scrub_burned_in_text(ds: Dataset, *, pad: int = 3) -> list[TextBox]:
    """Black out every word OCR finds in the pixels of ``ds`` (modified in place).

    Returns the boxes removed.  When nothing is found the pixel data is left untouched (also
    its transfer syntax); otherwise Pixel Data is rewritten uncompressed, Explicit VR Little
    Endian, with the SOP Instance UID unchanged.
    """
    if "PixelData" not in ds:
        return []
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for undecodable pixel data
        raise DeidError(None, f"cannot decode pixel data for OCR: {exc}") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    stack = pixels if frames > 1 else pixels[np.newaxis]
    monochrome1 = ds.get("PhotometricInterpretation") == "MONOCHROME1"
    fill = stack.max() if monochrome1 else (0 if samples > 1 else stack.min())
    found: list[TextBox] = []
    out = stack.copy()
    for index in range(stack.shape[0]):
        for box in find_text(stack[index], frame=index):
            found.append(box)
            top, left = max(box.top - pad, 0), max(box.left - pad, 0)
            out[index, top : box.top + box.height + pad, left : box.left + box.width + pad] = fill
    if not found:
        return []
    photometric = str(ds.PhotometricInterpretation)
    if (
        samples > 1
        and photometric.startswith("YBR")
        and ds.file_meta.TransferSyntaxUID.is_compressed
    ):
        photometric = "RGB"  # pydicom converts decoded YBR JPEG data to RGB
    result = out if frames > 1 else out[0]
    ds.set_pixel_data(
        result, photometric, int(ds.get("BitsStored", 8)), generate_instance_uid=False
    )
    return found
