"""Write a derived DICOM series: new pixels (a denoised image) in the source series' headers.

Each source instance (one per slice; multi-frame sources are not supported yet) is copied with:

* a new SeriesInstanceUID (one for the series) and SOPInstanceUID (one per instance), from
  :func:`pydicom.uid.generate_uid`; the StudyInstanceUID, FrameOfReferenceUID, patient and
  geometry attributes are kept, so the series sits beside its source in the same study;
* ImageType ``DERIVED\\SECONDARY`` (the rest of the source's values kept), Derivation
  Description naming the algorithm (the model id and version), a Source Image Sequence
  referencing the source SOP instance, a Series Description marked as derived;
* the new pixel values, given in the source's real-world units (after Rescale Slope /
  Intercept, MONOCHROME1 already inverted, as :meth:`medsight.io.dicom.DicomSeries.load`
  returns them), converted back to stored values with the source's slope and intercept,
  rounded and clipped into the stored range its Bits Stored and Pixel Representation allow;
  written uncompressed (Explicit VR Little Endian).

The series is written into a temporary folder beside ``out`` and renamed to ``out`` when every
file is written, so a failure leaves nothing half-written under ``out``.
"""

from __future__ import annotations

import datetime
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medsight.core.errors import InvalidInputError, UnsupportedFormatError
from medsight.core.image import Image
from medsight.io.dicom.headers import read_dataset
from medsight.io.dicom.pixels import stored_value_range

__all__ = ["write_derived_series"]


def _stored(values: np.ndarray, ds: object, *, monochrome1: bool) -> np.ndarray:
    """Real-world values -> stored values of ``ds``'s pixel type (rounded, clipped)."""
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    lo, hi = stored_value_range(ds)  # type: ignore[arg-type]
    v = values.astype(np.float64)
    if monochrome1:  # the reader showed v -> lo' + hi' - v in the rescaled range; undo it
        ends = np.array([lo, hi]) * slope + intercept
        v = ends.min() + ends.max() - v
    stored = np.clip(np.round((v - intercept) / slope), lo, hi)
    bits = int(getattr(ds, "BitsAllocated", 16))
    signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
    dtype = {
        8: np.int8 if signed else np.uint8,
        16: np.int16 if signed else np.uint16,
        32: np.int32 if signed else np.uint32,
    }.get(bits)
    if dtype is None:
        raise UnsupportedFormatError("BitsAllocated", f"{bits} bits are not supported")
    return stored.astype(dtype)


def write_derived_series(
    image: Image,
    out: str | os.PathLike[str],
    *,
    derivation: str,
    source_files: Sequence[str | os.PathLike[str]] | None = None,
    description_suffix: str = "denoised",
    overwrite: bool = False,
) -> list[Path]:
    """Write ``image`` (derived from a DICOM series) as a new series in folder ``out``.

    Parameters
    ----------
    image : Image
        The derived pixels on the source's grid, in its units, with its
        :attr:`~medsight.core.image.Image.source` (the source SOP instances in slice order).
    out : path
        The folder to create (one file per instance, ``0001.dcm`` ...).
    derivation : str
        Derivation Description: what made the pixels (e.g. the model id and version).
    source_files : sequence of path, optional
        The source files; default ``image.meta["files"]`` (as the DICOM reader records).
    overwrite : bool
        Replace an existing ``out``.

    Raises
    ------
    InvalidInputError
        No DICOM source, a source instance not found, ``out`` exists, colour images.
    UnsupportedFormatError
        Multi-frame sources.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    final = Path(out)
    src = image.source
    if src is None or not src.sop_instance_uids:
        raise InvalidInputError("image", "has no DICOM source instances to derive a series from")
    if src.frame_numbers:
        raise UnsupportedFormatError(
            "image",
            "derived series of multi-frame DICOM sources are not supported yet",
            hint="write the result as NIfTI (--out result.nii.gz)",
        )
    if image.n_channels > 1:
        raise InvalidInputError("image", "derived DICOM series are grey-scale only")
    if final.exists() and not overwrite:
        raise InvalidInputError(final, "already exists", hint="choose another --out")
    files = [Path(f) for f in (source_files or image.meta.get("files", ()))]
    by_uid = {}
    for f in files:
        ds = read_dataset(f)
        by_uid[str(ds.SOPInstanceUID)] = ds
    arr = np.asarray(image.array)
    if image.has_channels:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] != len(src.sop_instance_uids):
        raise InvalidInputError(
            "image",
            f"has {arr.shape[2]} slices but {len(src.sop_instance_uids)} source instances",
        )
    series_uid = generate_uid()
    now = datetime.datetime.now()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    written = []
    try:
        for k, uid in enumerate(src.sop_instance_uids):
            if uid not in by_uid:
                raise InvalidInputError(
                    f"source instance {uid}",
                    "is not among the source files",
                    hint="pass the series folder the image was read from",
                )
            ds = by_uid[uid].copy()
            photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
            if int(ds.get("SamplesPerPixel", 1)) != 1:
                raise InvalidInputError(f"source instance {uid}", "is not grey-scale")
            pixels = _stored(arr[:, :, k].T, ds, monochrome1=photometric == "MONOCHROME1")
            new_uid = generate_uid()
            ds.SOPInstanceUID = new_uid
            ds.SeriesInstanceUID = series_uid
            kept = list(ds.get("ImageType", []))[2:]
            ds.ImageType = ["DERIVED", "SECONDARY", *kept]
            ds.DerivationDescription = derivation[:1024]
            ref = Dataset()
            ref.ReferencedSOPClassUID = by_uid[uid].SOPClassUID
            ref.ReferencedSOPInstanceUID = uid
            ds.SourceImageSequence = DicomSequence([ref])
            desc = str(ds.get("SeriesDescription", "")).strip()
            ds.SeriesDescription = (f"{desc} {description_suffix}".strip())[:64]
            ds.SeriesNumber = int(ds.get("SeriesNumber", 0) or 0) + 1000
            ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
            for name in (
                "SmallestImagePixelValue",
                "LargestImagePixelValue",
                "LossyImageCompression",
                "LossyImageCompressionRatio",
                "LossyImageCompressionMethod",
            ):
                if name in ds:
                    del ds[name]
            ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
            ds.PixelData = np.ascontiguousarray(pixels).tobytes()
            ds["PixelData"].VR = "OB" if pixels.dtype.itemsize == 1 else "OW"
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPInstanceUID = new_uid
            target = tmp / f"{k + 1:04d}.dcm"
            ds.save_as(target, enforce_file_format=True)
            written.append(final / target.name)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return written
