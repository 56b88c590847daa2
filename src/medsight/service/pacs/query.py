"""Query the configured PACS for studies by patient ID, name, accession, date and modality.

Two kinds of PACS: DICOMweb (QIDO-RS, ``dicomweb_url``) and DIMSE (C-FIND, ``dimse_qr_peer``,
see :mod:`medsight.service.pacs.qr`).  :func:`choose_source` picks the one configured, or the
one asked for when both are (DICOMweb by default).  The query/retrieve page and ``GET
/api/pacs/studies`` use :func:`find_studies`; both kinds answer with the same rows
(:func:`study_rows`).  "Retrieve" is ``POST /api/pacs/pull`` (WADO-RS, or C-MOVE to medsight's
own C-STORE SCP).

Query values are checked before they reach the PACS: a date is ``YYYYMMDD`` (or
``YYYY-MM-DD``) or a range of two, a modality is a DICOM code (``CT``, ``MR`` ...), names, IDs
and accession numbers may hold ``*`` / ``?`` wildcards.  A query with no criterion, or only
wildcards, is refused: it would list the whole PACS.

Examples
--------
>>> StudyQuery(date="2024-01-02-2024-02-01", modality="ct").filters()
{'StudyDate': '20240102-20240201', 'ModalitiesInStudy': 'CT'}
>>> StudyQuery(patient_name="DOE*").filters()
{'PatientName': 'DOE*'}
>>> StudyQuery(patient_id="*")
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for StudyQuery
...
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, field_validator, model_validator

from medsight.core.errors import InvalidInputError

if TYPE_CHECKING:
    from medsight.service.settings import ServiceSettings

__all__ = [
    "PacsSource",
    "StudyQuery",
    "choose_source",
    "configured_sources",
    "find_studies",
    "study_rows",
]

_DATE = re.compile(r"^\d{8}$")
_MODALITY = re.compile(r"^[A-Z0-9]{1,16}$")
_TEXT = re.compile(r"^[^\\\x00-\x1f]*$")  # no backslash (DICOM value separator) or controls
_WILDCARDS = "*?"
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


class PacsSource(StrEnum):
    """How the PACS is queried and retrieved from."""

    DICOMWEB = "dicomweb"  # QIDO-RS / WADO-RS at dicomweb_url
    DIMSE = "dimse"  # C-FIND / C-MOVE with dimse_qr_peer


def configured_sources(settings: ServiceSettings) -> list[PacsSource]:
    """The kinds of PACS the settings name, DICOMweb first."""
    found = []
    if settings.dicomweb_url:
        found.append(PacsSource.DICOMWEB)
    if settings.dimse_qr_peer:
        found.append(PacsSource.DIMSE)
    return found


def choose_source(
    settings: ServiceSettings, requested: PacsSource | str | None = None
) -> PacsSource:
    """The PACS to use: ``requested``, else the only one configured, else DICOMweb.

    Raises
    ------
    InvalidInputError
        No PACS is configured, or ``requested`` is not.

    Examples
    --------
    >>> from medsight.service.settings import ServiceSettings
    >>> s = ServiceSettings(home=".", dimse_qr_peer="PACS@pacs:104")
    >>> choose_source(s).value
    'dimse'
    >>> choose_source(s.model_copy(update={"dicomweb_url": "http://pacs/dicom-web"})).value
    'dicomweb'
    """
    have = configured_sources(settings)
    if requested is None or requested == "":
        if not have:
            raise InvalidInputError(
                "dicomweb_url / dimse_qr_peer",
                "no PACS is configured: no DICOMweb PACS (dicomweb_url) and no DIMSE "
                "query/retrieve peer (dimse_qr_peer)",
                hint="set MEDSIGHT_DICOMWEB_URL or MEDSIGHT_DIMSE_QR_PEER (AE@host:port)",
            )
        return have[0]
    source = PacsSource(requested)
    if source not in have:
        setting = "dicomweb_url" if source == PacsSource.DICOMWEB else "dimse_qr_peer"
        what = "no DICOMweb PACS" if source == PacsSource.DICOMWEB else "no DIMSE peer"
        raise InvalidInputError(
            setting,
            f"{what} is configured (source={source.value})",
            hint=f"set MEDSIGHT_{setting.upper()}"
            + (f", or ask for source={have[0].value}" if have else ""),
        )
    return source


class StudyQuery(BaseModel):
    """What to look for; empty fields match anything, but at least one must be given."""

    patient_id: str = Field("", max_length=64)
    patient_name: str = Field("", max_length=64)
    accession: str = Field("", max_length=16)
    date: str = Field("", max_length=21, description="YYYYMMDD, YYYY-MM-DD or a range A-B")
    modality: str = Field("", max_length=16)
    limit: int = Field(50, ge=1, le=500)

    @field_validator("patient_id", "patient_name", "accession")
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

    @model_validator(mode="after")
    def _some_criterion(self) -> StudyQuery:
        given = (self.patient_id, self.patient_name, self.accession, self.date, self.modality)
        if not any(v.strip(_WILDCARDS) for v in given):
            raise ValueError(
                "give a patient ID, patient name, accession number, date or modality that is "
                "not only wildcards (* ?): an empty query would list the whole PACS"
            )
        return self

    def filters(self) -> dict[str, str]:
        """Matching keys (DICOM keywords) for the fields that are set, for QIDO-RS or C-FIND."""
        pairs = {
            "PatientID": self.patient_id,
            "PatientName": self.patient_name,
            "AccessionNumber": self.accession,
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


def find_studies(
    settings: ServiceSettings, query: StudyQuery, source: PacsSource | str | None = None
) -> list[dict[str, Any]]:
    """The studies on the configured PACS (see :func:`choose_source`) that match ``query``.

    Raises
    ------
    InvalidInputError
        No PACS is configured, or not the one asked for.
    DeliveryError
        The PACS did not answer or refused the query (502).
    """
    if choose_source(settings, source) == PacsSource.DIMSE:
        from medsight.service.pacs.qr import c_find_studies

        return c_find_studies(settings, query)
    from medsight.service.pacs.dicomweb import query_studies

    url = str(settings.dicomweb_url)
    return study_rows(query_studies(url, query.filters(), limit=query.limit, fields=FIELDS))
