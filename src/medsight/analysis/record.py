"""What the caller states about the patient for ``analyze``: ``--attribute`` and ``--fhir``.

``--attribute KEY=VALUE`` pairs (:func:`parse_attributes`) and the patient's record as a FHIR
Bundle (:func:`record_for_study`, read with :func:`medsight.clinical.context.context_from_bundle`)
reach the task families as ``RunOptions.attributes`` and ``RunOptions.clinical``: a classifier
with per-group thresholds decides at its group's threshold, a risk model runs on the clinical
variables it needs (and is withheld naming the missing ones otherwise).

Identity safety: another patient's record is never applied.  A Bundle is used only when exactly
one of its Patient resources carries a ``Patient.identifier`` whose value equals the study's
DICOM Patient ID (0010,0020) character for character (surrounding spaces aside), and when that
Patient's birth date
and administrative gender, where both sides state them, agree with the DICOM Patient's Birth
Date and Patient's Sex.  A study without a Patient ID (PNG, NIfTI, a blanked export) cannot be
matched and the Bundle is refused.  The age is computed on the study date (today when the study
has none).  An ``--attribute`` that contradicts the record (sex, age) is refused too.

DICOM has no portable equivalent of an identifier system, so by default any system counts;
where the hospital's medical record numbers have a known system (its Issuer of Patient ID),
``identifier_system`` (``analyze --fhir-identifier-system URI``) restricts the match to
identifiers of that system, so a number of another assigning authority never matches.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medsight.core.errors import InvalidInputError, UnreadableFileError

__all__ = ["check_attributes", "parse_attributes", "record_for_study"]

_DICOM_SEX = {"M": "male", "F": "female"}


def parse_attributes(items: Sequence[str]) -> dict[str, str]:
    """``["sex=F", "age=71"]`` -> ``{"sex": "F", "age": "71"}``.

    Raises
    ------
    InvalidInputError
        An item without ``=``, an empty key or value, or a key given twice with two values.

    Examples
    --------
    >>> parse_attributes(["sex=F", " age = 71 "])
    {'sex': 'F', 'age': '71'}
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise InvalidInputError(
                f"--attribute {item!r}", "is not KEY=VALUE", hint="e.g. --attribute sex=F"
            )
        if out.get(key, value) != value:
            raise InvalidInputError(
                f"--attribute {key}", f"is given twice with two values ({out[key]!r}, {value!r})"
            )
        out[key] = value
    return out


def _patients(path: Path) -> list[dict[str, Any]]:
    where = os.fspath(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(where, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableFileError(where, f"is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise UnreadableFileError(where, "is not a FHIR Bundle")
    entries = data.get("entry") or []
    resources = [e.get("resource") for e in entries if isinstance(e, dict)]
    return [r for r in resources if isinstance(r, dict) and r.get("resourceType") == "Patient"]


def _identifiers(patient: Mapping[str, Any], system: str | None = None) -> list[str]:
    found = patient.get("identifier") or []
    return [
        str(i["value"]).strip()
        for i in found
        if isinstance(i, dict)
        and isinstance(i.get("value"), str | int)
        and (system is None or i.get("system") == system)
    ]


def _dicom_date(text: str) -> str:
    """``YYYYMMDD`` -> ``YYYY-MM-DD`` (``""`` when not a full date)."""
    text = text.strip()
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return ""


def record_for_study(
    bundle: str | os.PathLike[str],
    header: Mapping[str, Any] | None,
    *,
    identifier_system: str | None = None,
) -> tuple[Any, str]:
    """The :class:`~medsight.clinical.context.ClinicalContext` of the study's patient and a
    line saying how it was matched.

    Parameters
    ----------
    bundle : str or PathLike
        The patient's record, a FHIR R4 Bundle JSON file.
    header : mapping or None
        The study's DICOM header (its first DICOM series); ``None`` for plain files.
    identifier_system : str, optional
        Match only ``Patient.identifier`` entries of this system (a URI); default any.

    Raises
    ------
    InvalidInputError
        The match cannot be made (no Patient ID in the study, no identifier in the Bundle) or
        fails (no Patient, or several, with the study's Patient ID; birth date or sex differ).
    UnreadableFileError
        The file is not a FHIR Bundle.
    """
    from medsight.clinical.context import context_from_bundle

    path = Path(bundle)
    where = os.fspath(path)
    hdr = header or {}
    pid = str(hdr.get("PatientID", "") or "").strip()
    refuse = "never applied to a study it cannot be matched with"
    if not pid:
        raise InvalidInputError(
            where,
            "cannot be matched with the study: the study has no DICOM Patient ID "
            f"(0010,0020); a patient record is {refuse}",
        )
    patients = _patients(path)
    system = identifier_system
    matches = [p for p in patients if pid in _identifiers(p, system)]
    if not matches:
        has_ids = any(_identifiers(p, system) for p in patients)
        of = f" of system {system}" if system else ""
        problem = (
            f"no Patient resource of the Bundle has an identifier{of} equal to the study's "
            "Patient ID"
            if has_ids
            else f"its Patient resources carry no identifier{of} to match with the study's "
            "Patient ID"
        )
        raise InvalidInputError(where, f"{problem}: it is not this patient's record ({refuse})")
    if len(matches) > 1:
        raise InvalidInputError(
            where, f"{len(matches)} Patient resources carry the study's Patient ID; ambiguous"
        )
    patient = matches[0]
    born, dicom_born = (
        str(patient.get("birthDate", "")),
        _dicom_date(str(hdr.get("PatientBirthDate", "") or "")),
    )
    if dicom_born and len(born) == 10 and born != dicom_born:
        raise InvalidInputError(
            where, "the Patient's birth date differs from the study's Patient's Birth Date"
        )
    gender = str(patient.get("gender", "") or "")
    dicom_sex = _DICOM_SEX.get(str(hdr.get("PatientSex", "") or "").strip().upper())
    if dicom_sex and gender in _DICOM_SEX.values() and gender != dicom_sex:
        raise InvalidInputError(
            where, "the Patient's gender differs from the study's Patient's Sex"
        )
    if not patient.get("id") and len(patients) > 1:
        raise InvalidInputError(where, "the matching Patient has no id among several patients")
    study_date = _dicom_date(str(hdr.get("StudyDate", "") or ""))
    on = dt.date.fromisoformat(study_date) if study_date else None
    context = context_from_bundle(path, patient.get("id") or None, reference_date=on)
    resource = f"Patient/{patient['id']}" if patient.get("id") else "the Bundle's Patient"
    of = f" (system {system})" if system else ""
    on_text = on.isoformat() if on else "today (the study has no date)"
    note = (
        f"clinical record: {resource} of {path.name}, matched on identifier{of} = DICOM "
        f"Patient ID {pid!r}; age on {on_text}"
    )
    return context, note


def check_attributes(attributes: Mapping[str, str], context: Any) -> None:
    """Refuse ``--attribute`` values that contradict the record (``sex``, ``age``).

    Raises
    ------
    InvalidInputError
        ``sex`` or ``age`` given on the command line differs from the record's.
    """
    sex = getattr(context, "sex", None)
    given = attributes.get("sex")
    if given is not None and sex is not None:
        text = str(getattr(sex, "value", sex)).lower()
        if given.lower() not in (text, text[:1]):
            raise InvalidInputError(
                f"--attribute sex={given}", f"contradicts the patient's record ({text})"
            )
    age = getattr(context, "age_years", None)
    if "age" in attributes and age is not None and attributes["age"].strip() != str(age):
        raise InvalidInputError(
            f"--attribute age={attributes['age']}", f"contradicts the patient's record ({age})"
        )
