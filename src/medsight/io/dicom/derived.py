"""Write a derived DICOM series: new pixels (a denoised image) in the source series' headers.

Each source instance (one per slice, or one multi-frame object holding every slice) is copied
with:

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

A multi-frame source (an enhanced MR / CT object, or a legacy converted one) gives one
multi-frame object per source object, every frame rewritten in frame-number order: the
functional groups (plane position and orientation, pixel measures, dimension indices, timing)
are kept as they are, so the geometry is the source's; each frame's rescale comes from its
Pixel Value Transformation (per-frame, else shared, else the top-level attributes); value 1 of
the Image Type and of every Frame Type becomes ``DERIVED`` (value 2 is enumerated there and
stays); a Source Image Evidence Sequence names the source object; and each per-frame
functional group gets a
Derivation Image Sequence (derivation code DCM 113087 "Smoothing", the Derivation Description,
and a Source Image Sequence naming the source object and frame, purpose DCM 121322 "Source image
for image processing operation").  An image that covers only some of an object's frames is
refused (the rest would keep source pixels under a derived UID).

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
from typing import Any

import numpy as np

from medsight.core.errors import InvalidInputError, UnsupportedFormatError
from medsight.core.image import Image
from medsight.io.dicom.headers import read_dataset
from medsight.io.dicom.pixels import stored_value_range

__all__ = ["write_derived_series"]


def _stored(
    values: np.ndarray,
    ds: object,
    *,
    monochrome1: bool,
    rescale: tuple[float, float] | None = None,
) -> np.ndarray:
    """Real-world values -> stored values of ``ds``'s pixel type (rounded, clipped).

    ``rescale`` is ``(slope, intercept)`` when it is not ``ds``'s top-level one (a frame's)."""
    if rescale is None:
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    else:
        slope, intercept = rescale
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
        A pixel type the writer cannot hold (Bits Allocated other than 8, 16 or 32).
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import generate_uid

    final = Path(out)
    src = image.source
    if src is None or not src.sop_instance_uids:
        raise InvalidInputError("image", "has no DICOM source instances to derive a series from")
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
        if src.frame_numbers:
            for n, uid in enumerate(dict.fromkeys(src.sop_instance_uids)):
                if uid not in by_uid:
                    raise InvalidInputError(
                        f"source instance {uid}",
                        "is not among the source files",
                        hint="pass the file or series folder the image was read from",
                    )
                ds = _multiframe(arr, src, uid, by_uid[uid], series_uid, derivation, now)
                _finish(ds, description_suffix, now)
                target = tmp / f"{n + 1:04d}.dcm"
                ds.save_as(target, enforce_file_format=True)
                written.append(final / target.name)
        for k, uid in enumerate(() if src.frame_numbers else src.sop_instance_uids):
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
            ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
            _set_pixels(ds, pixels)
            _finish(ds, description_suffix, now)
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


def _finish(ds: Any, description_suffix: str, now: datetime.datetime) -> None:
    """Series description and number, content date and time, stale pixel attributes, meta."""
    from pydicom.uid import ExplicitVRLittleEndian

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
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def _set_pixels(ds: Any, pixels: np.ndarray) -> None:
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds["PixelData"].VR = "OB" if pixels.dtype.itemsize == 1 else "OW"


def _item_value(item: Any, name: str, attr: str) -> Any:
    if item is None or name not in item or not item[name].value:
        return None
    return item[name].value[0].get(attr)


def _frame_rescale(ds: Any, frame: int) -> tuple[float, float]:
    """``(slope, intercept)`` of 0-based ``frame``: per-frame, shared, then top-level groups."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    items = [per[frame] if per and frame < len(per) else None, shared[0] if shared else None]
    out = []
    for attr, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        value = next(
            (v for v in (_item_value(i, "PixelValueTransformationSequence", attr) for i in items)
             if v is not None),
            ds.get(attr, default),
        )  # fmt: skip
        out.append(float(value) if value not in (None, "") else default)
    if out[0] == 0:
        out[0] = 1.0
    return out[0], out[1]


def _derived_frame_types(ds: Any) -> None:
    """Value 1 of every ``*FrameTypeSequence`` Frame Type of the functional groups -> DERIVED."""
    groups = [*(ds.get("SharedFunctionalGroupsSequence") or [])]
    groups += [*(ds.get("PerFrameFunctionalGroupsSequence") or [])]
    for group in groups:
        for element in group:
            if element.keyword.endswith("FrameTypeSequence") and element.value:
                for item in element.value:
                    if "FrameType" in item:
                        item.FrameType = ["DERIVED", *list(item.FrameType)[1:]]


def _multiframe(
    arr: np.ndarray,
    src: Any,
    uid: str,
    source: Any,
    series_uid: str,
    derivation: str,
    now: datetime.datetime,
) -> Any:
    """The derived copy of multi-frame object ``source`` with the image's slices as frames."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import generate_uid

    n_frames = int(source.get("NumberOfFrames", 1) or 1)
    frame_of: dict[int, int] = {}  # 1-based frame number -> slice index k of the image
    for k, (u, f) in enumerate(zip(src.sop_instance_uids, src.frame_numbers, strict=True)):
        if u == uid:
            frame_of[int(f)] = k
    if sorted(frame_of) != list(range(1, n_frames + 1)):
        raise InvalidInputError(
            f"source instance {uid}",
            f"has {n_frames} frames but the image holds {len(frame_of)} of them",
            hint="write the result as NIfTI (--out result.nii.gz)",
        )
    if int(source.get("SamplesPerPixel", 1)) != 1:
        raise InvalidInputError(f"source instance {uid}", "is not grey-scale")
    photometric = str(source.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = np.stack(
        [
            _stored(
                arr[:, :, frame_of[f]].T,
                source,
                monochrome1=photometric == "MONOCHROME1",
                rescale=_frame_rescale(source, f - 1),
            )
            for f in range(1, n_frames + 1)
        ]
    )
    ds = source.copy()
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    per = ds.get("PerFrameFunctionalGroupsSequence")
    enhanced = bool(per) and len(per) == n_frames
    # enhanced IODs: value 2 of Image / Frame Type is enumerated (PRIMARY), only value 1 changes
    kept = list(ds.get("ImageType", []))[1 if enhanced else 2 :]
    ds.ImageType = ["DERIVED", *([] if enhanced else ["SECONDARY"]), *kept]
    _derived_frame_types(ds)
    ds.DerivationDescription = derivation[:1024]
    if enhanced:
        sop = Dataset()
        sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = source.SOPClassUID, uid
        series = Dataset()
        series.SeriesInstanceUID = str(source.SeriesInstanceUID)
        series.ReferencedSOPSequence = DicomSequence([sop])
        study = Dataset()
        study.StudyInstanceUID = str(source.StudyInstanceUID)
        study.ReferencedSeriesSequence = DicomSequence([series])
        ds.SourceImageEvidenceSequence = DicomSequence([study])
        for f, group in enumerate(per, start=1):
            ref = Dataset()
            ref.ReferencedSOPClassUID = source.SOPClassUID
            ref.ReferencedSOPInstanceUID = uid
            ref.ReferencedFrameNumber = f
            ref.PurposeOfReferenceCodeSequence = DicomSequence(
                [_code("121322", "Source image for image processing operation")]
            )
            item = Dataset()
            item.DerivationDescription = derivation[:1024]
            item.DerivationCodeSequence = DicomSequence([_code("113087", "Smoothing")])
            item.SourceImageSequence = DicomSequence([ref])
            group.DerivationImageSequence = DicomSequence([item])
    else:  # a multi-frame object without functional groups (ultrasound, NM ...)
        ref = Dataset()
        ref.ReferencedSOPClassUID = source.SOPClassUID
        ref.ReferencedSOPInstanceUID = uid
        ds.SourceImageSequence = DicomSequence([ref])
    _set_pixels(ds, frames)
    return ds


def _code(value: str, meaning: str) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item
