"""Decoding one DICOM object's pixels into physical values.

pydicom (with the pylibjpeg plug-ins) decodes the transfer syntax; this module applies what a
viewer applies before a human or a model looks at the numbers: the Modality LUT / Rescale Slope
and Intercept (CT in Hounsfield units), the palette for PALETTE COLOR, and the inversion of
MONOCHROME1 so that larger values are always brighter.  Frames come back as
``(frames, rows, columns[, samples])``.  Colour (RGB, YBR converted to RGB by pydicom, PALETTE
COLOR through its lookup tables) is always uint8 0-255: palette entries and samples of more
than 8 bits keep their 8 high-order bits (a 16-bit palette entry ``0xFF00`` is 255), as the LUT
descriptor's bits per entry (or Bits Stored) says.

Uncompressed monochrome pixels need no decoder: :func:`native_frames` says, from a header read
by :func:`~medsight.io.dicom.headers.read_header`, where a file's frames lie and how pydicom
would type them, and :meth:`NativeFrames.read_into` reads one frame straight into a
preallocated array, the values pydicom's ``pixel_array`` gives (same dtype and byte order,
unused high bits corrected the same way).  Anything else (compressed, colour, 1-bit, big
endian 8-bit, a length other than the frames', a file changed since its header was read)
goes through pydicom as before.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from medsight.core.errors import UnreadableFileError, UnsupportedFormatError, short_reason
from medsight.io.dicom.headers import pixel_data_location

__all__ = ["NativeFrames", "decode_frames", "native_frames", "rescale", "stored_value_range"]

#: Transfer syntaxes whose pixel data are stored as they are: Implicit VR Little Endian,
#: Explicit VR Little Endian, Explicit VR Big Endian.
_NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": True,
    "1.2.840.10008.1.2.1": True,
    "1.2.840.10008.1.2.2": False,
}


@dataclasses.dataclass(frozen=True)
class NativeFrames:
    """Where a file's uncompressed monochrome frames lie and how pydicom types them.

    Attributes
    ----------
    offset : int
        Byte offset of the Pixel Data value (the first frame) in the file.
    frame_bytes : int
        Bytes per frame (rows x columns x Bits Allocated / 8).
    dtype : numpy.dtype
        The dtype of pydicom's ``pixel_array`` for it (byte order included).
    unused_bits : int
        Bits Allocated - Bits Stored: shifted out and back, as pydicom does (sign-extending
        signed values).
    size, mtime_ns : int
        The file's size and modification time when its header was read.
    """

    path: Path
    offset: int
    frame_bytes: int
    frames: int
    rows: int
    columns: int
    dtype: np.dtype
    unused_bits: int
    size: int
    mtime_ns: int

    def read_into(self, out: NDArray[np.generic], frame: int = 0) -> bool:
        """Read frame ``frame`` into ``out`` (C-contiguous ``(rows, columns)`` of ``dtype``).

        Returns False, with ``out`` undefined, when the file changed since its header was read,
        holds fewer bytes now or has no such frame: read it the ordinary way then (which
        reports why).
        """
        if out.dtype != self.dtype or out.shape != (self.rows, self.columns):
            raise ValueError(f"out must be {self.dtype} {(self.rows, self.columns)}")
        if not 0 <= frame < self.frames:
            return False  # the ordinary way says what is wrong
        try:
            with open(self.path, "rb") as fp:
                st = os.fstat(fp.fileno())
                if (st.st_size, st.st_mtime_ns) != (self.size, self.mtime_ns):
                    return False
                fp.seek(self.offset + frame * self.frame_bytes)
                got = fp.readinto(out.view(np.uint8))
        except OSError:
            return False
        if got != self.frame_bytes:
            return False
        if self.unused_bits:
            np.left_shift(out, self.unused_bits, out=out)
            np.right_shift(out, self.unused_bits, out=out)
        return True


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def native_frames(ds: Dataset, path: str | os.PathLike[str]) -> NativeFrames | None:
    """How to read the pixels of ``ds`` (a header from ``read_header``) without pydicom, or None.

    Only the plain case: a native transfer syntax, one Pixel Data element found where pydicom
    reads it, MONOCHROME1/2 with one sample, 8, 16 or 32 bits allocated (not 8-bit big
    endian), valid Bits Stored / Pixel Representation, a valid Number of Frames, and a value
    exactly as long as its frames (plus the padding byte of an odd length).  Anything else:
    None, and the file is decoded by pydicom (:func:`decode_frames`) as it always was.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from medsight.io.dicom.headers import read_dataset, read_header
    >>> path = get_testdata_file("CT_small.dcm")
    >>> nf = native_frames(read_header(path), path)
    >>> out = np.empty((nf.rows, nf.columns), dtype=nf.dtype)
    >>> nf.read_into(out), bool(np.array_equal(out, decode_frames(read_dataset(path), path)[0]))
    (True, True)
    """
    location = pixel_data_location(ds)
    meta = getattr(ds, "file_meta", None)
    little = _NATIVE_SYNTAXES.get(str(meta.get("TransferSyntaxUID", ""))) if meta else None
    if location is None or little is None:
        return None
    if str(ds.get("PhotometricInterpretation", "")) not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    allocated, stored = _int(ds.get("BitsAllocated")), _int(ds.get("BitsStored"))
    representation = _int(ds.get("PixelRepresentation"))
    rows, columns = _int(ds.get("Rows")), _int(ds.get("Columns"))
    if (
        _int(ds.get("SamplesPerPixel")) != 1
        or allocated not in (8, 16, 32)
        or (allocated == 8 and not little)  # pydicom swaps 8-bit OW pairs: left to it
        or stored is None
        or not 1 <= stored <= allocated
        or representation not in (0, 1)
        or rows is None
        or columns is None
        or not (0 < rows <= 0xFFFF and 0 < columns <= 0xFFFF)
    ):
        return None
    if "NumberOfFrames" in ds:
        frames = _int(ds.get("NumberOfFrames"))
        if frames is None or frames < 1:
            return None
    elif "PerFrameFunctionalGroupsSequence" in ds:
        return None  # frames counted from the functional groups by decode_frames
    else:
        frames = 1
    frame_bytes = rows * columns * allocated // 8
    expected = frame_bytes * frames
    if location.length not in (expected, expected + expected % 2):
        return None  # short (pydicom says how) or with excess bytes (pydicom warns)
    dtype = np.dtype(f"{'ui'[representation]}{allocated // 8}")
    if little != (sys.byteorder == "little"):
        dtype = dtype.newbyteorder("S")
    return NativeFrames(
        Path(path),
        location.offset,
        frame_bytes,
        frames,
        rows,
        columns,
        dtype,
        allocated - stored,
        location.size,
        location.mtime_ns,
    )


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
    name = str(getattr(tsyntax, "name", tsyntax) or "unknown transfer syntax")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if "NumberOfFrames" not in ds and per_frame and len(per_frame) > 1:
        ds.NumberOfFrames = len(per_frame)  # an enhanced object without it (the series says so)
    try:
        arr = ds.pixel_array
    except NotImplementedError as exc:
        raise UnsupportedFormatError(
            path,
            f"cannot decode transfer syntax {name}: no installed decoder handles it",
            hint=_install_hint(tsyntax),
        ) from exc
    except (ValueError, EOFError, OSError) as exc:
        raise UnreadableFileError(
            path, f"{name} pixel data cannot be decoded: {short_reason(exc)}"
        ) from exc
    except RuntimeError as exc:
        text = str(exc)
        lower = text.lower()
        if "missing dependencies" in lower or (
            "no" in lower.split() and "plugin" in lower.replace("-", "") and "raised" not in lower
        ):
            raise UnsupportedFormatError(
                path,
                f"cannot decode transfer syntax {name}: no installed decoder handles it",
                hint=_install_hint(tsyntax),
            ) from exc
        failures = _plugin_failures(text)
        if failures:
            raise UnreadableFileError(
                path,
                f"{name} pixel data cannot be decoded; every installed decoder failed: "
                + "; ".join(f"{plugin}: {why}" for plugin, why in failures),
                hint="the data are corrupt or use a feature these decoders lack; "
                + _install_hint(tsyntax, other=True),
            ) from exc
        raise UnreadableFileError(
            path, f"{name} pixel data cannot be decoded: {short_reason(exc)}"
        ) from exc
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel", 1))
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = _to_uint8(apply_color_lut(arr, ds), _palette_bits(ds))
    elif samples > 1:
        arr = _to_uint8(arr, int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = samples > 1 or photometric == "PALETTE COLOR"
    if frames == 1 and arr.ndim == (3 if colour else 2):
        arr = arr[np.newaxis]
    return arr


#: Transfer syntax UID prefix -> the pydicom pixel-data plug-ins that decode it.
_DECODERS = {
    "1.2.840.10008.1.2.4.9": "pylibjpeg-openjpeg or python-gdcm",  # JPEG 2000
    "1.2.840.10008.1.2.4.20": "pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.4.8": "pyjpegls or pylibjpeg-libjpeg",  # JPEG-LS
    "1.2.840.10008.1.2.4.5": "pylibjpeg-libjpeg or Pillow",  # JPEG baseline / extended
    "1.2.840.10008.1.2.4.7": "pylibjpeg-libjpeg or python-gdcm",  # JPEG lossless
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",  # RLE (pydicom also decodes it itself)
}


def _install_hint(tsyntax: object, *, other: bool = False) -> str:
    """What to install (or how to convert) for a transfer syntax, as a hint.

    Examples
    --------
    >>> _install_hint("1.2.840.10008.1.2.4.90")
    'install pylibjpeg-openjpeg or python-gdcm (pip), or convert the file with gdcmconv --raw'
    """
    uid = str(tsyntax or "")
    plugins = next((v for k, v in _DECODERS.items() if uid.startswith(k)), None)
    convert = "convert the file with gdcmconv --raw"
    if plugins is None:
        return f"install a pydicom pixel-data plug-in for it, or {convert}"
    if other:
        return f"try another decoder ({plugins}) or {convert}"
    return f"install {plugins} (pip), or {convert}"


def _plugin_failures(text: str) -> list[tuple[str, str]]:
    """(plug-in, first line of its error) from pydicom's "all available plugins" message."""
    if "plugins:" not in text:
        return []
    out = []
    for line in text.split("plugins:", 1)[1].splitlines():
        plugin, sep, why = line.strip().partition(": ")
        if sep and plugin:
            out.append((plugin, why[:120]))
    return out


def _palette_bits(ds: Dataset) -> int:
    """Bits per palette entry: the third value of the LUT descriptor (PS3.3 C.7.6.3.1.5)."""
    for colour in ("Red", "Green", "Blue"):
        desc = ds.get(f"{colour}PaletteColorLookupTableDescriptor")
        if desc is not None and len(desc) == 3:
            return int(desc[2])
    return 16 if int(ds.get("BitsAllocated", 8)) > 8 else 8


def _to_uint8(arr: NDArray[np.generic], bits: int) -> NDArray[np.uint8]:
    """Colour values of ``bits`` bits -> 8 bits (the high-order bits), so every colour image
    (RGB, YBR, palette) is uint8 0-255.

    Examples
    --------
    >>> _to_uint8(np.array([0, 0x8000, 0xFF00, 0xFFFF], dtype=np.uint16), 16).tolist()
    [0, 128, 255, 255]
    """
    if bits > 8:
        arr = np.right_shift(arr.astype(np.uint32), bits - 8)
    return np.clip(arr, 0, 255).astype(np.uint8)


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
