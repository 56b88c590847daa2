"""Reading DICOM RT Structure Sets (RTSTRUCT): ROI contours rasterised on the referenced series.

Planning systems send contours, not voxels: each ROI is a set of closed planar polygons in
patient coordinates (mm, LPS), one or more per slice.  highdicom has no RTSTRUCT reader, so
they are rasterised here, the way the reference converters (plastimatch, dcmrtstruct2nii,
rt-utils) do it:

* The grid is **the referenced image series'** (found in the same study by the Referenced SOP
  Instance UIDs of the contour images, the Referenced Series UID, or, when the structure set
  names no series, the one series in its Referenced Frame of Reference).  Without it nothing
  is guessed: loading raises an :class:`~medsight.core.errors.InvalidInputError` naming the
  series UID that is needed.
* Contour points are mapped through the inverse of the series affine into index space; a
  contour whose points do not lie on one slice plane (within :data:`PLANE_TOLERANCE` of a slice,
  in slice units) or lie outside the series is skipped, and a problem line says so.
* Each polygon is filled with :func:`skimage.draw.polygon` (voxel centres inside the polygon);
  the contours of one ROI on one slice are combined by XOR (the even-odd rule), so a ring drawn
  as an outer and an inner contour has its hole.
* Only CLOSED_PLANAR contours enclose a region; POINT and OPEN_PLANAR ones are listed in the
  problems and not drawn.

Values: ROIs that do not overlap become one label image whose values are the ROI numbers
(``meta["roi_values"] == "labels"``); overlapping ROIs become one 0/1 channel per ROI
(``"channels"``, in the order of ``meta["channel_rois"]``).  ``meta["rois"]`` lists each ROI's
number, name, RT ROI Interpreted Type, observation label and display colour.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from medsight.core.errors import InvalidInputError, UnreadableFileError, short_reason
from medsight.core.image import DicomReference, Image
from medsight.io.dicom.headers import RTSTRUCT_SOP_CLASS, captured_warnings, read_dataset
from medsight.io.dicom.seg import ObjectOnSeries

if TYPE_CHECKING:
    from medsight.io.dicom.series import DicomSeries

__all__ = ["PLANE_TOLERANCE", "RTStructSeries", "is_rtstruct", "link_referenced", "roi_table"]

#: How far (in slice units) a contour may lie from a slice plane and still be drawn on it.
PLANE_TOLERANCE = 0.1
#: How far (in voxels) a contour point may lie outside the series and still be drawn (clipped).
_EDGE_TOLERANCE = 0.5


def is_rtstruct(ds: Dataset) -> bool:
    """Whether ``ds`` is an RT Structure Set (by SOP class, or Modality RTSTRUCT with ROIs)."""
    return str(ds.get("SOPClassUID", "")) == RTSTRUCT_SOP_CLASS or (
        str(ds.get("Modality", "")) == "RTSTRUCT" and "StructureSetROISequence" in ds
    )


def _colour(value: Any) -> list[int] | None:
    try:
        rgb = [int(v) for v in value]
    except (TypeError, ValueError):
        return None
    return rgb if len(rgb) == 3 else None


def roi_table(ds: Dataset) -> list[dict[str, Any]]:
    """Each ROI of ``ds``: number, name, interpreted type, observation label, colour, contours.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from pydicom import dcmread
    >>> ds = dcmread(get_testdata_file("rtstruct.dcm"), force=True)  # it has no preamble
    >>> [(r["number"], r["name"], r["interpreted_type"]) for r in roi_table(ds)]
    [(1, 'patient', 'EXTERNAL'), (2, 'Isocenter 1', 'ISOCENTER'), (3, 'Isocenter 2', 'ISOCENTER')]
    """
    observations = {
        int(o.get("ReferencedROINumber", -1)): o for o in ds.get("RTROIObservationsSequence", [])
    }
    contours = {int(c.get("ReferencedROINumber", -1)): c for c in ds.get("ROIContourSequence", [])}
    out = []
    for roi in ds.get("StructureSetROISequence", []):
        number = int(roi.get("ROINumber", 0))
        obs = observations.get(number)
        con = contours.get(number)
        types = sorted(
            {str(c.get("ContourGeometricType", "")) for c in con.get("ContourSequence", [])}
            if con is not None
            else set()
        )
        out.append(
            {
                "number": number,
                "name": str(roi.get("ROIName", "")),
                "interpreted_type": str(obs.get("RTROIInterpretedType", "")) if obs else "",
                "observation_label": str(obs.get("ROIObservationLabel", "")) if obs else "",
                "colour": _colour(con.get("ROIDisplayColor")) if con is not None else None,
                "contours": len(con.get("ContourSequence", [])) if con is not None else 0,
                "geometric_types": types,
                "frame_of_reference_uid": str(roi.get("ReferencedFrameOfReferenceUID", "")),
            }
        )
    return out


def _references(ds: Dataset) -> tuple[set[str], set[str], set[str]]:
    """(referenced frame of reference UIDs, series UIDs, SOP instance UIDs) of a structure set."""
    frames, series, instances = set(), set(), set()
    for ref in ds.get("ReferencedFrameOfReferenceSequence", []):
        frames.add(str(ref.get("FrameOfReferenceUID", "")))
        for study in ref.get("RTReferencedStudySequence", []):
            for ser in study.get("RTReferencedSeriesSequence", []):
                series.add(str(ser.get("SeriesInstanceUID", "")))
                for img in ser.get("ContourImageSequence", []):
                    instances.add(str(img.get("ReferencedSOPInstanceUID", "")))
    for con in ds.get("ROIContourSequence", []):
        for item in con.get("ContourSequence", []):
            for img in item.get("ContourImageSequence", []):
                instances.add(str(img.get("ReferencedSOPInstanceUID", "")))
    for roi in ds.get("StructureSetROISequence", []):
        frames.add(str(roi.get("ReferencedFrameOfReferenceUID", "")))
    for s in (frames, series, instances):
        s.discard("")
    return frames, series, instances


@dataclasses.dataclass
class RTStructSeries(ObjectOnSeries):
    """An RT Structure Set found in a study, rasterised on its referenced series' grid."""

    referenced_series: DicomSeries | None = None
    #: Series UIDs sharing the frame of reference when the structure set names no series.
    ambiguous: tuple[str, ...] = ()

    @property
    def modality(self) -> str:
        """Always ``RTSTRUCT``."""
        return "RTSTRUCT"

    @property
    def description(self) -> str:
        """SeriesDescription, else the Structure Set Label."""
        return str(
            self.header.get("SeriesDescription", "") or self.header.get("StructureSetLabel", "")
        )

    @property
    def rois(self) -> list[dict[str, Any]]:
        """The ROI table (see :func:`roi_table`)."""
        return roi_table(self.header)

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape (i, j, k) of the Image :meth:`load` returns (() when no grid)."""
        if self.referenced_series is None:
            return ()
        return tuple(self.referenced_series.shape[:3])

    @property
    def affine(self) -> NDArray[np.float64]:
        """The referenced series' affine (identity when it is not available)."""
        if self.referenced_series is None:
            return np.eye(4)
        return np.asarray(self.referenced_series.affine, dtype=np.float64)

    @property
    def spacing_source(self) -> str | None:
        """The referenced series' spacing source."""
        return self.referenced_series.spacing_source if self.referenced_series else None

    @property
    def slices(self) -> tuple[Any, ...]:
        """The referenced series' slices (what the ROI voxels lie on), or none."""
        return self.referenced_series.slices if self.referenced_series is not None else ()

    def _missing_reference(self) -> InvalidInputError:
        frames, series, _ = _references(self.header)
        if self.ambiguous:
            return InvalidInputError(
                self.path,
                "RT Structure Set names no image series and "
                f"{len(self.ambiguous)} series lie in its frame of reference "
                f"({', '.join(self.ambiguous)}): none is guessed",
                hint="read the structure set together with only the series it was drawn on",
            )
        if series:
            need = f"the referenced series {', '.join(sorted(series))}"
        elif frames:
            need = f"a series in the frame of reference {', '.join(sorted(frames))}"
        else:
            need = "its image series (the structure set references none)"
        return InvalidInputError(
            self.path,
            f"RT Structure Set: {need} is not among the files read, so its contours have no "
            "voxel grid",
            hint="read the folder that holds the structure set together with that image series",
        )

    def load(self, *, progress: Callable[[], None] | None = None) -> Image:
        """Rasterise every closed planar ROI on the referenced series' grid.

        Raises
        ------
        InvalidInputError
            The referenced series is not available (the message names its UID).
        UnreadableFileError
            The structure set cannot be parsed.
        """
        src = self.referenced_series
        if src is None:
            raise self._missing_reference()
        with captured_warnings():  # header warnings were reported when it was scanned
            ds = read_dataset(self.path)
        if progress is not None:
            progress()
        problems = list(self.problems)
        rois = roi_table(ds)
        try:
            masks = _rasterise(ds, src, rois, problems)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise UnreadableFileError(
                self.path, f"RT Structure Set contours cannot be read: {short_reason(exc)}"
            ) from exc
        numbers = [r["number"] for r in rois]
        shape = tuple(src.shape[:3])
        stack = np.stack([masks[n] for n in numbers], axis=-1) if numbers else None
        overlap = bool(stack is not None and (stack.sum(axis=-1) > 1).any())
        if overlap:
            assert stack is not None
            arr: NDArray[Any] = stack.astype(np.uint8)
        else:
            dtype = np.uint8 if max(numbers, default=0) < 256 else np.uint16
            arr = np.zeros(shape, dtype)
            for n in numbers:
                arr[masks[n]] = n
        meta: dict[str, Any] = {
            "series_description": self.description,
            "structure_set_label": str(ds.get("StructureSetLabel", "")),
            "rois": rois,
            "roi_values": "channels" if overlap else "labels",
            "rois_overlap": overlap,
            "channel_rois": numbers if overlap else None,
            "referenced_series_instance_uid": src.series_instance_uid,
            "problems": tuple(problems),
            "files": (str(self.path),),
            "spacing_source": src.spacing_source,
            "spacing_known": src.spacing_source is not None,
            "slice_spacing_known": not src.frames_without_positions,
        }
        if overlap:
            meta["channel_axis"] = "roi"
        source = DicomReference(
            study_instance_uid=self.study_instance_uid,
            series_instance_uid=self.series_instance_uid,
            sop_instance_uids=(str(ds.get("SOPInstanceUID", "")),),
            sop_class_uid=str(ds.get("SOPClassUID", "")) or None,
            frame_of_reference_uid=str(src.header.get("FrameOfReferenceUID", "")) or None,
        )
        return Image(
            arr, self.affine, spatial_ndim=3, modality="RTSTRUCT", source=source, meta=meta
        )


def _rasterise(
    ds: Dataset, src: DicomSeries, rois: list[dict[str, Any]], problems: list[str]
) -> dict[int, NDArray[np.bool_]]:
    """One boolean (i, j, k) mask per ROI number; what could not be drawn goes to ``problems``."""
    from skimage.draw import polygon

    shape = tuple(int(v) for v in src.shape[:3])
    to_index = np.linalg.inv(np.asarray(src.affine, dtype=np.float64))
    names = {r["number"]: r["name"] for r in rois}
    masks = {r["number"]: np.zeros(shape, bool) for r in rois}
    for con in ds.get("ROIContourSequence", []):
        number = int(con.get("ReferencedROINumber", -1))
        if number not in masks:
            problems.append(f"contours for ROI {number}, which the structure set does not list")
            continue
        label = f"ROI {number} ({names[number]})"
        skipped: dict[str, int] = defaultdict(int)
        per_slice: dict[int, NDArray[np.bool_]] = {}
        for item in con.get("ContourSequence", []):
            kind = str(item.get("ContourGeometricType", "")).upper()
            if kind != "CLOSED_PLANAR":
                skipped[f"{kind or 'untyped'} contour(s), which enclose no region"] += 1
                continue
            points = np.asarray([float(v) for v in item.get("ContourData", [])], dtype=np.float64)
            if points.size < 9 or points.size % 3:
                skipped["contour(s) with fewer than 3 points"] += 1
                continue
            ijk = (to_index @ np.c_[points.reshape(-1, 3), np.ones(points.size // 3)].T)[:3]
            k = float(np.round(np.mean(ijk[2])))
            if np.abs(ijk[2] - k).max() > PLANE_TOLERANCE:
                skipped[
                    f"contour(s) not on a slice plane of the series (more than "
                    f"{PLANE_TOLERANCE:g} slice from one)"
                ] += 1
                continue
            out_of_plane = (ijk[0] < -_EDGE_TOLERANCE) | (ijk[0] > shape[0] - 1 + _EDGE_TOLERANCE)
            out_of_plane |= (ijk[1] < -_EDGE_TOLERANCE) | (ijk[1] > shape[1] - 1 + _EDGE_TOLERANCE)
            if not 0 <= k < shape[2] or out_of_plane.any():
                skipped["contour(s) outside the series' grid"] += 1
                continue
            filled = np.zeros(shape[:2], bool)
            ii, jj = polygon(ijk[0], ijk[1], shape=shape[:2])
            filled[ii, jj] = True
            kk = int(k)
            per_slice[kk] = per_slice[kk] ^ filled if kk in per_slice else filled
        for kk, filled in per_slice.items():
            masks[number][:, :, kk] = filled
        for why, count in skipped.items():
            problems.append(f"{label}: {count} {why} not drawn")
    for r in rois:
        if r["contours"] == 0:
            problems.append(f"ROI {r['number']} ({r['name']}) has no contours")
    return masks


def link_referenced(rt: RTStructSeries, candidates: Sequence[DicomSeries]) -> None:
    """Attach the referenced image series among ``candidates``.

    By Referenced SOP Instance UIDs and the Referenced Series UID; when the structure set names
    no series, by the Referenced Frame of Reference if exactly one 3D series lies in it.  When
    none is found the structure set stays unlinked and :meth:`RTStructSeries.load` says which
    series it needs.
    """
    frames, series_uids, instances = _references(rt.header)
    best, best_hits = None, 0
    for cand in candidates:
        if cand.spatial_ndim != 3 or not cand.slices or cand.frames_without_positions:
            continue
        hits = sum(1 for s in cand.slices if s.sop_instance_uid in instances)
        if cand.series_instance_uid in series_uids:
            hits += 1
        if hits > best_hits:
            best, best_hits = cand, hits
    if best is None and not series_uids and not instances and frames:
        same_frame = [
            c
            for c in candidates
            if c.spatial_ndim == 3
            and not c.frames_without_positions
            and str(c.header.get("FrameOfReferenceUID", "")) in frames
        ]
        if len(same_frame) == 1:
            best = same_frame[0]
        elif len(same_frame) > 1:
            rt.ambiguous = tuple(sorted(c.series_instance_uid for c in same_frame))
    rt.referenced_series = best
    if best is not None:
        missing = instances - {s.sop_instance_uid for s in best.slices}
        if missing:
            rt.problems.append(
                f"{len(missing)} contour image(s) the structure set references are not in the "
                f"series {best.series_instance_uid}"
            )
