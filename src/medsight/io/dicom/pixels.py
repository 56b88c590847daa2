"""Decoding one DICOM object's pixels into physical values.

pydicom (with the pylibjpeg plug-ins) decodes the transfer syntax; this module applies what a
viewer applies before a human or a model looks at the numbers: the Modality LUT / Rescale Slope
and Intercept (CT in Hounsfield units), the palette for PALETTE COLOR, and the inversion of
MONOCHROME1 so that larger values are always brighter.  Frames come back as
``(frames, rows, columns[, samples])``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from medsight.core.errors import UnreadableFileError, UnsupportedFormatError, short_reason

__all__ = ["decode_frames", "rescale", "stored_value_range"]


def decode_frames(ds: Dataset, path: str | os.PathLike[str]) -> NDArray[np.generic]:
    """Decode the stored pixel values of ``ds`` as ``(frames, rows, columns[, samples])``.

    Colour is returned as RGB (YBR is converted; a palette is applied).

    Raises
    ------
    UnreadableFileError
        No pixel data, or fewer bytes than the header promises (a truncated file).
    UnsupportedFormatError
        A transfer syntax no installed decoder handles.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UnreadableFileError(path, "has no pixel data (not an image object?)")
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        arr = ds.pixel_array
    except NotImplementedError as exc:
        name = getattr(tsyntax, "name", str(tsyntax))
        raise UnsupportedFormatError(
            path,
            f"cannot decode transfer syntax {name}",
            hint="install a pydicom pixel-data plug-in for it, or convert the file with dcmdjpeg",
        ) from exc
    except (ValueError, EOFError, OSError) as exc:
        raise UnreadableFileError(
            path, f"pixel data cannot be decoded: {short_reason(exc)}"
        ) from exc
    except RuntimeError as exc:
        name = getattr(tsyntax, "name", str(tsyntax))
        if "no" in str(exc).lower() and "plugin" in str(exc).lower().replace("-", ""):
            raise UnsupportedFormatError(path, f"cannot decode transfer syntax {name}") from exc
        raise UnreadableFileError(
            path, f"pixel data cannot be decoded: {short_reason(exc)}"
        ) from exc
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    samples = int(ds.get("SamplesPerPixel", 1))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = samples > 1 or photometric == "PALETTE COLOR"
    if frames == 1 and arr.ndim == (3 if colour else 2):
        arr = arr[np.newaxis]
    return arr


def rescale(
    frames: NDArray[np.generic],
    slopes: Sequence[float],
    intercepts: Sequence[float],
    *,
    monochrome1: bool = False,
    stored_range: tuple[float, float] | None = None,
) -> NDArray[np.generic]:
    """Apply per-frame Rescale Slope/Intercept, then invert MONOCHROME1.

    Integer results stay integer (the smallest of int16/int32 that holds them) when every
    slope and intercept is integral; otherwise the result is float32.  MONOCHROME1 is inverted
    within the rescaled stored-value range, ``v -> lo + hi - v``.

    Examples
    --------
    >>> import numpy as np
    >>> rescale(np.array([[[0, 1000]]], dtype=np.uint16), [1.0], [-1024.0]).tolist()
    [[[-1024, -24]]]
    >>> rescale(np.array([[[0, 4095]]], dtype=np.uint16), [1.0], [0.0], monochrome1=True,
    ...         stored_range=(0, 4095)).tolist()
    [[[4095, 0]]]
    >>> rescale(np.array([[[2]]], dtype=np.uint16), [0.5], [0.25]).dtype
    dtype('float32')
    """
    slope = np.asarray(slopes, dtype=np.float64)
    inter = np.asarray(intercepts, dtype=np.float64)
    identity = bool(np.all(slope == 1.0) and np.all(inter == 0.0))
    integral = bool(np.all(slope == np.round(slope)) and np.all(inter == np.round(inter)))
    shape = (-1,) + (1,) * (frames.ndim - 1)
    lo_hi = None
    if stored_range is not None:
        ends = np.array(stored_range, dtype=np.float64)[:, None] * slope[None, :] + inter[None, :]
        lo_hi = (float(ends.min()), float(ends.max()))
    if identity and not monochrome1:
        return frames
    if integral and np.issubdtype(frames.dtype, np.integer):
        out64 = frames.astype(np.int64) * slope.astype(np.int64).reshape(shape) + inter.astype(
            np.int64
        ).reshape(shape)
        if monochrome1:
            lo, hi = lo_hi if lo_hi is not None else (int(out64.min()), int(out64.max()))
            out64 = int(lo) + int(hi) - out64
        for dtype in (np.int16, np.int32):
            info = np.iinfo(dtype)
            if out64.size == 0 or (out64.min() >= info.min and out64.max() <= info.max):
                return out64.astype(dtype)
        return out64
    out = frames.astype(np.float32) * slope.astype(np.float32).reshape(shape) + inter.astype(
        np.float32
    ).reshape(shape)
    if monochrome1:
        lo, hi = lo_hi if lo_hi is not None else (float(out.min()), float(out.max()))
        out = np.float32(lo + hi) - out
    return out


def stored_value_range(ds: Dataset) -> tuple[float, float]:
    """The range of stored values the header allows (from BitsStored and PixelRepresentation).

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.BitsStored = 12; ds.PixelRepresentation = 0
    >>> stored_value_range(ds)
    (0.0, 4095.0)
    """
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return (float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1))
    return (0.0, float(2**bits - 1))
