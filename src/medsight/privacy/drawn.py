"""Drawn burned-in text: synthetic ultrasound-like images with names, IDs and dates written in.

Real images with burned-in identifiers cannot be shared, so the tests and the recall benchmark
(``benchmarks/deid_burnin_recall.py``) draw their own: a speckled ultrasound fan (Rayleigh
noise, smoothed) on black, and the header's own values written with PIL in the DejaVu fonts
(``/usr/share/fonts/truetype/dejavu``, Debian's ``fonts-dejavu-core``; PIL's built-in font when
missing) at a given size, brightness and colour, at random positions.  Every drawn string comes
with its ink mask, so a test can check that the scrub boxes cover every inked pixel.

Examples
--------
>>> import numpy as np
>>> case = draw_case(np.random.default_rng(0), size=(200, 260), text_size=16)
>>> case.dataset.Modality, len(case.strings) >= 3, case.dataset.Rows
('US', True, 200)
>>> all(s.ink.any() for s in case.strings)
True
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage

__all__ = ["FONT_DIR", "DrawnCase", "DrawnString", "draw_case", "fonts", "speckle_background"]

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
_FONT_NAMES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansCondensed.ttf",
)
_FAMILY = ("QUIXOTE", "ZEBULON", "MARCHETTI", "OKONKWO", "LINDQVIST", "HARGREAVES", "DELACROIX")
_GIVEN = ("Amara", "Tobias", "Ingrid", "Rafael", "Yusuf", "Margot", "Casimir", "Elodie")
_PLACES = ("ST BRENDAN HOSP", "NORTHFIELD CLINIC", "RIVERSIDE MED CTR", "KLINIKUM OSTHAFEN")
_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%b-%Y", "%b %d %Y")
_COLOURS = ((255, 255, 255), (255, 255, 0), (0, 255, 255), (120, 255, 120), (255, 200, 80))


@dataclass(frozen=True)
class DrawnString:
    """One string drawn: what kind of identifier, the text, its ink (a boolean mask) and
    whether it is grey (white at some brightness) rather than coloured."""

    kind: str
    text: str
    ink: np.ndarray
    grey: bool = False  # drawn in white or grey (no colour to tell it from grey anatomy)


@dataclass(frozen=True)
class DrawnCase:
    """A drawn image as a DICOM dataset (modality US, RGB) and the strings drawn into it."""

    dataset: Dataset
    strings: tuple[DrawnString, ...]


def fonts() -> list[Path | None]:
    """The DejaVu fonts available (None stands for PIL's built-in font when none is)."""
    found = [FONT_DIR / n for n in _FONT_NAMES if (FONT_DIR / n).exists()]
    return list(found) or [None]


def _font(path: Path | None, size: int) -> object:
    from PIL import ImageFont

    return ImageFont.load_default(size) if path is None else ImageFont.truetype(str(path), size)


def speckle_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """An ultrasound-like frame (uint8): a speckled fan on black, brightness up to about 200."""
    from scipy import ndimage

    rows, cols = size
    speckle = ndimage.gaussian_filter(rng.rayleigh(0.25, size), 1.0)
    yy, xx = np.mgrid[:rows, :cols]
    apex = (-0.25 * rows, cols / 2)
    radius = np.hypot(yy - apex[0], xx - apex[1])
    angle = np.abs(np.arctan2(xx - apex[1], yy - apex[0]))
    fan = (radius > 0.4 * rows) & (radius < 1.2 * rows) & (angle < 0.6)
    depth = np.clip(1.2 - radius / (1.4 * rows), 0.2, 1.0)
    image = speckle / speckle.max() * 200 * depth * fan
    return image.astype(np.uint8)


def _header(rng: np.random.Generator, seed: int) -> Dataset:
    family = str(rng.choice(_FAMILY))
    given = str(rng.choice(_GIVEN))
    study = dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3000)))
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 20000)))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{seed}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.78.{seed}"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.79.{seed}"
    ds.Modality = "US"
    ds.PatientName = f"{family}^{given}"
    ds.PatientID = f"{rng.integers(10, 99)}{rng.integers(100000, 999999)}"
    ds.AccessionNumber = f"A{rng.integers(1000000, 9999999)}"
    ds.InstitutionName = str(rng.choice(_PLACES))
    ds.StudyDate = study.strftime("%Y%m%d")
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    return ds


def _strings(ds: Dataset, rng: np.random.Generator) -> list[tuple[str, str]]:
    family, given = str(ds.PatientName).split("^")
    name = (
        f"{family}, {given}",
        f"{given} {family.title()}",
        f"{family}^{given}",
        f"{family} {given.upper()}",
    )[int(rng.integers(0, 4))]
    study = dt.datetime.strptime(ds.StudyDate, "%Y%m%d")
    birth = dt.datetime.strptime(ds.PatientBirthDate, "%Y%m%d")
    fmt = str(rng.choice(_DATE_FORMATS))
    out = [("name", name), ("id", f"ID {ds.PatientID}"), ("date", study.strftime(fmt))]
    extra = [("institution", str(ds.InstitutionName)), ("date", "DOB " + birth.strftime(fmt))]
    extra.append(("id", f"ACC {ds.AccessionNumber}"))
    for i in rng.permutation(len(extra))[: int(rng.integers(1, 3))]:
        out.append(extra[int(i)])
    return out


def draw_case(
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (240, 320),
    text_size: int | None = None,
    with_text: bool = True,
    anywhere: bool = False,
    seed: int = 0,
) -> DrawnCase:
    """A speckled US frame with the header's name, ID, dates (and more) drawn in.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice (font, size, colour, brightness, position, values).
    size : (rows, columns)
        Frame size.
    text_size : int, optional
        Font size in pixels (default: drawn from 10 to 40, capped so that the text fits).
    with_text : bool
        False draws no text (for the false-scrub measurement); ``strings`` is then empty.
    anywhere : bool
        Place text anywhere, not only in the border band where devices write it.
    seed : int
        Makes the UIDs unique.
    """
    from PIL import Image, ImageDraw

    ds = _header(rng, seed)
    background = speckle_background(rng, size)
    canvas = np.repeat(background[..., None], 3, axis=-1)
    strings: list[DrawnString] = []
    taken = np.zeros(size, bool)
    if with_text:
        font_path = fonts()[int(rng.integers(0, len(fonts())))]
        for kind, text in _strings(ds, rng):
            for _attempt in range(30):
                px = text_size or int(rng.integers(10, 41))
                font = _font(font_path, px)
                layer = Image.new("L", (size[1], size[0]), 0)
                draw = ImageDraw.Draw(layer)
                left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
                width, height = right - left, bottom - top
                if width >= size[1] - 4 or height >= size[0] // 3:
                    if text_size is None:
                        continue
                    break
                x = int(rng.integers(2, size[1] - width - 1)) - left
                y = _row(rng, size[0], height, anywhere) - top
                draw.text((x, y), text, fill=255, font=font)
                ink = np.asarray(layer) > 96
                grown = np.zeros_like(taken)
                ys, xs = np.nonzero(ink)
                grown[max(ys.min() - 6, 0) : ys.max() + 7, max(xs.min() - 6, 0) : xs.max() + 7] = (
                    True
                )
                if (grown & taken).any():
                    continue
                taken |= grown
                level = float(rng.uniform(0.55, 1.0))
                pick = int(rng.integers(0, len(_COLOURS)))
                colour = np.array(_COLOURS[pick]) * level
                alpha = np.asarray(layer, np.float64)[..., None] / 255.0
                canvas = (canvas * (1 - alpha) + colour * alpha).astype(np.uint8)
                strings.append(DrawnString(kind, text, ink, grey=pick == 0))
                break
    ds.Rows, ds.Columns = size
    ds.set_pixel_data(canvas, "RGB", 8, generate_instance_uid=False)
    return DrawnCase(ds, tuple(strings))


def _row(rng: np.random.Generator, rows: int, height: int, anywhere: bool) -> int:
    if anywhere or rng.random() < 0.15:
        return int(rng.integers(2, rows - height - 1))
    band = max(int(0.22 * rows) - height, 3)
    top = int(rng.integers(2, band + 2))
    return top if rng.random() < 0.5 else rows - height - top
