"""What the channels of a DICOM volume are (time points, echoes), and the timing of a 4D series.

When several slices share one position (:func:`medsight.io.dicom.series.build_series` makes
them channels), this module says what tells them apart, from the headers of every slice:

* **echoes**: the slices at one position have as many distinct EchoTime values (enhanced:
  MREchoSequence EffectiveEchoTime) as there are channels -> ``channel_axis = "echo"``;
* **time points**: one echo time, and the slices at a position differ by
  TemporalPositionIdentifier (enhanced: FrameContentSequence TemporalPositionIndex), by
  acquisition time, FrameReferenceTime, TriggerTime or AcquisitionNumber ->
  ``channel_axis = "time"``;
* several echoes *and* several time points at one position -> ``channel_axis = "echo+time"``
  (time-major, echo-minor, as the channels are sorted), reported as a problem: select one echo
  before any time-series analysis;
* nothing tells them apart -> no ``channel_axis`` and a problem (duplicates or an unknown
  repetition).

For a time axis the number of volumes is counted from the files (the channels), never taken
from NumberOfTemporalPositions; when that header disagrees, a problem names both numbers (the
shared fMRI excerpt's header says 156 for the 18 volumes it holds).

Frame times (``frame_times_s``, seconds from the first volume, one per volume) come from the
first of these that every slice has and that increases from one volume to the next; a volume's
time is the earliest over its slices (slices of one volume are acquired over one TR):

1. AcquisitionDateTime, or AcquisitionDate + AcquisitionTime, or AcquisitionTime
   (enhanced: FrameAcquisitionDateTime); ContentTime when no acquisition time is given;
2. FrameReferenceTime (ms, PET);
3. TriggerTime (ms; enhanced: NominalCardiacTriggerDelayTime);
4. volume index x RepetitionTime.

``repetition_time_s`` is RepetitionTime / 1000 (the header states milliseconds; enhanced MR:
MRTimingAndRelatedParametersSequence).  When the frame times step by something other than the
repetition time (a 3D sequence whose TR is per excitation, a sparse design), a problem says
both; analyses use the frame times.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

__all__ = ["SliceTiming", "TemporalInfo", "dicom_seconds", "slice_timing", "temporal_info"]

#: Relative difference between the median frame step and the repetition time that is reported.
_TR_RTOL = 0.05


@dataclasses.dataclass(frozen=True)
class SliceTiming:
    """What distinguishes one 2D frame from others at the same position."""

    echo_time_ms: float | None = None
    temporal_position: float | None = None
    acquisition_s: float | None = None  # seconds (since the epoch when a date is known)
    reference_time_ms: float | None = None  # FrameReferenceTime
    trigger_time_ms: float | None = None
    acquisition_number: float | None = None


@dataclasses.dataclass(frozen=True)
class TemporalInfo:
    """The channel axis of a volume and, for a time axis, its timing."""

    channel_axis: str | None  # "time", "echo", "echo+time" or None (unknown)
    n_channels: int
    repetition_time_s: float | None = None
    frame_times_s: tuple[float, ...] | None = None
    frame_times_source: str | None = None
    echo_times_ms: tuple[float, ...] = ()
    problems: tuple[str, ...] = ()

    def meta(self) -> dict[str, Any]:
        """The ``Image.meta`` entries (see :mod:`medsight.core.image`)."""
        out: dict[str, Any] = {"channel_axis": self.channel_axis}
        if self.channel_axis == "time":
            out.update(
                n_volumes=self.n_channels,
                repetition_time_s=self.repetition_time_s,
                frame_times_s=self.frame_times_s,
                frame_times_source=self.frame_times_source,
            )
        if self.echo_times_ms:
            out["echo_times_ms"] = self.echo_times_ms
        return out


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def dicom_seconds(date: Any = None, time: Any = None, dt: Any = None) -> float | None:
    """Seconds of a DICOM DT, or DA + TM, or TM alone (seconds since midnight).

    Examples
    --------
    >>> dicom_seconds(time="160422.68")
    57862.68
    >>> round(dicom_seconds(dt="20140425160422.68") - dicom_seconds("20140425", "160420"), 3)
    2.68
    """
    if dt:
        text = str(dt).strip().split("+")[0].split("-")[0]
        date, time = text[:8], text[8:] or "0"
    if not time:
        return None
    text = str(time).strip().replace(":", "")
    try:
        hh, mm = int(text[0:2]), int(text[2:4] or 0)
        ss = float(text[4:] or 0)
    except ValueError:
        return None
    seconds = hh * 3600 + mm * 60 + ss
    if date:
        try:
            day = datetime.datetime.strptime(str(date).strip()[:8], "%Y%m%d")
        except ValueError:
            return None
        seconds += (day - datetime.datetime(1970, 1, 1)).total_seconds()
    return round(seconds, 6)


def _item(seq_owner: Dataset | None, name: str) -> Dataset | None:
    if seq_owner is None or name not in seq_owner or not seq_owner[name].value:
        return None
    item: Dataset = seq_owner[name].value[0]
    return item


def slice_timing(
    ds: Dataset, frame_item: Dataset | None = None, shared: Dataset | None = None
) -> SliceTiming:
    """The timing of one frame: classic attributes, or an enhanced object's functional groups.

    ``frame_item`` is the frame's PerFrameFunctionalGroupsSequence item and ``shared`` the
    SharedFunctionalGroupsSequence item of an enhanced multi-frame object.
    """
    if frame_item is not None:
        content = _item(frame_item, "FrameContentSequence")
        echo = _item(frame_item, "MREchoSequence") or _item(shared, "MREchoSequence")
        cardiac = _item(frame_item, "CardiacSynchronizationSequence")
        acquired = content.get("FrameAcquisitionDateTime") if content is not None else None
        referenced = content.get("FrameReferenceDateTime") if content is not None else None
        return SliceTiming(
            echo_time_ms=_num(echo.get("EffectiveEchoTime")) if echo is not None else None,
            temporal_position=(
                _num(content.get("TemporalPositionIndex")) if content is not None else None
            ),
            acquisition_s=dicom_seconds(dt=acquired or referenced),
            trigger_time_ms=(
                _num(cardiac.get("NominalCardiacTriggerDelayTime")) if cardiac is not None else None
            ),
        )
    acq = ds.get("AcquisitionDateTime")
    seconds = dicom_seconds(dt=acq) if acq else None
    if seconds is None:
        seconds = dicom_seconds(ds.get("AcquisitionDate"), ds.get("AcquisitionTime"))
    if seconds is None:
        seconds = dicom_seconds(ds.get("ContentDate"), ds.get("ContentTime"))
    return SliceTiming(
        echo_time_ms=_num(ds.get("EchoTime")),
        temporal_position=_num(ds.get("TemporalPositionIdentifier")),
        acquisition_s=seconds,
        reference_time_ms=_num(ds.get("FrameReferenceTime")),
        trigger_time_ms=_num(ds.get("TriggerTime")),
        acquisition_number=_num(ds.get("AcquisitionNumber")),
    )


def repetition_time_ms(header: Dataset) -> float | None:
    """RepetitionTime in ms (classic, or the enhanced MR shared functional group)."""
    tr = _num(header.get("RepetitionTime"))
    if tr is None:
        shared = _item(header, "SharedFunctionalGroupsSequence")
        timing = _item(shared, "MRTimingAndRelatedParametersSequence")
        tr = _num(timing.get("RepetitionTime")) if timing is not None else None
    return tr if tr is not None and tr > 0 else None


def _distinct(values: Sequence[float | None]) -> int:
    return len({round(v, 4) for v in values if v is not None})


def _volume_times(
    channels: list[list[SliceTiming]], attr: str, scale: float
) -> tuple[float, ...] | None:
    """Per volume: the earliest value of ``attr`` over its slices, relative to volume 0."""
    per_volume = []
    for slices in channels:
        values = [getattr(s, attr) for s in slices]
        if any(v is None for v in values):
            return None
        per_volume.append(min(values) * scale)
    times = np.asarray(per_volume) - per_volume[0]
    if attr == "acquisition_s" and np.any(times < 0):  # times of day across midnight
        times = np.where(times < 0, times + 86400.0, times)
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        return None
    return tuple(round(float(t), 6) for t in times)


def temporal_info(header: Dataset, positions: Sequence[Sequence[Any]]) -> TemporalInfo:
    """Classify the channels of a stack whose every position holds the same number of slices.

    Parameters
    ----------
    header : Dataset
        The series' first header (RepetitionTime, NumberOfTemporalPositions).
    positions : sequence of sequences of SliceInfo
        The slices at each position, in channel order (each has a ``timing`` attribute).
    """
    n = len(positions[0])
    image_type = header.get("ImageType") or []
    if "MOSAIC" in [
        str(v).upper() for v in ([image_type] if isinstance(image_type, str) else image_type)
    ]:
        return TemporalInfo(
            None,
            n,
            problems=(
                "Siemens mosaic: each file tiles a volume's slices in one image, which is not "
                "unpacked here (convert with dcm2niix first)",
            ),
        )
    timing: list[list[SliceTiming]] = [[s.timing or SliceTiming() for s in p] for p in positions]
    echoes = max(_distinct([t.echo_time_ms for t in pos]) for pos in timing)
    echo_times = tuple(
        sorted({round(t.echo_time_ms, 4) for t in timing[0] if t.echo_time_ms is not None})
    )
    if echoes == n:
        return TemporalInfo("echo", n, echo_times_ms=echo_times)
    problems: list[str] = []
    if echoes > 1:
        problems.append(
            f"{n} slices at each position hold {echoes} echo times and {n // echoes} time points "
            "(channels time-major, echo-minor): select one echo before a time-series analysis"
        )
        return TemporalInfo("echo+time", n, echo_times_ms=echo_times, problems=tuple(problems))
    keys = ("temporal_position", "acquisition_s", "reference_time_ms", "trigger_time_ms")
    keys_all = (*keys, "acquisition_number")
    if not any(
        min(_distinct([getattr(t, k) for t in pos]) for pos in timing) == n for k in keys_all
    ):
        problems.append(
            f"{n} slices at each position share echo time, temporal position and acquisition "
            "time: they are kept as channels of unknown meaning (duplicates?)"
        )
        return TemporalInfo(None, n, problems=tuple(problems))
    for c in range(n):
        ids = {t[c].temporal_position for t in timing}
        if None not in ids and len(ids) > 1:
            problems.append(
                f"channel {c + 1} holds temporal positions {sorted(ids)[:4]} at different "
                "slices: the time points are not aligned across slices"
            )
            break
    declared = _num(header.get("NumberOfTemporalPositions"))
    if declared is not None and int(declared) != n:
        problems.append(
            f"NumberOfTemporalPositions says {int(declared)} but the files hold {n} volumes: "
            f"{n} are used"
        )
    tr_ms = repetition_time_ms(header)
    tr_s = tr_ms / 1000.0 if tr_ms is not None else None
    channels = [[timing[p][c] for p in range(len(timing))] for c in range(n)]
    frame_times, source = None, None
    for attr, scale, name in (
        ("acquisition_s", 1.0, "AcquisitionTime"),
        ("reference_time_ms", 1e-3, "FrameReferenceTime"),
        ("trigger_time_ms", 1e-3, "TriggerTime"),
    ):
        frame_times = _volume_times(channels, attr, scale)
        if frame_times is not None:
            source = name
            break
    if frame_times is None and tr_s is not None:
        frame_times, source = tuple(round(c * tr_s, 6) for c in range(n)), "RepetitionTime"
    if frame_times is None:
        problems.append("no frame times: no acquisition, reference or trigger time, and no TR")
    elif tr_s is not None and n > 1:
        step = float(np.median(np.diff(frame_times)))
        if abs(step - tr_s) > _TR_RTOL * tr_s:
            problems.append(
                f"volumes are {step:.4g} s apart ({source}) but RepetitionTime is {tr_s:.4g} s: "
                "time-series analyses use the frame times"
            )
    if tr_s is None:
        problems.append("no RepetitionTime in the header: the repetition time is unknown")
    return TemporalInfo(
        "time",
        n,
        repetition_time_s=tr_s,
        frame_times_s=frame_times,
        frame_times_source=source,
        echo_times_ms=echo_times,
        problems=tuple(problems),
    )
