"""PET standardized uptake value, body weight (SUVbw), from the DICOM header; never guessed.

Follows the QIBA vendor-neutral SUV pseudo-code (QIBA FDG-PET/CT technical committee, "SUV
calculation" wiki; also summarised by the IBSI SUV computation document):

* Modality PT, Units (0054,1001) ``BQML``, Corrected Image (0028,0051) containing ``ATTN`` and
  ``DECY``;
* Decay Correction (0054,1102) ``START``: the images are decay corrected to the scan start,
  which is Series Date/Time unless that is after an Acquisition Date/Time of the series (a
  post-processed series), then the earliest Acquisition Date/Time (QIBA's Siemens branch; the
  GE private scan time is not read);  ``ADMIN``: corrected to the administration, no decay
  between injection and scan;  ``NONE`` (or anything else): no SUV (each frame would need its
  own decay factor);
* Radiopharmaceutical Information Sequence: Radionuclide Total Dose (Bq), Radionuclide Half
  Life (s), Radiopharmaceutical Start DateTime, else Start Time on the series date (an
  injection time later than the scan time of day means the previous day, and a note says so);
* Patient's Weight (kg).

``decayed dose = dose * 2 ** (-(scan - injection) / half-life)`` and ``SUVbw = value in Bq/mL *
weight (g) / decayed dose``: :attr:`SuvResult.factor` is ``weight * 1000 / decayed dose``
(g/Bq), applied to the rescaled pixel values (Rescale Slope may vary per slice; the reader has
applied it).  ``Units`` ``GML`` (already SUVbw) gives factor 1.  Whatever is missing or
inconsistent gives ``factor None`` and a reason naming the attribute.

Examples
--------
>>> from pydicom.dataset import Dataset
>>> ds = Dataset()
>>> ds.Modality, ds.Units = "PT", "CNTS"
>>> suv_bw(ds).reason
'no SUV: Units is CNTS (vendor counts), not BQML'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset

from medsight.io.dicom.temporal import dicom_seconds

__all__ = ["SuvResult", "suv_bw", "suv_meta"]

_DAY_S = 86400.0


@dataclasses.dataclass(frozen=True)
class SuvResult:
    """SUVbw scale factor (g/Bq, times Bq/mL gives g/mL) or why there is none."""

    factor: float | None
    reason: str | None = None  # "no SUV: ..." when factor is None
    decay_correction: str | None = None
    decay_time_s: float | None = None
    injected_dose_bq: float | None = None
    decayed_dose_bq: float | None = None
    weight_kg: float | None = None
    scan_time_source: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def available(self) -> bool:
        """Whether an SUV can be computed."""
        return self.factor is not None


def _refuse(reason: str, **kw: Any) -> SuvResult:
    return SuvResult(None, f"no SUV: {reason}", **kw)


def _positive(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def suv_bw(ds: Dataset, acquisition_s: Sequence[float | None] = ()) -> SuvResult:
    """The SUVbw factor of a PET series from its (first) header, per the QIBA pseudo-code.

    Parameters
    ----------
    ds : Dataset
        A header of the series.
    acquisition_s : sequence of float or None
        Acquisition date/times (:func:`~medsight.io.dicom.temporal.dicom_seconds`) of every
        slice, to check Series Time against; empty: the header's own.
    """
    if str(ds.get("Modality", "")) != "PT":
        return _refuse(f"modality {ds.get('Modality', '(none)')} is not PT")
    units = str(ds.get("Units", "")).upper()
    if units == "GML":
        return SuvResult(1.0, notes=("Units GML: the values are SUVbw already",))
    if units != "BQML":
        what = {"CNTS": " (vendor counts)", "": " (missing)"}.get(units, "")
        return _refuse(f"Units is {units or 'absent'}{what}, not BQML")
    values = ds.get("CorrectedImage") or []
    values = [values] if isinstance(values, str) else values  # one value reads as a str
    corrected = {str(v).upper() for v in values}
    missing = [c for c in ("ATTN", "DECY") if c not in corrected]
    if missing:
        return _refuse(f"CorrectedImage lacks {' and '.join(missing)}")
    decay = str(ds.get("DecayCorrection", "")).upper()
    if decay not in ("START", "ADMIN"):
        return _refuse(
            f"DecayCorrection is {decay or 'absent'}, not START or ADMIN (no single decay "
            "factor applies)",
            decay_correction=decay or None,
        )
    weight = _positive(ds.get("PatientWeight"))
    if weight is None:
        return _refuse("PatientWeight is missing or zero", decay_correction=decay)
    info = ds.get("RadiopharmaceuticalInformationSequence")
    if not info:
        return _refuse("no RadiopharmaceuticalInformationSequence", decay_correction=decay)
    item = info[0]
    dose = _positive(item.get("RadionuclideTotalDose"))
    if dose is None:
        return _refuse("RadionuclideTotalDose is missing or zero", decay_correction=decay)
    base = {"decay_correction": decay, "weight_kg": weight, "injected_dose_bq": dose}
    if decay == "ADMIN":
        return SuvResult(weight * 1000.0 / dose, decay_time_s=0.0, decayed_dose_bq=dose, **base)
    half_life = _positive(item.get("RadionuclideHalfLife"))
    if half_life is None:
        return _refuse("RadionuclideHalfLife is missing or zero", **base)
    notes: list[str] = []
    series = dicom_seconds(ds.get("SeriesDate"), ds.get("SeriesTime"))
    acquired = [a for a in acquisition_s if a is not None]
    if not acquired:
        own = dicom_seconds(ds.get("AcquisitionDate"), ds.get("AcquisitionTime"))
        acquired = [own] if own is not None else []
    scan, source = series, "SeriesTime"
    if series is None:
        return _refuse("SeriesTime is missing", **base)
    if series >= _DAY_S:  # dated: undated acquisition times are on the series date
        day0 = series - series % _DAY_S
        acquired = [a + day0 if a < _DAY_S else a for a in acquired]
    if acquired and series > min(acquired) + 1e-6:
        scan, source = min(acquired), "earliest AcquisitionTime"
        notes.append(
            "SeriesTime is after an AcquisitionTime (post-processed series?): the "
            "earliest AcquisitionTime is the scan start"
        )
    start_dt = item.get("RadiopharmaceuticalStartDateTime")
    if start_dt:
        injection = dicom_seconds(dt=start_dt)
        with_date = True
    else:
        injection = dicom_seconds(ds.get("SeriesDate"), item.get("RadiopharmaceuticalStartTime"))
        with_date = False
    if injection is None:
        return _refuse("RadiopharmaceuticalStartDateTime / StartTime is missing", **base)
    if ds.get("SeriesDate") is None and with_date:
        return _refuse("SeriesDate is missing (the injection has a date, the scan has not)", **base)
    decay_time = scan - injection
    if decay_time < 0 and not with_date and decay_time > -_DAY_S:
        decay_time += _DAY_S
        notes.append(
            "RadiopharmaceuticalStartTime is later in the day than the scan: the "
            "injection was the day before (midnight crossed)"
        )
    if decay_time < 0:
        return _refuse(f"the injection is {-decay_time:.0f} s after the scan start", **base)
    decayed = dose * 2.0 ** (-decay_time / half_life)
    return SuvResult(
        weight * 1000.0 / decayed,
        decay_time_s=decay_time,
        decayed_dose_bq=decayed,
        scan_time_source=source,
        notes=tuple(notes),
        **base,
    )


def suv_meta(ds: Dataset, acquisition_s: Sequence[float | None] = ()) -> dict[str, Any]:
    """``Image.meta`` entries of a PET series: ``suv_bw_factor`` (None: no SUV) and
    ``suv_status`` (``"SUVbw available"`` or the reason)."""
    result = suv_bw(ds, acquisition_s)
    return {
        "suv_bw_factor": result.factor,
        "suv_status": "SUVbw available" if result.available else result.reason,
        "suv_notes": result.notes,
    }
