"""Reading one image file for the adapters.

Uses :func:`medsight.io.read_image` when that module provides it; until then (and as a fallback
for plain PNG/JPEG/NIfTI) a small reader on Pillow and nibabel with the same conventions: 2D
arrays in index order ``(column, row[, channel])``, i.e. the transpose of Pillow's array.
Every failure becomes an :class:`~medsight.core.errors.UnreadableFileError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medsight.core import Image, MedsightError, UnreadableFileError

__all__ = ["read_image"]

_NIFTI = (".nii", ".nii.gz")


def _io_reader() -> object | None:
    try:
        from medsight.io import read_image as io_read  # type: ignore[attr-defined]
    except ImportError:
        return None
    return io_read


def _read_fallback(path: Path) -> Image:
    name = path.name.lower()
    if name.endswith(_NIFTI):
        import nibabel as nib

        return Image.from_nibabel(nib.load(path))
    from PIL import Image as PILImage

    with PILImage.open(path) as pil:
        pil.load()
        if pil.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr"):
            pil = pil.convert("RGB")
        elif pil.mode == "1":
            pil = pil.convert("L")
        arr = np.asarray(pil)
    arr = arr.transpose(1, 0, 2) if arr.ndim == 3 else arr.T
    return Image(arr, spatial_ndim=2)


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read one image file; raise UnreadableFileError naming it on any failure.

    Examples
    --------
    >>> read_image("no/such/file.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medsight.core.errors.UnreadableFileError: no/such/file.png: ...
    """
    p = Path(path)
    if not p.is_file():
        raise UnreadableFileError(p, "file does not exist")
    reader = _io_reader()
    try:
        if reader is not None:
            return reader(p)  # type: ignore[operator]
        return _read_fallback(p)
    except MedsightError:
        raise
    except Exception as exc:
        raise UnreadableFileError(p, f"cannot read image ({type(exc).__name__}: {exc})") from exc
