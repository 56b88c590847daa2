"""From DICOM headers to volumes: grouping, slice order, geometry checks, pixel stacking.

Rules (the ones ITK/GDCM and dcm2niix follow, written down):

* Files are grouped by SeriesInstanceUID, then into *stacks* of slices that share orientation,
  matrix size and pixel spacing.  A series holding several stacks (a localiser beside the axial
  images, say) gives one volume per stack and says so.
* Slices are sorted by their position along the slice normal ``cross(row, column)``, never by
  file name or InstanceNumber.  Several slices at one position become channels (echoes, time
  points), ordered by TemporalPositionIdentifier, EchoNumbers, TriggerTime, AcquisitionNumber,
  InstanceNumber.  :mod:`medsight.io.dicom.temporal` says what the channels are (time points
  or echoes, ``meta["channel_axis"]``) and, for a time axis, the repetition and frame times.
* The affine's third column is ``(last position - first position) / (n - 1)``, as ITK's
  ImageSeriesReader computes it, so the voxel grid passes through every slice even for a tilted
  gantry.  Gantry tilt, non-uniform spacing and missing slices are reported as problems.
* Objects without a patient position (radiographs, secondary captures, ultrasound) become one
  2D image per file (multi-frame ones: frames stacked as the third axis, one unit apart).
* Pixel spacing comes from the first of these that the object has (:func:`pixel_spacing_of`):
  PixelSpacing (per frame in enhanced objects); ImagerPixelSpacing divided by
  EstimatedRadiographicMagnificationFactor (projection radiography, mammography; without the
  factor the spacing is at the detector, and a problem says so); the calibrated regions of
  SequenceOfUltrasoundRegions; RT Image ImagePlanePixelSpacing (scaled from the receptor to
  the isocentre plane by RadiationMachineSAD / RTImageSID when both are given).  The loaded
  Image records the source in ``meta["spacing_source"]``; with none, the affine keeps 1.0 but
  ``meta["spacing_known"]`` is False, and sizes are in pixels.  Every 1 mm used where the
  header gives no spacing (in-plane, or between slices of a single slice) is a problem line.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from medsight.core.errors import GeometryError, InvalidInputError
from medsight.core.geometry import affine_from_parts
from medsight.core.image import DicomReference, Image
from medsight.io.dicom.headers import (
    captured_warnings,
    gc_paused,
    header_problems,
    read_dataset,
)
from medsight.io.dicom.pixels import (
    NativeFrames,
    decode_frames,
    native_frames,
    rescale,
    stored_value_range,
)
from medsight.io.dicom.rtstruct import RTStructSeries, is_rtstruct, link_referenced
from medsight.io.dicom.seg import SegmentationSeries, is_segmentation, link_source
from medsight.io.dicom.suv import suv_meta
from medsight.io.dicom.temporal import SliceTiming, TemporalInfo, slice_timing, temporal_info

__all__ = ["DicomSeries", "SliceInfo", "build_series", "pixel_spacing_of"]

_LETTER_TO_LPS = {
    "L": (1.0, 0.0, 0.0),
    "R": (-1.0, 0.0, 0.0),
    "P": (0.0, 1.0, 0.0),
    "A": (0.0, -1.0, 0.0),
    "H": (0.0, 0.0, 1.0),
    "F": (0.0, 0.0, -1.0),
}
#: Relative tolerance on slice spacing before it is called non-uniform.
_SPACING_RTOL = 0.01
#: Degrees between the slice normal and the slice-to-slice direction before tilt is reported.
_TILT_DEG = 0.5
#: PhysicalUnitsX/YDirection code for centimetres (DICOM PS3.3 C.8.5.5.1.15).
_US_UNITS_CM = 3
#: RegionSpatialFormat code for 2D tissue (B-mode) regions.
_US_FORMAT_2D = 1


@dataclasses.dataclass(frozen=True)
class SliceInfo:
    """One 2D frame of a DICOM object: where it is and how to scale it."""

    path: Path
    frame: int | None  # 0-based frame index in a multi-frame object, None for single-frame
    sop_instance_uid: str
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None  # six direction cosines: row then column
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns)
    rows: int
    columns: int
    slope: float
    intercept: float
    order_key: tuple[float, ...]
    spacing_source: str | None = None  # the attribute pixel_spacing came from
    spacing_notes: tuple[str, ...] = ()  # what a user should know about that spacing
    timing: SliceTiming | None = None  # echo / temporal position / times (channel meaning)
    #: Where the file's uncompressed frames lie (read without pydicom); None: decode the file.
    native: NativeFrames | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass
class DicomSeries:
    """A volume (or 2D image) found in DICOM files, ready to load.

    Attributes
    ----------
    slices : tuple of SliceInfo
        In slice order; with channels, grouped ``[slice0 ch0, slice0 ch1, ..., slice1 ch0 ...]``.
    n_channels : int
        Slices per position (echoes, time points) or colour samples are not counted here.
    problems : list of str
        Everything a user should know about this series' geometry.
    """

    key: str
    header: Dataset
    slices: tuple[SliceInfo, ...]
    affine: NDArray[np.float64]
    spatial_ndim: int
    n_channels: int = 1
    problems: list[str] = dataclasses.field(default_factory=list)
    spacing_source: str | None = None  # None: no pixel spacing known (sizes in pixels)
    #: Distinct (PatientID, StudyInstanceUID) pairs of the files: more than one is a conflict
    #: (files of two patients or studies under one SeriesInstanceUID) that analysis refuses.
    identities: tuple[tuple[str, str], ...] = ()
    #: The third axis is frame order (cine, time), not a measured slice spacing.
    frames_without_positions: bool = False
    #: What the channels are (time points, echoes) and a time axis' timing; None: 1 channel.
    temporal: TemporalInfo | None = None

    # --- descriptive attributes -------------------------------------------------------------
    @property
    def series_instance_uid(self) -> str:
        """SeriesInstanceUID."""
        return str(self.header.get("SeriesInstanceUID", ""))

    @property
    def study_instance_uid(self) -> str:
        """StudyInstanceUID."""
        return str(self.header.get("StudyInstanceUID", ""))

    @property
    def modality(self) -> str:
        """Modality code."""
        return str(self.header.get("Modality", "OT"))

    @property
    def description(self) -> str:
        """SeriesDescription (empty if absent)."""
        return str(self.header.get("SeriesDescription", ""))

    @property
    def files(self) -> tuple[Path, ...]:
        """The distinct files, in slice order."""
        return tuple(dict.fromkeys(s.path for s in self.slices))

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape in index order (columns, rows[, slices])."""
        first = self.slices[0]
        if self.spatial_ndim == 2:
            return (first.columns, first.rows)
        return (first.columns, first.rows, len(self.slices) // self.n_channels)

    def load(self, *, progress: Callable[[], None] | None = None) -> Image:
        """Read the pixels and return the Image.

        Parameters
        ----------
        progress : callable, optional
            Called once per file read.
        """
        # The first file is parsed whole (its header gives the photometric interpretation and
        # the stored range, its pixels the dtype and frame shape).  Files whose uncompressed
        # frames fit that are read straight into the stack (NativeFrames, no second parse);
        # the others are parsed once more with their pixels (their headers were checked when
        # the series was scanned) and decoded, in worker processes for a long series (the
        # decoders hold the GIL: see _read_decoded).
        with gc_paused():
            return self._load(progress)

    def _load(self, progress: Callable[[], None] | None) -> Image:
        files = self.files
        _, first_ds, first_arr = _read_one(files[0])
        if progress is not None:
            progress()
        decoded: dict[Path, NDArray[Any]] = {files[0]: first_arr}
        direct = {
            s.path
            for s in self.slices
            if s.native is not None
            and s.path != files[0]
            and s.native.dtype == first_arr.dtype
            and (s.native.rows, s.native.columns) == first_arr.shape[1:]
        }
        for path, arr in _read_decoded([f for f in files[1:] if f not in direct]):
            decoded[path] = arr
            if progress is not None:
                progress()
        stack = np.empty((len(self.slices), *first_arr.shape[1:]), dtype=first_arr.dtype)
        pending = []
        for n, s in enumerate(self.slices):  # (n, rows, cols[, samples]), preallocated
            if s.path in decoded:
                stack[n] = decoded[s.path][s.frame if s.frame is not None else 0]
            else:
                pending.append((n, s))
        for n, s in _read_direct(stack, pending):  # changed since scanned: the ordinary way
            if s.path not in decoded:
                decoded[s.path] = _read_one(s.path)[2]
            stack[n] = decoded[s.path][s.frame if s.frame is not None else 0]
        if progress is not None:
            for _ in direct:
                progress()
        photometric = str(first_ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        colour = stack.ndim == 4
        if not colour:
            stack = rescale(
                stack,
                [s.slope for s in self.slices],
                [s.intercept for s in self.slices],
                monochrome1=photometric == "MONOCHROME1",
                stored_range=stored_value_range(first_ds),
            )
        # (n, rows, cols[, s]) -> (cols, rows, n[, s]) i.e. index order (i, j, k)
        arr = np.swapaxes(stack, 1, 2)
        arr = np.moveaxis(arr, 0, 2)
        if self.n_channels > 1:
            n_pos = len(self.slices) // self.n_channels
            arr = arr.reshape(arr.shape[0], arr.shape[1], n_pos, self.n_channels)
        if self.spatial_ndim == 2:
            arr = arr[:, :, 0] if arr.shape[2] == 1 else arr
        source = DicomReference(
            study_instance_uid=self.study_instance_uid,
            series_instance_uid=self.series_instance_uid,
            sop_instance_uids=tuple(s.sop_instance_uid for s in self.slices),
            sop_class_uid=str(self.header.get("SOPClassUID", "")) or None,
            frame_of_reference_uid=str(self.header.get("FrameOfReferenceUID", "")) or None,
            frame_numbers=tuple(s.frame + 1 for s in self.slices if s.frame is not None),
        )
        meta = {
            "series_description": self.description,
            "photometric_interpretation": photometric,
            "monochrome1_inverted": photometric == "MONOCHROME1",
            "problems": tuple(self.problems),
            "files": tuple(str(f) for f in self.files),
            "spacing_source": self.spacing_source,
            "spacing_known": self.spacing_source is not None,
            "slice_spacing_known": not self.frames_without_positions,
        }
        if self.temporal is not None:
            meta.update(self.temporal.meta())
        if self.modality == "PT":
            times = [s.timing.acquisition_s if s.timing else None for s in self.slices]
            meta.update(suv_meta(first_ds, times))
        return Image(
            arr,
            self.affine,
            spatial_ndim=self.spatial_ndim,
            modality=self.modality,
            source=source,
            meta=meta,
        )


def _read_one(path: Path) -> tuple[Path, Dataset, NDArray[Any]]:
    with captured_warnings():  # header warnings were reported when it was scanned
        ds = read_dataset(path, header_checked=True)
        return path, ds, decode_frames(ds, path)


#: Files read and decoded at once by :meth:`DicomSeries.load` (1: no thread pool).
LOAD_THREADS = min(8, os.cpu_count() or 1)


def _read_direct(
    stack: NDArray[Any], pending: Sequence[tuple[int, SliceInfo]]
) -> list[tuple[int, SliceInfo]]:
    """Read each pending slice's frame into ``stack[n]``; return those that could not be.

    A read is a copy from the page cache, mostly: threads help only with many files (slow
    storage), each thread taking a share of at least 64 reads.
    """

    def some(items: Sequence[tuple[int, SliceInfo]]) -> list[tuple[int, SliceInfo]]:
        failed = []
        for n, s in items:
            assert s.native is not None
            if not s.native.read_into(stack[n], s.frame if s.frame is not None else 0):
                failed.append((n, s))
        return failed

    k = min(LOAD_THREADS, len(pending) // 64)
    if k <= 1:
        return some(pending)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=k) as pool:
        shares = list(pool.map(some, [pending[i::k] for i in range(k)]))
    return sorted((item for share in shares for item in share), key=lambda item: item[0])


#: Files to decode from which :func:`_read_decoded` uses worker processes (below: threads).
PROCESS_MIN_FILES = 16
_ENV_PROCESSES = "MEDSIGHT_DECODE_PROCESSES"
_pool: Any = None
_pool_workers = 0
_pool_lock = threading.Lock()


def _decode_processes() -> int:
    """Worker processes for decoding: ``MEDSIGHT_DECODE_PROCESSES`` (0 or 1: none), else
    :data:`LOAD_THREADS`."""
    raw = os.environ.get(_ENV_PROCESSES, "").strip()
    if raw:
        try:
            return max(0, int(raw))
        except ValueError:
            raise InvalidInputError(
                f"environment variable {_ENV_PROCESSES}", f"is {raw!r}, not a whole number"
            ) from None
    return LOAD_THREADS


def _decode_pool(workers: int) -> Any:
    """The process pool that decodes compressed files (created once, reused by every load).

    Workers start from a clean server process (``forkserver``; ``spawn`` where there is
    none), never by forking this one: the service runs threads and torch, which a fork
    would copy mid-state.
    """
    global _pool, _pool_workers
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with _pool_lock:
        if _pool is None or getattr(_pool, "_broken", False) or _pool_workers != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if _pool is None:
                atexit.register(_shutdown_pool)  # before interpreter teardown: no stray noise
            _pool, _pool_workers = ProcessPoolExecutor(max_workers=workers, mp_context=ctx), workers
        return _pool


def _shutdown_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None


def _decoded_frames(path: Path) -> NDArray[Any]:
    """The decoded frames of one file (what a decoding worker process returns)."""
    return _read_one(path)[2]


def _read_decoded(files: Sequence[Path]) -> Iterator[tuple[Path, NDArray[Any]]]:
    """``(path, frames)`` of each file in order.

    pydicom's decoders (pylibjpeg's OpenJPEG, libjpeg) hold the GIL, so threads do not decode
    in parallel: from :data:`PROCESS_MIN_FILES` files on, worker processes decode (measured on
    2 cores: 48 JPEG 2000 slices 1.64 s in one thread, 1.88 s in two, 0.95 s in two
    processes).  Fewer files, or one worker, decode here (a thread pool overlaps file reads).
    A decoding error is raised as the worker raised it, naming the file.
    """
    workers = min(_decode_processes(), len(files))
    if workers > 1 and len(files) >= PROCESS_MIN_FILES:
        from concurrent.futures.process import BrokenProcessPool

        try:
            pool = _decode_pool(workers)
            chunk = max(1, len(files) // (4 * workers))
            yield from zip(files, pool.map(_decoded_frames, files, chunksize=chunk), strict=True)
            return
        except BrokenProcessPool:  # a worker died (memory?): decode here, from the start
            pass
    if LOAD_THREADS <= 1 or len(files) < 4:
        yield from ((f, _decoded_frames(f)) for f in files)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=LOAD_THREADS) as pool:
        yield from zip(files, pool.map(_decoded_frames, files), strict=True)


# --- header parsing -----------------------------------------------------------------------
def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _positive(value: Any, n: int) -> tuple[float, ...] | None:
    out = _floats(value, n)
    return out if out is not None and all(v > 0 for v in out) else None


def _ultrasound_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, list[str]]:
    """(row, column) spacing in mm from the calibrated SequenceOfUltrasoundRegions, and notes.

    Only regions calibrated in cm on both axes count.  Any such region lying outside the image
    means the pixels were resized or cropped after calibration, so none is used.  Among the
    rest, 2D tissue regions (RegionSpatialFormat 1) are preferred; they must agree (to 1%), and
    then the largest one gives the spacing.
    """
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        return None, []
    rows, cols = int(ds.Rows), int(ds.Columns)
    calibrated = []
    for n, region in enumerate(regions, start=1):
        ux, uy = region.get("PhysicalUnitsXDirection"), region.get("PhysicalUnitsYDirection")
        dx = _number(region.get("PhysicalDeltaX"), 0.0)
        dy = _number(region.get("PhysicalDeltaY"), 0.0)
        if ux != _US_UNITS_CM or uy != _US_UNITS_CM or dx <= 0 or dy <= 0:
            continue
        box = tuple(
            int(_number(region.get(k), -1)) for k in ("RegionLocationMinX0", "RegionLocationMinY0")
        ) + tuple(
            int(_number(region.get(k), 1e9)) for k in ("RegionLocationMaxX1", "RegionLocationMaxY1")
        )
        calibrated.append((n, region.get("RegionSpatialFormat"), box, dy * 10.0, dx * 10.0))
    if not calibrated:
        return None, []
    # Max X1/Y1 are the last pixel (Columns - 1); one pixel more is tolerated (exclusive ends).
    outside = [
        c
        for c in calibrated
        if not (0 <= c[2][0] <= c[2][2] <= cols and 0 <= c[2][1] <= c[2][3] <= rows)
    ]
    if outside:
        n, _, box, _, _ = outside[0]
        return None, [
            f"ultrasound region {n} ({box[0]},{box[1]})-({box[2]},{box[3]}) lies outside the "
            f"{cols} x {rows} image (resized or cropped after calibration?): its calibration "
            "is not used"
        ]
    tissue = [c for c in calibrated if c[1] == _US_FORMAT_2D] or calibrated
    first = tissue[0]
    if any(not np.allclose(c[3:], first[3:], rtol=0.01) for c in tissue[1:]):
        found = ", ".join(f"{c[4]:.4g} x {c[3]:.4g} mm" for c in tissue)
        return None, [f"ultrasound regions disagree on the pixel size ({found}): none is used"]
    best = max(tissue, key=lambda c: (c[2][2] - c[2][0] + 1) * (c[2][3] - c[2][1] + 1))
    return (best[3], best[4]), []


def pixel_spacing_of(ds: Dataset) -> tuple[tuple[float, float] | None, str | None, list[str]]:
    """The in-plane (row, column) pixel spacing in mm, the attribute it came from, and notes.

    In order: PixelSpacing; ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor;
    calibrated ultrasound regions; ImagePlanePixelSpacing (RT Image) scaled to the isocentre
    plane by RadiationMachineSAD / RTImageSID.  ``(None, None, notes)`` when the object has none.

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset()
    >>> ds.ImagerPixelSpacing, ds.EstimatedRadiographicMagnificationFactor = [0.12, 0.12], 1.2
    >>> spacing, source, notes = pixel_spacing_of(ds)
    >>> [round(v, 6) for v in spacing], source, notes
    ([0.1, 0.1], 'ImagerPixelSpacing/magnification', [])
    """
    ps = _positive(ds.get("PixelSpacing"), 2)
    if ps is not None:
        return (ps[0], ps[1]), "PixelSpacing", []
    ips = _positive(ds.get("ImagerPixelSpacing"), 2)
    if ips is not None:
        mag = _number(ds.get("EstimatedRadiographicMagnificationFactor"), 0.0)
        if mag > 0:
            return (ips[0] / mag, ips[1] / mag), "ImagerPixelSpacing/magnification", []
        return (
            (ips[0], ips[1]),
            "ImagerPixelSpacing",
            [
                "pixel spacing is ImagerPixelSpacing, at the detector (no "
                "EstimatedRadiographicMagnificationFactor): sizes in the patient are smaller by "
                "the geometric magnification"
            ],
        )
    notes: list[str] = []
    if "Rows" in ds and "Columns" in ds:
        us, notes = _ultrasound_spacing(ds)
        if us is not None:
            return us, "UltrasoundRegion", notes
    rt = _positive(ds.get("ImagePlanePixelSpacing"), 2)
    if rt is not None:
        # measured at the receptor plane (RT Image SID from the source); the isocentre plane,
        # where the patient is, lies at Radiation Machine SAD
        sad = _number(ds.get("RadiationMachineSAD"), 0.0)
        sid = _number(ds.get("RTImageSID"), 0.0)
        if sad > 0 and sid > 0:
            f = sad / sid
            return (rt[0] * f, rt[1] * f), "ImagePlanePixelSpacing/SAD:SID", notes
        return (
            (rt[0], rt[1]),
            "ImagePlanePixelSpacing",
            [
                *notes,
                "pixel spacing is ImagePlanePixelSpacing at the image receptor (no Radiation "
                "Machine SAD / RT Image SID to scale it to the isocentre plane): sizes in the "
                "patient are smaller by SAD / SID",
            ],
        )
    return None, None, notes


def _number(value: Any, default: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if np.isfinite(v) else default


def _order_key(ds: Dataset) -> tuple[float, ...]:
    keys = ("TemporalPositionIdentifier", "EchoNumbers", "TriggerTime", "AcquisitionNumber")
    return (*tuple(_number(ds.get(k), 0.0) for k in keys), _number(ds.get("InstanceNumber"), 0))


def _first(seq_item: Dataset | None, name: str, attr: str) -> Any:
    if seq_item is None or name not in seq_item or not seq_item[name].value:
        return None
    return seq_item[name].value[0].get(attr)


def slices_of(path: Path, ds: Dataset) -> list[SliceInfo]:
    """The 2D frames of one DICOM object with their geometry (enhanced multi-frame aware)."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    sop = str(ds.get("SOPInstanceUID", path.name))
    n_frames = int(_number(ds.get("NumberOfFrames"), 1)) or 1
    if "NumberOfFrames" not in ds and len(ds.get("PerFrameFunctionalGroupsSequence") or []) > 1:
        n_frames = len(ds.PerFrameFunctionalGroupsSequence)  # see _frame_count_problems
    base_key = _order_key(ds)
    native = native_frames(ds, path)
    spacing, source, notes = pixel_spacing_of(ds)
    spacing_info = (source, tuple(notes))
    slope = _number(ds.get("RescaleSlope"), 1.0)
    intercept = _number(ds.get("RescaleIntercept"), 0.0)
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared0 = shared[0] if shared else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and len(per_frame) == n_frames:
        out = []
        for f, item in enumerate(per_frame):
            ipp = _first(item, "PlanePositionSequence", "ImagePositionPatient")
            iop = _first(item, "PlaneOrientationSequence", "ImageOrientationPatient")
            iop = (
                iop
                if iop is not None
                else _first(shared0, "PlaneOrientationSequence", "ImageOrientationPatient")
            )
            ps = _first(item, "PixelMeasuresSequence", "PixelSpacing")
            ps = ps if ps is not None else _first(shared0, "PixelMeasuresSequence", "PixelSpacing")
            sl = _first(item, "PixelValueTransformationSequence", "RescaleSlope")
            sl = (
                sl
                if sl is not None
                else _first(shared0, "PixelValueTransformationSequence", "RescaleSlope")
            )
            ic = _first(item, "PixelValueTransformationSequence", "RescaleIntercept")
            ic = (
                ic
                if ic is not None
                else _first(shared0, "PixelValueTransformationSequence", "RescaleIntercept")
            )
            temporal = _first(item, "FrameContentSequence", "TemporalPositionIndex")
            frame_ps = _positive(ps, 2)
            out.append(
                SliceInfo(
                    path,
                    f,
                    sop,
                    _floats(ipp, 3),
                    _floats(iop, 6),
                    (frame_ps[0], frame_ps[1]) if frame_ps else spacing,
                    rows,
                    cols,
                    _number(sl, slope),
                    _number(ic, intercept),
                    (_number(temporal, 0.0), *base_key, float(f)),
                    *(("PixelSpacing", ()) if frame_ps else spacing_info),
                    timing=slice_timing(ds, item, shared0),
                    native=native,
                )
            )
        return out
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    offsets = ds.get("GridFrameOffsetVector")
    if n_frames > 1 and ipp is not None and iop is not None and offsets is not None:
        # RT Dose style: frames at offsets along the normal from the first position.
        normal = np.cross(iop[:3], iop[3:])
        offs = [float(o) for o in offsets]
        if len(offs) == n_frames:
            return [
                SliceInfo(
                    path,
                    f,
                    sop,
                    tuple(float(v) for v in np.add(ipp, normal * offs[f])),
                    iop,
                    spacing,
                    rows,
                    cols,
                    slope,
                    intercept,
                    (*base_key, float(f)),
                    *spacing_info,
                    native=native,
                )
                for f in range(n_frames)
            ]
    if n_frames > 1:
        return [
            SliceInfo(
                path,
                f,
                sop,
                None,
                None,
                spacing,
                rows,
                cols,
                slope,
                intercept,
                (*base_key, float(f)),
                *spacing_info,
                native=native,
            )
            for f in range(n_frames)
        ]
    return [
        SliceInfo(
            path,
            None,
            sop,
            ipp,
            iop,
            spacing,
            rows,
            cols,
            slope,
            intercept,
            base_key,
            *spacing_info,
            timing=slice_timing(ds),
            native=native,
        )
    ]


# --- grouping and geometry ----------------------------------------------------------------
def build_series(
    datasets: Sequence[tuple[Path, Dataset]],
) -> list[DicomSeries | SegmentationSeries | RTStructSeries]:
    """Group parsed headers into volumes, sorted and with their geometry checked.

    DICOM SEG objects are not stacked: each becomes a
    :class:`~medsight.io.dicom.seg.SegmentationSeries` linked to its source series; each RT
    Structure Set an :class:`~medsight.io.dicom.rtstruct.RTStructSeries` linked to the series
    its contours lie on.
    """
    segs = [(p, ds) for p, ds in datasets if is_segmentation(ds)]
    structs = [(p, ds) for p, ds in datasets if is_rtstruct(ds)]
    images = [(p, ds) for p, ds in datasets if not is_segmentation(ds) and not is_rtstruct(ds)]
    volumes = _build_image_series(images)
    out: list[DicomSeries | SegmentationSeries | RTStructSeries] = list(volumes)
    keys = {v.key for v in volumes}
    for path, ds in [*segs, *structs]:  # objects on another series' grid: one entry each
        key = str(ds.get("SeriesInstanceUID", f"(no series UID) {path}"))
        if key in keys:  # several instances in one series: one entry each
            key = f"{key}/{ds.get('SOPInstanceUID', path.name)}"
        keys.add(key)
        kind = SegmentationSeries if is_segmentation(ds) else RTStructSeries
        obj = kind(
            key=key,
            header=ds,
            path=path,
            identities=((str(ds.get("PatientID", "")), str(ds.get("StudyInstanceUID", ""))),),
        )
        obj.problems.extend(_header_problems([ds]))
        if isinstance(obj, SegmentationSeries):
            link_source(obj, volumes)
        else:
            link_referenced(obj, volumes)
        out.append(obj)
    return out


def _build_image_series(datasets: Sequence[tuple[Path, Dataset]]) -> list[DicomSeries]:
    groups: dict[tuple[Any, ...], list[tuple[SliceInfo, Dataset]]] = defaultdict(list)
    for path, ds in datasets:
        series_uid = str(ds.get("SeriesInstanceUID", f"(no series UID) {path.parent}"))
        for s in slices_of(path, ds):
            if s.position is None or s.orientation is None:
                key: tuple[Any, ...] = (series_uid, "file", str(path))
            else:
                key = (
                    series_uid,
                    "stack",
                    tuple(np.round(s.orientation, 3)),
                    s.rows,
                    s.columns,
                    tuple(np.round(s.pixel_spacing, 4)) if s.pixel_spacing else None,
                )
            groups[key].append((s, ds))
    per_series: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for key in groups:
        per_series[key[0]].append(key)
    out: list[DicomSeries] = []
    for series_uid, keys in per_series.items():
        keys.sort(key=lambda k: -len(groups[k]))
        for n, key in enumerate(keys):
            members = groups[key]
            name = series_uid if len(keys) == 1 else f"{series_uid}#{n + 1}"
            header = members[0][1]
            slices = [m[0] for m in members]
            if key[1] == "file":
                series = _flat_series(name, header, slices)
            else:
                series = _stack_series(name, header, slices)
            if len(keys) > 1:
                series.problems.append(
                    f"series {series_uid} holds {len(keys)} stacks with different orientation, "
                    f"size or spacing; this is stack {n + 1} of them"
                )
            series.identities = tuple(
                sorted(
                    {
                        (str(ds.get("PatientID", "")), str(ds.get("StudyInstanceUID", "")))
                        for _, ds in members
                    }
                )
            )
            series.problems.extend(_header_problems([ds for _, ds in members]))
            series.problems.extend(_frame_count_problems([ds for _, ds in members]))
            if len(series.identities) > 1:
                series.problems.append(
                    f"the files of this series name {len(series.identities)} different patients "
                    "or studies (PatientID / StudyInstanceUID)"
                )
            out.append(series)
    return out


def _frame_count_problems(datasets: Sequence[Dataset]) -> list[str]:
    """Enhanced objects without Number of Frames, whose frames were counted from the groups."""
    counted = {
        len(ds.PerFrameFunctionalGroupsSequence)
        for ds in {id(d): d for d in datasets}.values()
        if "NumberOfFrames" not in ds and len(ds.get("PerFrameFunctionalGroupsSequence") or []) > 1
    }
    return [
        f"Number of Frames (0028,0008) is missing: {n} frames taken from the per-frame "
        "functional groups"
        for n in sorted(counted)
    ]


def _header_problems(datasets: Sequence[Dataset], limit: int = 5) -> list[str]:
    """pydicom's warnings on these headers (invalid values ...), one line per message."""
    files: dict[str, int] = {}
    for ds in datasets:
        for msg in header_problems(ds):
            files[msg] = files.get(msg, 0) + 1
    found = [
        f"header: {msg}" + (f" (in {n} of {len(datasets)} files)" if len(datasets) > 1 else "")
        for msg, n in files.items()
    ]
    if len(found) > limit:
        return [*found[:limit], f"header: {len(found) - limit} more warning(s) like these"]
    return found


def _flat_series(name: str, header: Dataset, slices: list[SliceInfo]) -> DicomSeries:
    """A radiograph / secondary capture / cine: no patient position."""
    slices.sort(key=lambda s: s.order_key)
    first = slices[0]
    problems: list[str] = list(first.spacing_notes)
    spacing = first.pixel_spacing
    if spacing is None:
        spacing = (1.0, 1.0)  # a grid for geometry code; meta says the spacing is unknown
        if str(header.get("Modality", "")) not in ("OT", "SC", "XC", "OP", "ES", "SM"):
            problems.append("no pixel spacing in the header: sizes are in pixels, not mm")
        else:  # photographs and captures rarely state one, but 1 mm is still not a size
            problems.append("no pixel spacing (a photograph or capture): sizes are in pixels")
    row_dir, col_dir = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    orient = header.get("PatientOrientation")
    if orient and len(orient) == 2:
        r, c = _letters_to_vector(str(orient[0])), _letters_to_vector(str(orient[1]))
        if r is not None and c is not None and abs(float(np.dot(r, c))) < 1e-6:
            row_dir, col_dir = r, c
    direction = np.column_stack([row_dir, col_dir, np.cross(row_dir, col_dir)])
    affine = affine_from_parts((spacing[1], spacing[0], 1.0), direction, (0.0, 0.0, 0.0))
    ndim = 2 if len(slices) == 1 else 3
    if ndim == 3:
        problems.append(
            f"{len(slices)} frames without spatial positions: stacked as the third axis "
            "(time or frame order), 1 unit apart: no volume is measured on them"
        )
    series = DicomSeries(
        name, header, tuple(slices), affine, ndim, 1, problems, first.spacing_source
    )
    series.frames_without_positions = ndim == 3
    return series


def _letters_to_vector(code: str) -> NDArray[np.float64] | None:
    vec = np.zeros(3)
    for letter in code.upper():
        if letter not in _LETTER_TO_LPS:
            return None
        vec += _LETTER_TO_LPS[letter]
    norm = np.linalg.norm(vec)
    return vec / norm if norm > 0 else None


def _stack_series(name: str, header: Dataset, slices: list[SliceInfo]) -> DicomSeries:
    first = slices[0]
    assert first.orientation is not None and first.position is not None
    row = np.asarray(first.orientation[:3])
    col = np.asarray(first.orientation[3:])
    normal = np.cross(row, col)
    if np.linalg.norm(normal) < 1e-6:
        raise GeometryError(first.path, "ImageOrientationPatient row and column are parallel")
    normal = normal / np.linalg.norm(normal)
    problems: list[str] = []
    # group by position along the normal (channels = several slices at one position)
    dist = {id(s): float(np.dot(s.position, normal)) for s in slices}  # type: ignore[arg-type]
    slices.sort(key=lambda s: (round(dist[id(s)], 3), s.order_key))
    positions: list[list[SliceInfo]] = []
    for s in slices:
        if positions and abs(dist[id(positions[-1][0])] - dist[id(s)]) < 1e-3:
            positions[-1].append(s)
        else:
            positions.append([s])
    counts = {len(p) for p in positions}
    n_channels = 1
    temporal = None
    if counts == {1}:
        ordered = [p[0] for p in positions]
    elif len(counts) == 1:
        n_channels = counts.pop()
        ordered = [s for p in positions for s in p]
        temporal = temporal_info(header, positions)
        problems.extend(temporal.problems)
    elif (complete := _complete_volumes(positions)) is not None:
        positions, note = complete  # an interrupted 4D run: whole time points only
        problems.append(note)
        n_channels = len(positions[0])
        ordered = [s for p in positions for s in p]
        temporal = temporal_info(header, positions)
        problems.extend(temporal.problems)
    else:
        dropped = sum(len(p) - 1 for p in positions)
        problems.append(
            f"{dropped} slice(s) share a position with another slice but not every position has "
            "the same number of slices; the first at each position is used"
        )
        ordered = [p[0] for p in positions]
    spacing = first.pixel_spacing or (1.0, 1.0)
    problems.extend(first.spacing_notes)
    if first.pixel_spacing is None:
        problems.append("no pixel spacing in the header: in-plane sizes are in pixels, not mm")
    n_pos = len(positions)
    if n_pos == 1:
        # One slice has no slice-to-slice distance; like GDCM/SimpleITK, use
        # SpacingBetweenSlices when present and 1 mm otherwise (SliceThickness is ignored).
        between = _number(header.get("SpacingBetweenSlices"), 0.0)
        third = normal * (between if between > 0 else 1.0)
        if between <= 0:
            problems.append(
                "one slice and no SpacingBetweenSlices: 1 mm is used along the slice normal "
                "(not a measured spacing; SliceThickness is not a slice distance)"
            )
    else:
        p0 = np.asarray(positions[0][0].position)
        p1 = np.asarray(positions[-1][0].position)
        third = (p1 - p0) / (n_pos - 1)
        gaps = np.diff([dist[id(p[0])] for p in positions])
        _check_spacing(gaps, problems)
        cos = abs(float(np.dot(third, normal))) / max(float(np.linalg.norm(third)), 1e-12)
        tilt = float(np.degrees(np.arccos(min(1.0, cos))))
        if tilt > _TILT_DEG:
            problems.append(
                f"gantry tilt: slices are offset {tilt:.1f} degrees from the slice normal; the "
                "affine is sheared to pass through every slice (resample before models that "
                "assume orthogonal axes)"
            )
    affine = np.eye(4)
    affine[:3, 0] = row * spacing[1]
    affine[:3, 1] = col * spacing[0]
    affine[:3, 2] = third
    affine[:3, 3] = positions[0][0].position
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise GeometryError(first.path, "slices of the series do not span a volume")
    series = DicomSeries(
        name, header, tuple(ordered), affine, 3, n_channels, problems, first.spacing_source
    )
    series.temporal = temporal
    return series


def _complete_volumes(
    positions: list[list[SliceInfo]],
) -> tuple[list[list[SliceInfo]], str] | None:
    """The time points present at every position (an interrupted run), or None.

    Only for slices with a TemporalPositionIdentifier / Index, one per position and time point.
    """
    ids = []
    for p in positions:
        values = [s.timing.temporal_position if s.timing else None for s in p]
        if None in values or len(set(values)) != len(values):
            return None
        ids.append(values)
    common = set(ids[0]).intersection(*ids[1:])
    every = set().union(*ids)
    if len(common) < 2:
        return None
    kept = [
        [s for s, t in zip(p, v, strict=True) if t in common]
        for p, v in zip(positions, ids, strict=True)
    ]
    missing = sorted(every - common)
    shown = ", ".join(f"{m:g}" for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
    return kept, (
        f"{len(missing)} time point(s) lack slices at some positions (temporal position "
        f"{shown}): dropped, {len(common)} complete volumes kept"
    )


def _check_spacing(gaps: NDArray[np.float64], problems: list[str]) -> None:
    if gaps.size == 0:
        return
    median = float(np.median(gaps))
    bad = np.abs(gaps - median) > max(_SPACING_RTOL * median, 1e-3)
    if not bad.any():
        return
    ratios = gaps / median
    # a gap counts as missing slices only when it is close to a whole multiple of the spacing
    whole = bad & (ratios > 1.5) & (np.abs(ratios - np.round(ratios)) < 0.2)
    missing = int(np.sum(np.round(ratios[whole]) - 1))
    if missing and not (bad & ~whole).any():
        problems.append(
            f"missing slices: about {missing} slice(s) absent (gaps up to {gaps.max():.3g} mm "
            f"where the usual spacing is {median:.3g} mm)"
        )
    else:
        problems.append(
            f"non-uniform slice spacing from {gaps.min():.3g} to {gaps.max():.3g} mm; the affine "
            "uses the mean spacing"
        )
