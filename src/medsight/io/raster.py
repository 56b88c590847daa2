"""PNG, JPEG and TIFF photographs and exported images (fundus, ultrasound, X-ray exports).

Arrays are returned in medsight's index order ``(column, row[, channel])``, the transpose of
Pillow's row-major layout.  These formats carry no patient geometry: the spacing is 1 (pixel
units) and ``meta["spacing_known"]`` is False.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medsight.core.errors import InvalidInputError, UnreadableFileError, short_reason
from medsight.core.image import Image
from medsight.io.atomic import atomic_path

__all__ = ["RASTER_SUFFIXES", "is_raster", "read_raster", "write_png"]

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def is_raster(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has a PNG/JPEG/TIFF/BMP file name.

    Examples
    --------
    >>> is_raster("fundus.JPG"), is_raster("a.nii.gz")
    (True, False)
    """
    return Path(path).suffix.lower() in RASTER_SUFFIXES


def _to_array(frame: object, path: Path) -> np.ndarray:
    from PIL import Image as PILImage

    assert isinstance(frame, PILImage.Image)
    mode = frame.mode
    if mode == "P":
        frame = frame.convert("RGBA" if "transparency" in frame.info else "RGB")
    elif mode in ("LA", "PA"):
        frame = frame.convert("L")
    elif mode == "CMYK" or mode == "YCbCr":
        frame = frame.convert("RGB")
    elif mode == "1":
        frame = frame.convert("L")
    arr = np.asarray(frame)
    if arr.ndim == 3 and arr.shape[2] == 4:  # drop alpha: medical content is opaque
        arr = arr[:, :, :3]
    if arr.ndim not in (2, 3):
        raise UnreadableFileError(path, f"unexpected pixel layout {arr.shape} (mode {mode})")
    return np.swapaxes(arr, 0, 1)


def read_raster(path: str | os.PathLike[str]) -> Image:
    """Read a PNG/JPEG/TIFF/BMP into a 2D Image (3D for multi-page TIFF).

    Examples
    --------
    >>> import skimage.data, pathlib, tempfile
    >>> from PIL import Image as PILImage
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "retina.png"
    >>> PILImage.fromarray(skimage.data.retina()[:50, :80]).save(p)
    >>> img = read_raster(p)
    >>> img.shape, img.n_channels
    ((80, 50), 3)
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    p = Path(path)
    try:
        with PILImage.open(p) as im:
            n = getattr(im, "n_frames", 1)
            frames = []
            for index in range(n):
                im.seek(index)
                frames.append(_to_array(im, p))
    except FileNotFoundError:
        raise UnreadableFileError(p, "does not exist") from None
    except UnidentifiedImageError:
        raise UnreadableFileError(p, "is not a readable PNG/JPEG/TIFF image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableFileError(p, f"truncated or corrupt image: {short_reason(exc)}") from None
    meta = {"files": (str(p),), "spacing_known": False, "spacing_source": None}
    if len(frames) == 1:
        arr = frames[0]
        return Image(arr, spatial_ndim=2, meta=meta)
    if any(f.shape != frames[0].shape for f in frames):
        raise UnreadableFileError(p, "pages of the TIFF have different sizes")
    stack = np.stack(frames, axis=2)
    return Image(stack, spatial_ndim=3, meta=meta)


def write_png(image: Image, path: str | os.PathLike[str]) -> Path:
    """Write a 2D grey (uint8/uint16) or RGB (uint8) Image as PNG, atomically.

    Raises
    ------
    InvalidInputError
        For 3D images or data types PNG cannot hold.
    """
    from PIL import Image as PILImage

    p = Path(path)
    if image.spatial_ndim != 2:
        raise InvalidInputError(p, "PNG holds 2D images only; write 3D images as NIfTI")
    arr = np.swapaxes(np.asarray(image.array), 0, 1)
    if arr.dtype not in (np.uint8, np.uint16) or (arr.ndim == 3 and arr.dtype != np.uint8):
        raise InvalidInputError(
            p, f"PNG needs uint8 (grey or RGB) or uint16 (grey) pixels, not {arr.dtype}"
        )
    with atomic_path(p) as tmp:
        PILImage.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")
    return p
