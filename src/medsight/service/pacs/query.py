"""Query the configured PACS for studies (QIDO-RS) by patient ID, name, date and modality.

The query/retrieve page and ``GET /api/pacs/studies`` use :func:`find_studies`; "retrieve"
is the existing WADO-RS pull (``POST /api/pacs/pull``).  Query values are checked before they
reach the PACS: a date is ``YYYYMMDD`` (or ``YYYY-MM-DD``) or a range of two, a modality is a
DICOM code (``CT``, ``MR`` ...), names and IDs may hold ``*`` wildcards.

Examples
--------
>>> StudyQuery(date="2024-01-02-2024-02-01", modality="ct").filters()
{'StudyDate': '20240102-20240201', 'ModalitiesInStudy': 'CT'}
>>> StudyQuery(patient_name="DOE*").filters()
{'PatientName': 'DOE*'}
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

from medsight.core.errors import InvalidInputError

__all__ = ["StudyQuery", "find_studies", "study_rows"]

_DATE = re.compile(r"^\d{8}$")
_MODALITY = re.compile(r"^[A-Z0-9]{1,16}$")
_TEXT = re.compile(r"^[^\\\x00-\x1f]*$")  # no backslash (DICOM value separator) or controls
#: Attributes asked of the PACS beyond its defaults.
FIELDS = (
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "AccessionNumber",
)


def _date(text: str) -> str:
    value = text.replace("-", "") if len(text) == 10 else text
    if not _DATE.match(value):
        raise ValueError(f"{text!r} is not a date YYYYMMDD or YYYY-MM-DD")
    return value


class StudyQuery(BaseModel):
    """What to look for; empty fields match anything."""

    patient_id: str = Field("", max_length=64)
    patient_name: str = Field("", max_length=64)
    date: str = Field("", max_length=21, description="YYYYMMDD, YYYY-MM-DD or a range A-B")
    modality: str = Field("", max_length=16)
    limit: int = Field(50, ge=1, le=500)

    @field_validator("patient_id", "patient_name")
    @classmethod
    def _plain(cls, value: str) -> str:
        if not _TEXT.match(value):
            raise ValueError("holds a backslash or a control character")
        return value.strip()

    @field_validator("date")
    @classmethod
    def _dates(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        if len(value) in (8, 10):
            return _date(value)
        for sep in range(len(value)):  # a range: the '-' between two dates of 8 or 10 chars
            if value[sep] == "-" and sep in (8, 10) and len(value) - sep - 1 in (8, 10):
                return f"{_date(value[:sep])}-{_date(value[sep + 1 :])}"
        raise ValueError(f"{value!r} is not a date or a range of two dates (A-B)")

    @field_validator("modality")
    @classmethod
    def _modality(cls, value: str) -> str:
        value = value.strip().upper()
        if value and not _MODALITY.match(value):
            raise ValueError(f"{value!r} is not a DICOM modality code (CT, MR, CR ...)")
        return value

    def filters(self) -> dict[str, str]:
        """QIDO-RS search filters (DICOM keywords) for the fields that are set."""
        pairs = {
            "PatientID": self.patient_id,
            "PatientName": self.patient_name,
            "StudyDate": self.date,
            "ModalitiesInStudy": self.modality,
        }
        return {k: v for k, v in pairs.items() if v}


def _value(ds: Any, keyword: str) -> Any:
    elem = ds.get(keyword)
    if elem is None or elem == "":
        return ""
    return elem


def study_rows(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """QIDO-RS JSON (DICOM JSON model) -> one plain dict per study, newest first."""
    from pydicom import Dataset

    rows = []
    for item in found:
        ds = Dataset.from_json(item)
        uid = str(_value(ds, "StudyInstanceUID"))
        if not uid:
            continue
        modalities = _value(ds, "ModalitiesInStudy")
        if isinstance(modalities, str):
            modalities = [modalities] if modalities else []
        rows.append(
            {
                "study_uid": uid,
                "patient_id": str(_value(ds, "PatientID")),
                "patient_name": str(_value(ds, "PatientName")),
                "date": str(_value(ds, "StudyDate")),
                "time": str(_value(ds, "StudyTime")),
                "description": str(_value(ds, "StudyDescription")),
                "accession": str(_value(ds, "AccessionNumber")),
                "modalities": [str(m) for m in modalities],
                "series": int(_value(ds, "NumberOfStudyRelatedSeries") or 0),
                "instances": int(_value(ds, "NumberOfStudyRelatedInstances") or 0),
            }
        )
    rows.sort(key=lambda r: (r["date"], r["time"]), reverse=True)
    return rows


def find_studies(url: str | None, query: StudyQuery) -> list[dict[str, Any]]:
    """The studies on the configured DICOMweb PACS (``url``) that match ``query``.

    Raises
    ------
    InvalidInputError
        No DICOMweb PACS is configured.
    DeliveryError
        The PACS did not answer or refused the query (502).
    """
    from medsight.service.pacs.dicomweb import query_studies

    if not url:
        raise InvalidInputError(
            "dicomweb_url", "no DICOMweb PACS is configured", hint="set MEDSIGHT_DICOMWEB_URL"
        )
    return study_rows(query_studies(url, query.filters(), limit=query.limit, fields=FIELDS))
