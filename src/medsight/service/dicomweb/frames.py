"""Frames and bulk data of a stored instance, in a transfer syntax the client accepts.

A frame goes out as stored when the client accepts that syntax (``transfer-syntax=*`` or by
name); otherwise it is decoded (pydicom's pixel handlers) to Explicit VR Little Endian.  A
syntax that can be neither is refused (:class:`NotAcceptable`, HTTP 406).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from medsight.core.errors import InvalidInputError, MedsightError

__all__ = ["NotAcceptable", "bulk_value", "frames"]

_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


class NotAcceptable(MedsightError):
    """The client accepts no transfer syntax the frame can be sent in (406)."""


def _native_frames(ds: Dataset, numbers: Sequence[int], n_frames: int) -> list[bytes]:
    bits = int(ds.BitsAllocated)
    if bits == 1:  # packed bits run across frame boundaries: unpack one byte per pixel
        arr = ds.pixel_array.reshape(n_frames, int(ds.Rows), int(ds.Columns))
        return [arr[n - 1].astype(np.uint8).tobytes() for n in numbers]
    size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
    data = ds.PixelData
    return [bytes(data[(n - 1) * size : n * size]) for n in numbers]


def frames(
    path: Path, numbers: Sequence[int], accepted: Sequence[str] | None
) -> tuple[list[bytes], str]:
    """Frames ``numbers`` (1-based) of the instance in ``path`` and the syntax they are in.

    Raises
    ------
    InvalidInputError
        No pixel data, or a frame number out of range.
    NotAcceptable
        ``accepted`` (None: any) names neither the stored syntax nor Explicit VR Little Endian.
    """
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise InvalidInputError(f"instance {ds.SOPInstanceUID}", "has no pixel data frames")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    bad = [n for n in numbers if not 1 <= n <= n_frames]
    if bad:
        raise InvalidInputError(f"frame {bad[0]}", f"out of range (the instance has {n_frames})")
    stored = UID(ds.file_meta.TransferSyntaxUID)
    if stored in _NATIVE and stored.is_little_endian:
        if accepted is None or ExplicitVRLittleEndian in accepted or stored in accepted:
            return _native_frames(ds, numbers, n_frames), ExplicitVRLittleEndian
        raise NotAcceptable("frames", f"can be sent as {ExplicitVRLittleEndian} only")
    if stored.is_compressed and (accepted is None or stored in accepted):
        from pydicom.encaps import generate_frames

        all_frames = list(generate_frames(ds.PixelData, number_of_frames=n_frames))
        return [all_frames[n - 1] for n in numbers], str(stored)
    if accepted is None or ExplicitVRLittleEndian in accepted:
        arr = ds.pixel_array
        arr = arr[None] if n_frames == 1 else arr
        little = arr.dtype.newbyteorder("<")
        out = [np.ascontiguousarray(arr[n - 1], dtype=little).tobytes() for n in numbers]
        return out, ExplicitVRLittleEndian
    raise NotAcceptable(
        "frames", f"stored as {stored}; accept it, {ExplicitVRLittleEndian} or transfer-syntax=*"
    )


def bulk_value(path: Path, keyword: str) -> bytes:
    """The raw value of top-level element ``keyword`` (e.g. ``PixelData``) of ``path``."""
    ds = pydicom.dcmread(path)
    if keyword not in ds:
        raise InvalidInputError(f"bulk data {keyword}", "is not in the instance")
    value = ds[keyword].value
    if not isinstance(value, bytes):
        raise InvalidInputError(f"bulk data {keyword}", "is not a binary element")
    return value
