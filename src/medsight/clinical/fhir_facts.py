"""Facts from parsed FHIR R4 resources (``fhir.resources`` R4B models) into a ClinicalContext.

Pure functions, no I/O: :mod:`medsight.clinical.context` reads the Bundle or the server and
calls :func:`build_context`.  The rules, each leaving a fact out with a warning rather than
guessing:

* **Age** on the reference date from ``Patient.birthDate``; a partial date (``1960`` or
  ``1960-05``) gives an age only when every day it allows gives the same age.
* **Smoking**: Observations of LOINC 72166-2 with a SNOMED CT answer; the latest by effective
  time wins (a former smoker who was a current smoker years ago is not a contradiction); two
  different statuses at the same latest time (or all undated) are.  **Pack-years** (LOINC
  401201-6 or 8664-5, an Observation or a component of the status) only with a pack-years unit.
* **Conditions**: coded ones (``Condition.code.coding``), not refuted or entered in error.
* **Prior reports**: DiagnosticReports that are imaging (category RAD, CT, ultrasound ..., or
  LOINC 18748-4 / LP29684-5) or have no category; newest first.
* Resources whose subject is not the patient are left out with a warning.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from typing import Any

from medsight.clinical.context import (
    PACK_YEARS_LOINC,
    SMOKING_STATUS_LOINC,
    ClinicalCode,
    ClinicalContext,
    ConditionFact,
    FactSource,
    PriorReport,
    Sex,
    SmokingHistory,
    SmokingStatus,
)

__all__ = ["SMOKING_CODES", "build_context", "imaging_report"]

_SNOMED = "http://snomed.info/sct"
_LOINC = "http://loinc.org"
_V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"

#: SNOMED CT answers of LOINC 72166-2 (the US Core smoking status value set).
SMOKING_CODES: dict[str, SmokingStatus] = {
    "449868002": SmokingStatus.CURRENT,  # Smokes tobacco daily
    "428041000124106": SmokingStatus.CURRENT,  # Occasional tobacco smoker
    "428061000124105": SmokingStatus.CURRENT,  # Light tobacco smoker
    "428071000124103": SmokingStatus.CURRENT,  # Heavy tobacco smoker
    "77176002": SmokingStatus.CURRENT,  # Smoker (current status unknown is not "never")
    "8517006": SmokingStatus.FORMER,  # Ex-smoker
    "266919005": SmokingStatus.NEVER,  # Never smoked tobacco
    "266927001": SmokingStatus.UNKNOWN,  # Tobacco smoking consumption unknown
}
_PACK_YEAR_UNITS = {"{packyears}", "{pack-years}", "{pack_years}", "pack-years", "pack years"}
_IMAGING_V2 = {"RAD", "CT", "NMR", "NMS", "CUS", "OUS", "RUS", "VUS", "XRC"}
_IMAGING_LOINC = {"18748-4", "LP29684-5"}
_DROPPED = {"entered-in-error", "cancelled"}


def _codings(concept: Any) -> list[ClinicalCode]:
    out = []
    for c in (getattr(concept, "coding", None) or []) if concept is not None else []:
        if c.system and c.code:
            out.append(
                ClinicalCode(system=str(c.system), code=str(c.code), display=c.display or "")
            )
    return out


def _has_code(concept: Any, system: str, codes: Iterable[str]) -> bool:
    wanted = set(codes)
    return any(c.system == system and c.code in wanted for c in _codings(concept))


def _when(res: Any) -> str:
    """The effective (or issued) time as ISO text, ``""`` when undated."""
    for name in ("effectiveDateTime", "issued"):
        value = getattr(res, name, None)
        if value is not None:
            return value.isoformat() if hasattr(value, "isoformat") else str(value)
    period = getattr(res, "effectivePeriod", None)
    if period is not None and period.start is not None:
        return period.start.isoformat()
    return ""


def _age(birth: Any, on: dt.date, warnings: list[str], source: FactSource) -> int | None:
    text = birth.isoformat() if hasattr(birth, "isoformat") else str(birth)
    parts = [int(p) for p in text[:10].split("-")]
    year = parts[0]
    month_lo, month_hi = (parts[1], parts[1]) if len(parts) > 1 else (1, 12)
    first = dt.date(year, month_lo, parts[2] if len(parts) > 2 else 1)
    last_day = parts[2] if len(parts) > 2 else calendar.monthrange(year, month_hi)[1]
    last = dt.date(year, month_hi, last_day)

    def years(born: dt.date) -> int:
        return on.year - born.year - ((on.month, on.day) < (born.month, born.day))

    if first > on:
        warnings.append(f"{source}: birth date {text} is after {on}; age left out")
        return None
    oldest, youngest = years(first), years(last)
    if oldest != youngest:
        warnings.append(
            f"{source}: birth date {text} gives an age of {youngest} or {oldest} on {on}; "
            "age left out"
        )
        return None
    return oldest


def _about_patient(res: Any, refs: set[str], source: FactSource, warnings: list[str]) -> bool:
    subject = getattr(res, "subject", None)
    ref = getattr(subject, "reference", None) if subject is not None else None
    if not ref:
        warnings.append(f"{source}: has no subject; left out")
        return False
    if ref not in refs:
        warnings.append(f"{source}: is about {ref}, not this patient; left out")
        return False
    return True


def _pack_years(quantity: Any, source: FactSource, warnings: list[str]) -> float | None:
    if quantity is None or quantity.value is None:
        warnings.append(f"{source}: pack-years without a value; left out")
        return None
    unit = str(quantity.code or quantity.unit or "").strip().lower()
    if unit not in _PACK_YEAR_UNITS:
        stated = f"unit {unit!r}" if unit else "no unit"
        warnings.append(f"{source}: pack-years {quantity.value} with {stated}; left out")
        return None
    return float(quantity.value)


def _latest(
    items: list[tuple[str, Any, FactSource]], what: str, warnings: list[str]
) -> tuple[str, Any, FactSource] | None:
    """The latest (time, value, source); None with a warning when the latest ones disagree."""
    if not items:
        return None
    top = max(t for t, _, _ in items)
    latest = [i for i in items if i[0] == top]
    values = {v for _, v, _ in latest}
    if len(values) > 1:
        where = ", ".join(str(s) for _, _, s in latest)
        when = f"at {top}" if top else "undated"
        shown = ", ".join(sorted(str(v) for v in values))
        warnings.append(f"{what} contradicts itself ({shown}, {when}: {where}); left out")
        return None
    return latest[0]


def imaging_report(report: Any) -> bool:
    """Whether a DiagnosticReport is an imaging report (or states no category).

    Examples
    --------
    >>> from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    >>> def rep(code):
    ...     v2 = "http://terminology.hl7.org/CodeSystem/v2-0074"
    ...     return DiagnosticReport.model_validate({"status": "final", "code": {"text": "x"},
    ...         "category": [{"coding": [{"system": v2, "code": code}]}]})
    >>> imaging_report(rep("RAD")), imaging_report(rep("LAB"))
    (True, False)
    """
    categories = list(getattr(report, "category", None) or [])
    if not categories:
        return True
    return any(
        _has_code(c, _V2_0074, _IMAGING_V2) or _has_code(c, _LOINC, _IMAGING_LOINC)
        for c in categories
    )


def build_context(
    patient: Any,
    patient_source: FactSource,
    resources: Iterable[tuple[Any, FactSource]],
    patient_refs: set[str],
    reference_date: dt.date,
    *,
    warnings: list[str] | None = None,
) -> ClinicalContext:
    """The :class:`ClinicalContext` of ``patient`` from the other resources read with it.

    ``patient_refs`` are the references that point at the patient (``Patient/p1``, its
    ``urn:uuid:`` fullUrl, the absolute URL on the server).

    Examples
    --------
    >>> from fhir.resources.R4B.patient import Patient
    >>> src = FactSource(location="record.json", resource="Patient/p1")
    >>> ctx = build_context(Patient(id="p1", birthDate="1960"), src, [], {"Patient/p1"},
    ...                     dt.date(2026, 6, 1))
    >>> ctx.age_years, ctx.warnings[0].split(": ", 1)[1]
    (None, 'birth date 1960 gives an age of 65 or 66 on 2026-06-01; age left out')
    """
    warnings = list(warnings or [])
    age = None
    if patient.birthDate is not None:
        age = _age(patient.birthDate, reference_date, warnings, patient_source)
    else:
        warnings.append(f"{patient_source}: no birth date; age unknown")
    sex = None
    if patient.gender in {s.value for s in Sex}:
        sex = Sex(patient.gender)
    elif patient.gender:
        warnings.append(f"{patient_source}: gender {patient.gender!r} is not FHIR's; left out")
    statuses: list[tuple[str, Any, FactSource]] = []
    packs: list[tuple[str, Any, FactSource]] = []
    conditions: list[ConditionFact] = []
    reports: list[PriorReport] = []
    for res, source in resources:
        kind = res.get_resource_type()
        if kind not in ("Observation", "Condition", "DiagnosticReport"):
            continue
        if str(getattr(res, "status", "") or "") in _DROPPED:
            continue
        if not _about_patient(res, patient_refs, source, warnings):
            continue
        if kind == "Observation":
            when = _when(res)
            if _has_code(res.code, _LOINC, [SMOKING_STATUS_LOINC]):
                answer = [c for c in _codings(res.valueCodeableConcept) if c.system == _SNOMED]
                known = [c for c in answer if c.code in SMOKING_CODES]
                if not known:
                    shown = ", ".join(c.code for c in answer) or "no SNOMED CT answer"
                    warnings.append(f"{source}: smoking status {shown} not understood; left out")
                else:
                    statuses.append((when, known[0], source))
                for comp in res.component or []:
                    if _has_code(comp.code, _LOINC, PACK_YEARS_LOINC):
                        value = _pack_years(comp.valueQuantity, source, warnings)
                        if value is not None:
                            packs.append((when, value, source))
            elif _has_code(res.code, _LOINC, PACK_YEARS_LOINC):
                value = _pack_years(res.valueQuantity, source, warnings)
                if value is not None:
                    packs.append((when, value, source))
        elif kind == "Condition":
            verification = {c.code for c in _codings(res.verificationStatus)}
            if verification & {"refuted", "entered-in-error"}:
                continue
            codes = _codings(res.code)
            if not codes:
                warnings.append(f"{source}: condition is not coded; left out")
                continue
            onset = res.onsetDateTime
            conditions.append(
                ConditionFact(
                    codes=codes,
                    text=(res.code.text if res.code is not None else "") or codes[0].display,
                    clinical_status=next((c.code for c in _codings(res.clinicalStatus)), ""),
                    onset=onset.isoformat() if hasattr(onset, "isoformat") else str(onset or ""),
                    source=source,
                )
            )
        elif imaging_report(res):
            title = res.code.text or next((c.display for c in _codings(res.code)), "")
            reports.append(
                PriorReport(
                    date=_when(res),
                    title=title or "",
                    conclusion=res.conclusion or "",
                    status=str(res.status or ""),
                    source=source,
                )
            )
    smoking = None
    status = _latest(
        [(t, SMOKING_CODES[c.code], s) for t, c, s in statuses], "smoking status", warnings
    )
    if status is not None:
        when, value, source = status
        code = next(c for t, c, s in statuses if s == source)
        pack = _latest(packs, "pack-years", warnings)
        smoking = SmokingHistory(
            status=value,
            status_code=code,
            recorded=when,
            pack_years=pack[1] if pack else None,
            source=source,
            pack_years_source=pack[2] if pack else None,
        )
    elif packs:
        warnings.append("pack-years stated without a smoking status; left out")
    reports.sort(key=lambda r: r.date, reverse=True)
    return ClinicalContext(
        patient_id=str(patient.id or patient_source.resource),
        patient_source=patient_source,
        reference_date=reference_date,
        birth_date=str(patient.birthDate or ""),
        age_years=age,
        sex=sex,
        smoking=smoking,
        conditions=conditions,
        prior_reports=reports,
        warnings=warnings,
    )
