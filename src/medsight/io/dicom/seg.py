"""Reading DICOM Segmentation objects (SEG, binary / fractional / labelmap) with highdicom.

A SEG stores frames per segment, often only the non-empty ones (highdicom's default), so it
cannot be stacked like an image series.  highdicom reads it:

* when the source series is in the same study, on **the source series' grid**
  (:meth:`highdicom.seg.Segmentation.get_pixels_by_source_instance` / ``_by_source_frame``):
  the Image has the source's shape and affine, and source slices without a frame are empty;
* otherwise on the SEG's own grid (:meth:`highdicom.seg.Segmentation.get_volume`), which spans
  only the frames stored, and a problem says the source series was not found.

Values: binary and labelmap segments that do not overlap become one label image whose values
are the segment numbers (``meta["segment_values"] == "labels"``).  Overlapping segments, and
every fractional SEG, become one channel per segment (``"channels"``; binary 0/1, fractional
0.0-1.0), in the order of ``meta["channel_segments"]``.  ``meta["segments"]`` lists each
segment's number, label, property category and type codes and algorithm.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from medsight.core.errors import UnreadableFileError, short_reason
from medsight.core.image import DicomReference, Image
from medsight.io.dicom.headers import captured_warnings

if TYPE_CHECKING:
    from highdicom.seg import Segmentation

    from medsight.io.dicom.series import DicomSeries

__all__ = ["SEGMENTATION_SOP_CLASSES", "SegmentationSeries", "is_segmentation", "link_source"]

#: Segmentation Storage and Label Map Segmentation Storage.
SEGMENTATION_SOP_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"}
)


def is_segmentation(ds: Dataset) -> bool:
    """Whether ``ds`` is a DICOM Segmentation (by SOP class, or Modality SEG with segments)."""
    sop = str(ds.get("SOPClassUID", ""))
    return sop in SEGMENTATION_SOP_CLASSES or (
        str(ds.get("Modality", "")) == "SEG" and "SegmentSequence" in ds
    )


def _code(item: Dataset, name: str) -> dict[str, str] | None:
    seq = item.get(name)
    if not seq:
        return None
    c = seq[0]
    return {
        "value": str(c.get("CodeValue", c.get("LongCodeValue", c.get("URNCodeValue", "")))),
        "scheme": str(c.get("CodingSchemeDesignator", "")),
        "meaning": str(c.get("CodeMeaning", "")),
    }


def segment_table(ds: Dataset) -> list[dict[str, Any]]:
    """Each segment of ``ds``: number, label, category / type codes and algorithm."""
    out = []
    for item in ds.get("SegmentSequence", []):
        alg = item.get("SegmentationAlgorithmIdentificationSequence")
        alg0 = alg[0] if alg else None
        out.append(
            {
                "number": int(item.get("SegmentNumber", 0)),
                "label": str(item.get("SegmentLabel", "")),
                "category": _code(item, "SegmentedPropertyCategoryCodeSequence"),
                "type": _code(item, "SegmentedPropertyTypeCodeSequence"),
                "algorithm_type": str(item.get("SegmentAlgorithmType", "")),
                "algorithm_name": str(item.get("SegmentAlgorithmName", ""))
                or (str(alg0.get("AlgorithmName", "")) if alg0 is not None else ""),
                "algorithm_version": str(alg0.get("AlgorithmVersion", ""))
                if alg0 is not None
                else "",
                "tracking_id": str(item.get("TrackingID", "")),
            }
        )
    return out


def _referenced_instances(ds: Dataset) -> tuple[set[str], set[str]]:
    """(referenced series UIDs, referenced SOP instance UIDs) of a SEG."""
    series, instances = set(), set()
    for ref in ds.get("ReferencedSeriesSequence", []):
        series.add(str(ref.get("SeriesInstanceUID", "")))
        for inst in ref.get("ReferencedInstanceSequence", []):
            instances.add(str(inst.get("ReferencedSOPInstanceUID", "")))
    for frame in ds.get("PerFrameFunctionalGroupsSequence", []) or []:
        for der in frame.get("DerivationImageSequence", []):
            for src in der.get("SourceImageSequence", []):
                instances.add(str(src.get("ReferencedSOPInstanceUID", "")))
    for src in ds.get("SourceImageSequence", []):
        instances.add(str(src.get("ReferencedSOPInstanceUID", "")))
    instances.discard("")
    series.discard("")
    return series, instances


@dataclasses.dataclass
class ObjectOnSeries:
    """A one-file DICOM object whose voxels lie on another series' grid (SEG, RTSTRUCT).

    Duck-types :class:`medsight.io.dicom.series.DicomSeries` for the study listing (key,
    header, modality, description, files, shape, problems, identities).
    """

    key: str
    header: Dataset
    path: Path
    problems: list[str] = dataclasses.field(default_factory=list)
    identities: tuple[tuple[str, str], ...] = ()
    spatial_ndim: int = 3
    n_channels: int = 1
    temporal: None = None
    frames_without_positions: bool = False

    @property
    def series_instance_uid(self) -> str:
        """SeriesInstanceUID of the object."""
        return str(self.header.get("SeriesInstanceUID", ""))

    @property
    def study_instance_uid(self) -> str:
        """StudyInstanceUID."""
        return str(self.header.get("StudyInstanceUID", ""))

    @property
    def files(self) -> tuple[Path, ...]:
        """The object's one file."""
        return (self.path,)


@dataclasses.dataclass
class SegmentationSeries(ObjectOnSeries):
    """A DICOM SEG found in a study, read with highdicom on its source series' grid."""

    source_series: DicomSeries | None = None

    @property
    def modality(self) -> str:
        """Always ``SEG``."""
        return "SEG"

    @property
    def description(self) -> str:
        """SeriesDescription, else the Content Label."""
        return str(self.header.get("SeriesDescription", "") or self.header.get("ContentLabel", ""))

    @property
    def segments(self) -> list[dict[str, Any]]:
        """The segment table (see :func:`segment_table`)."""
        return segment_table(self.header)

    @functools.cached_property
    def _own_geometry(self) -> tuple[tuple[int, int, int], NDArray[np.float64]] | None:
        """Shape (i, j, k) and affine of the SEG's own frames (headers only), or None."""
        import highdicom as hd

        try:
            geom = hd.seg.Segmentation.from_dataset(self.header, copy=True).get_volume_geometry()
        except Exception:  # a listing must not fail; load() reports it
            geom = None
        if geom is None:
            return None
        k, r, c = geom.spatial_shape
        return (c, r, k), np.asarray(geom.affine, dtype=np.float64)[:, [2, 1, 0, 3]]

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape (i, j, k) of the Image :meth:`load` returns."""
        if self.source_series is not None:
            return tuple(self.source_series.shape[:3])
        own = self._own_geometry
        return own[0] if own is not None else (int(self.header.Columns), int(self.header.Rows), 1)

    @property
    def affine(self) -> NDArray[np.float64]:
        """The affine of the Image :meth:`load` returns (identity when unknown before load)."""
        if self.source_series is not None:
            return self.source_series.affine
        own = self._own_geometry
        return own[1] if own is not None else np.eye(4)

    @property
    def spacing_source(self) -> str | None:
        """Where the pixel spacing comes from: the source series', or the SEG's own."""
        if self.source_series is not None:
            return self.source_series.spacing_source
        return "SEG functional groups"

    @property
    def slices(self) -> tuple[Any, ...]:
        """The source series' slices (what the SEG's voxels lie on), or none."""
        return self.source_series.slices if self.source_series is not None else ()

    def load(self, *, progress: Callable[[], None] | None = None) -> Image:
        """Read the segments with highdicom.

        Raises
        ------
        UnreadableFileError
            highdicom cannot read the SEG or place it on a grid.
        """
        import highdicom as hd

        try:
            with captured_warnings():  # header warnings were reported when it was scanned
                seg = hd.seg.Segmentation.from_dataset(_little_endian(self.path), copy=False)
        except Exception as exc:  # highdicom raises many kinds
            raise UnreadableFileError(
                self.path, f"DICOM SEG cannot be read by highdicom: {short_reason(exc)}"
            ) from exc
        if progress is not None:
            progress()
        seg_type = str(seg.segmentation_type.value)
        numbers = list(seg.segment_numbers)
        problems = list(self.problems)
        try:
            with captured_warnings():
                arr, overlap, affine = self._pixels(seg, seg_type, numbers)
        except (RuntimeError, ValueError, KeyError, AttributeError) as exc:
            raise UnreadableFileError(
                self.path, f"DICOM SEG frames cannot be placed on a grid: {short_reason(exc)}"
            ) from exc
        labels = arr.ndim == 3
        if self.source_series is None and arr.shape[2] == 1:
            problems.append(
                "one SEG frame and no source series: the slice spacing is unknown (1 unit is "
                "used along the slice normal; in-plane sizes are in mm)"
            )
        meta: dict[str, Any] = {
            "series_description": self.description,
            "segmentation_type": seg_type,
            "segments": self.segments,
            "segment_values": "labels" if labels else "channels",
            "segments_overlap": overlap,
            "channel_segments": None if labels else numbers,
            "source_series_instance_uid": (
                self.source_series.series_instance_uid if self.source_series else None
            ),
            "problems": tuple(problems),
            "files": (str(self.path),),
            "spacing_source": self.spacing_source,
            "spacing_known": True,
            # one frame on its own grid: highdicom gives the slice axis a unit length
            "slice_spacing_known": self.source_series is not None or arr.shape[2] > 1,
        }
        if overlap:
            meta["channel_axis"] = "segment"
        source = DicomReference(
            study_instance_uid=self.study_instance_uid,
            series_instance_uid=self.series_instance_uid,
            sop_instance_uids=(str(self.header.get("SOPInstanceUID", "")),),
            sop_class_uid=str(self.header.get("SOPClassUID", "")) or None,
            frame_of_reference_uid=str(self.header.get("FrameOfReferenceUID", "")) or None,
        )
        return Image(arr, affine, spatial_ndim=3, modality="SEG", source=source, meta=meta)

    def _pixels(
        self, seg: Segmentation, seg_type: str, numbers: list[int]
    ) -> tuple[np.ndarray, bool, np.ndarray]:
        """(array in (i, j, k[, segment]) order, overlapping?, affine)."""

        def read(combine: bool) -> tuple[np.ndarray, np.ndarray]:
            kwargs: dict[str, Any] = {"combine_segments": combine}
            if seg_type == "FRACTIONAL" and not combine:
                kwargs["dtype"] = np.float32
            src = self.source_series
            if src is None:
                vol = seg.get_volume(**kwargs)
                a = np.asarray(vol.array)  # (slice, row, column[, segment])
                a = np.swapaxes(a, 0, 2)  # (column, row, slice[, segment])
                affine = np.asarray(vol.affine, dtype=np.float64)[:, [2, 1, 0, 3]]
                return a, affine
            slices = src.slices[:: max(src.n_channels, 1)]
            if all(s.frame is None for s in slices):
                uids = [s.sop_instance_uid for s in slices]
                referenced = _referenced_instances(self.header)[1]
                present = [u for u in uids if u in referenced]
                part = np.asarray(seg.get_pixels_by_source_instance(present, **kwargs))
                if len(present) == len(uids):
                    a = part
                else:  # the SEG covers part of the series: the other slices are empty
                    a = np.zeros((len(uids), *part.shape[1:]), part.dtype)
                    a[[uids.index(u) for u in present]] = part
            elif len({s.sop_instance_uid for s in slices}) > 1:
                raise ValueError(
                    "the source series spreads its frames over several multi-frame instances"
                )
            else:
                # the frames exist (the source was read): ones without a SEG frame are empty
                a = seg.get_pixels_by_source_frame(
                    slices[0].sop_instance_uid,
                    [int(s.frame) + 1 for s in slices if s.frame is not None],
                    assert_missing_frames_are_empty=True,
                    **kwargs,
                )
            a = np.moveaxis(np.swapaxes(np.asarray(a), 1, 2), 0, 2)
            return a, np.asarray(src.affine, dtype=np.float64)

        if seg_type == "FRACTIONAL":
            arr, affine = read(False)
            return arr, False, affine
        try:
            arr, affine = read(True)
            return arr, False, affine
        except RuntimeError as exc:
            if "overlap" not in str(exc).lower():
                raise
        arr, affine = read(False)
        if arr.ndim == 3:  # one segment cannot overlap; keep the channel axis explicit
            arr = arr[..., None]
        return arr, True, affine


def _little_endian(path: Path) -> Dataset:
    """The SEG as a dataset; a big-endian one re-encoded little endian (highdicom needs it).

    pydicom decodes the big-endian pixels; they are stored again as Explicit VR Little Endian
    (1-bit frames packed as the standard packs them).
    """
    import pydicom
    from pydicom.pixels import pack_bits
    from pydicom.uid import ExplicitVRLittleEndian

    ds = pydicom.dcmread(path)
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsyntax is None or tsyntax.is_little_endian:
        return ds
    arr = ds.pixel_array
    bits = int(ds.BitsAllocated)
    if bits == 1:
        ds.PixelData = pack_bits(arr.ravel())
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_original_encoding(False, True)
    return ds


def link_source(seg_series: SegmentationSeries, candidates: list[DicomSeries]) -> None:
    """Attach the source series among ``candidates`` (the one whose instances the SEG names).

    When none is found, a problem says the SEG is read on its own frames' grid.
    """
    series_uids, instances = _referenced_instances(seg_series.header)
    best, best_hits = None, 0
    for cand in candidates:
        if cand.spatial_ndim != 3 or not cand.slices:
            continue
        hits = sum(1 for s in cand.slices if s.sop_instance_uid in instances)
        if cand.series_instance_uid in series_uids:
            hits += 1
        if hits > best_hits:
            best, best_hits = cand, hits
    if best is not None and any(s.sop_instance_uid in instances for s in best.slices):
        seg_series.source_series = best
        return
    seg_series.problems.append(
        "the SEG's source series is not among the files read: the segments are on the SEG's "
        "own grid, which spans only its stored frames"
    )
