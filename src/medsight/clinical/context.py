"""Clinical context from the record: age, sex, smoking, conditions and prior imaging reports.

A :class:`ClinicalContext` is what the guidelines and risk models read about a patient besides
the images.  It is read from a FHIR R4 Bundle file (:func:`context_from_bundle`) or a FHIR
server by REST search (:func:`context_from_server`), parsed with the ``fhir.resources`` R4B
models (R4B is the R4 technical correction; the same models the FHIR report output uses).
Every fact keeps its :class:`FactSource` (the Bundle file or server URL and the resource id)
so a report can show where it came from.

What is not stated is not guessed: an observation without a unit, a birth date that leaves the
age uncertain by a year, or two smoking statuses recorded at the same latest time that disagree
are left out, each with a line in :attr:`ClinicalContext.warnings`.  The age is computed on an
explicit ``reference_date`` (default: today, UTC), which the context records.

The extraction from FHIR resources is in :mod:`medsight.clinical.fhir_facts`; this module holds
the typed context and the two readers.

Examples
--------
>>> import datetime, json, tempfile, pathlib
>>> bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
...     {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female",
...                   "birthDate": "1960-05-01"}}]}
>>> path = pathlib.Path(tempfile.mkdtemp()) / "record.json"
>>> _ = path.write_text(json.dumps(bundle))
>>> ctx = context_from_bundle(path, reference_date=datetime.date(2026, 1, 1))
>>> ctx.patient_id, ctx.age_years, ctx.sex.value, ctx.smoking
('p1', 65, 'female', None)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from medsight.core.codes import CODE_FHIR_SYSTEMS, Code
from medsight.core.errors import InvalidInputError, MedsightError, UnreadableFileError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ClinicalCode",
    "ClinicalContext",
    "ConditionFact",
    "FactSource",
    "FhirReadError",
    "PriorReport",
    "Sex",
    "SmokingHistory",
    "SmokingStatus",
    "context_from_bundle",
    "context_from_server",
]

#: LOINC "Tobacco smoking status" (US Core smoking status observation).
SMOKING_STATUS_LOINC = "72166-2"
#: LOINC codes of a pack-years quantity: "Cigarette pack-years" and "Cigarettes smoked total
#: (pack-years) - Reported".
PACK_YEARS_LOINC = ("401201-6", "8664-5")

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # FHIR R4 datatype "id"


class FhirReadError(MedsightError):
    """A FHIR server could not be read: unreachable, an error status, or not FHIR JSON."""


class Sex(StrEnum):
    """FHIR administrative gender (``Patient.gender``)."""

    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


class SmokingStatus(StrEnum):
    """Tobacco smoking status, from the SNOMED CT answer codes of LOINC 72166-2."""

    CURRENT = "current"
    FORMER = "former"
    NEVER = "never"
    UNKNOWN = "unknown"


class FactSource(BaseModel):
    """Where a fact was read: the Bundle file or server base URL, and the resource."""

    model_config = ConfigDict(frozen=True)

    location: str  # the Bundle file path or the FHIR server base URL
    resource: str  # "Observation/123" (or the entry's fullUrl when the resource has no id)

    def __str__(self) -> str:
        return f"{self.resource} at {self.location}"


class ClinicalCode(BaseModel):
    """A FHIR Coding as read (system URI, code, display)."""

    model_config = ConfigDict(frozen=True)

    system: str
    code: str
    display: str = ""

    def as_code(self) -> Code:
        """The medsight :class:`~medsight.core.codes.Code` (DICOM scheme designator where known,
        ``I10`` for ICD-10; otherwise the system URI itself as the scheme).

        Examples
        --------
        >>> ClinicalCode(system="http://snomed.info/sct", code="8517006").as_code().scheme
        'SCT'
        """
        known = {uri: scheme for scheme, uri in CODE_FHIR_SYSTEMS.items()}
        known["http://hl7.org/fhir/sid/icd-10"] = "I10"
        return Code(self.code, known.get(self.system, self.system), self.display or self.code)


class SmokingHistory(BaseModel):
    """Smoking status and, when stated with its unit, pack-years."""

    status: SmokingStatus
    status_code: ClinicalCode
    recorded: str = ""  # the observation's effective date/time as given
    pack_years: float | None = None
    source: FactSource
    pack_years_source: FactSource | None = None


class ConditionFact(BaseModel):
    """A coded condition of the patient (SNOMED CT, ICD-10 ... as the record codes it)."""

    codes: list[ClinicalCode]
    text: str = ""
    clinical_status: str = ""  # active, recurrence, relapse, inactive, remission, resolved
    onset: str = ""
    source: FactSource


class PriorReport(BaseModel):
    """A prior imaging report (FHIR DiagnosticReport)."""

    date: str = ""  # effective date/time, else issued, as given
    title: str = ""  # the report code's display or text
    conclusion: str = ""
    status: str = ""
    source: FactSource


class ClinicalContext(BaseModel):
    """What the record says about one patient, each fact with its source."""

    patient_id: str
    patient_source: FactSource
    reference_date: dt.date
    birth_date: str = ""  # as given (YYYY, YYYY-MM or YYYY-MM-DD)
    age_years: int | None = None  # on reference_date; None when unknown or uncertain
    sex: Sex | None = None
    smoking: SmokingHistory | None = None
    conditions: list[ConditionFact] = Field(default_factory=list)
    prior_reports: list[PriorReport] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def context_rows(context: ClinicalContext) -> list[dict[str, str]]:
    """The facts of ``context`` as report rows: fact, value and the FHIR resource it came from.

    Examples
    --------
    >>> src = FactSource(location="record.json", resource="Patient/p1")
    >>> ctx = ClinicalContext(patient_id="P1", patient_source=src,
    ...                       reference_date=dt.date(2026, 1, 1), age_years=64, sex=Sex.FEMALE)
    >>> [(r["fact"], r["value"]) for r in context_rows(ctx)]
    [('patient', 'P1'), ('age', '64 years (on 2026-01-01)'), ('sex', 'female')]
    >>> context_rows(ctx)[0]["source"]
    'Patient/p1 at record.json'
    """
    rows = [{"fact": "patient", "value": context.patient_id, "source": str(context.patient_source)}]

    def add(fact: str, value: str, source: FactSource) -> None:
        rows.append({"fact": fact, "value": value, "source": str(source)})

    if context.age_years is not None:
        add(
            "age",
            f"{context.age_years} years (on {context.reference_date})",
            context.patient_source,
        )
    if context.sex is not None:
        add("sex", context.sex.value, context.patient_source)
    if context.smoking is not None:
        smoke = context.smoking
        add("smoking", smoke.status.value + (f" ({smoke.recorded})" if smoke.recorded else ""),
            smoke.source)  # fmt: skip
        if smoke.pack_years is not None:
            add("pack-years", f"{smoke.pack_years:g}", smoke.pack_years_source or smoke.source)
    for cond in context.conditions:
        name = cond.text or ", ".join(c.display or c.code for c in cond.codes)
        status = f" ({cond.clinical_status})" if cond.clinical_status else ""
        add("condition", name + status, cond.source)
    for rep in context.prior_reports:
        value = " ".join(x for x in (rep.date, rep.title) if x) + (
            f": {rep.conclusion}" if rep.conclusion else ""
        )
        add("prior report", value, rep.source)
    return rows


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


# ---------------------------------------------------------------------------------- Bundle
def context_from_bundle(
    path: str | os.PathLike[str],
    patient_id: str | None = None,
    *,
    reference_date: dt.date | None = None,
) -> ClinicalContext:
    """Read a patient's clinical context from a FHIR Bundle JSON file.

    Parameters
    ----------
    path : str or PathLike
        A FHIR R4 Bundle (any type: collection, searchset, transaction ...).
    patient_id : str, optional
        Which Patient to read; required when the Bundle holds more than one.
    reference_date : datetime.date, optional
        The date the age is computed on (default today, UTC).

    Raises
    ------
    UnreadableFileError
        Not JSON, not a Bundle, or an invalid Patient resource.
    InvalidInputError
        No Patient, ``patient_id`` not in the Bundle, or several patients and none chosen.

    Examples
    --------
    See the module documentation.
    """
    from fhir.resources.R4B import get_fhir_model_class

    from medsight.clinical.fhir_facts import build_context

    where = os.fspath(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(where, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableFileError(where, f"is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        found = data.get("resourceType") if isinstance(data, dict) else type(data).__name__
        raise UnreadableFileError(where, f"is not a FHIR Bundle (resourceType {found!r})")
    entries = data.get("entry") or []
    if not isinstance(entries, list):
        raise UnreadableFileError(where, "Bundle.entry is not a list")
    warnings: list[str] = []
    parsed: list[tuple[Any, FactSource, str]] = []  # (resource, source, fullUrl)
    for i, entry in enumerate(entries):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            warnings.append(f"{where}: entry {i} has no resource; left out")
            continue
        rtype = res["resourceType"]
        full_url = str(entry.get("fullUrl") or "")
        name = f"{rtype}/{res['id']}" if res.get("id") else full_url or f"{rtype} (entry {i})"
        try:
            model = get_fhir_model_class(rtype).model_validate(res)
        except Exception as exc:  # pydantic ValidationError, or an unknown resourceType
            problem = f"entry {i} ({name}) is not a valid FHIR R4 {rtype}: {_first_line(exc)}"
            if rtype == "Patient":
                raise UnreadableFileError(where, problem) from None
            warnings.append(f"{where}: {problem}; left out")
            continue
        parsed.append((model, FactSource(location=where, resource=name), full_url))
    patients = [(m, s, u) for m, s, u in parsed if m.get_resource_type() == "Patient"]
    if not patients:
        raise InvalidInputError(where, "the Bundle holds no Patient resource")
    if patient_id is None:
        if len(patients) > 1:
            ids = ", ".join(str(m.id or u) for m, _, u in patients)
            raise InvalidInputError(
                where, f"the Bundle holds several patients ({ids})", hint="choose one by its id"
            )
        chosen = patients[0]
    else:
        matches = [p for p in patients if p[0].id == patient_id]
        if not matches:
            ids = ", ".join(str(m.id or u) for m, _, u in patients)
            raise InvalidInputError(where, f"no Patient {patient_id!r} in the Bundle (has {ids})")
        chosen = matches[0]
    patient, psource, purl = chosen
    refs = {f"Patient/{patient.id}"} if patient.id else set()
    if purl:
        refs.add(purl)
    others = [(m, s) for m, s, _ in parsed if m.get_resource_type() != "Patient"]
    return build_context(
        patient, psource, others, refs, reference_date or _today(), warnings=warnings
    )


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[1:3]) if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)


# ---------------------------------------------------------------------------------- server
def context_from_server(
    base_url: str,
    patient_id: str,
    *,
    client: httpx.Client | None = None,
    timeout: float = 10.0,
    max_pages: int = 20,
    reference_date: dt.date | None = None,
) -> ClinicalContext:
    """Read a patient's clinical context from a FHIR R4 server by REST search.

    Reads ``Patient/{id}``, ``Observation?patient={id}&code=`` smoking status (LOINC 72166-2)
    and pack-years, ``Condition?patient={id}`` and ``DiagnosticReport?patient={id}``, following
    each searchset's ``next`` link up to ``max_pages`` pages (a warning says when the cap cut a
    search short).  ``next`` links must stay on the server's origin.

    Parameters
    ----------
    base_url : str
        The FHIR base, e.g. ``http://fhir:8080/fhir``.
    patient_id : str
        The Patient resource id.
    client : httpx.Client, optional
        Injected (authentication, TLS, tests); default a new client with ``timeout``.
    timeout : float
        Seconds per request when medsight makes the client.
    max_pages : int
        The most pages read per search.
    reference_date : datetime.date, optional
        The date the age is computed on (default today, UTC).

    Raises
    ------
    InvalidInputError
        ``patient_id`` is not a FHIR id, or the server has no such Patient.
    FhirReadError
        The server is unreachable, answers an error, or not FHIR JSON.

    Examples
    --------
    >>> import datetime, httpx
    >>> def server(request):  # a FHIR server with one patient and empty searches
    ...     if request.url.path == "/fhir/Patient/p1":
    ...         return httpx.Response(200, json={"resourceType": "Patient", "id": "p1",
    ...                                          "birthDate": "1950-02-03", "gender": "male"})
    ...     return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})
    >>> client = httpx.Client(transport=httpx.MockTransport(server))
    >>> ctx = context_from_server("http://ehr/fhir", "p1", client=client,
    ...                           reference_date=datetime.date(2026, 1, 1))
    >>> ctx.age_years, str(ctx.patient_source)
    (75, 'Patient/p1 at http://ehr/fhir')
    """
    import httpx

    from medsight.clinical.fhir_facts import build_context

    if not _FHIR_ID.match(patient_id):
        raise InvalidInputError(
            f"patient id {patient_id!r}", "is not a FHIR id (1-64 letters, digits, '-', '.')"
        )
    if max_pages < 1:
        raise InvalidInputError("max_pages", f"must be at least 1, got {max_pages}")
    base = base_url.rstrip("/") + "/"
    own = client is None
    http = httpx.Client(timeout=timeout) if client is None else client
    warnings: list[str] = []
    try:
        reader = _Reader(http, base, max_pages, warnings)
        patient_json = reader.get(f"Patient/{patient_id}", missing_ok=True)
        if patient_json is None:
            raise InvalidInputError(f"{base}Patient/{patient_id}", "no such Patient on the server")
        codes = ",".join(f"http://loinc.org|{c}" for c in (SMOKING_STATUS_LOINC, *PACK_YEARS_LOINC))
        resources = []
        for query in (
            f"Observation?patient={patient_id}&code={codes}",
            f"Condition?patient={patient_id}",
            f"DiagnosticReport?patient={patient_id}",
        ):
            resources += reader.search(query)
    finally:
        if own:
            http.close()
    patient = _validate(patient_json, base_url, f"Patient/{patient_id}", warnings, strict=True)
    psource = FactSource(location=base_url, resource=f"Patient/{patient_id}")
    others = []
    for res in resources:
        name = f"{res.get('resourceType')}/{res.get('id', '?')}"
        model = _validate(res, base_url, name, warnings, strict=False)
        if model is not None:
            others.append((model, FactSource(location=base_url, resource=name)))
    refs = {f"Patient/{patient_id}", f"{base}Patient/{patient_id}"}
    return build_context(
        patient, psource, others, refs, reference_date or _today(), warnings=warnings
    )


def _validate(res: Any, where: str, name: str, warnings: list[str], *, strict: bool) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(str(res.get("resourceType"))).model_validate(res)
    except Exception as exc:
        problem = f"{name} is not a valid FHIR R4 resource: {_first_line(exc)}"
        if strict:
            raise FhirReadError(where, problem) from None
        warnings.append(f"{where}: {problem}; left out")
        return None


class _Reader:
    """GETs and paged searches against one FHIR base URL."""

    def __init__(self, http: httpx.Client, base: str, max_pages: int, warnings: list[str]) -> None:
        self.http, self.base, self.max_pages, self.warnings = http, base, max_pages, warnings
        self.origin = urlsplit(base)[:2]

    def get(self, url: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        import httpx

        full = urljoin(self.base, url)
        try:
            resp = self.http.get(full, headers={"Accept": "application/fhir+json"})
        except httpx.HTTPError as exc:
            raise FhirReadError(full, f"FHIR server unreachable ({exc})") from None
        if resp.status_code in (404, 410) and missing_ok:
            return None
        if resp.status_code >= 400:
            raise FhirReadError(full, f"FHIR server answered {resp.status_code}{_outcome(resp)}")
        try:
            data = resp.json()
        except ValueError:
            raise FhirReadError(full, "the answer is not JSON") from None
        if not isinstance(data, dict) or "resourceType" not in data:
            raise FhirReadError(full, "the answer is not a FHIR resource")
        return data

    def search(self, query: str) -> list[dict[str, Any]]:
        """Every ``match`` resource of a search, following ``next`` links."""
        url, found = query, []
        for _ in range(self.max_pages):
            page = self.get(url) or {}
            if page.get("resourceType") != "Bundle":
                raise FhirReadError(urljoin(self.base, url), "a search did not answer a Bundle")
            for entry in page.get("entry") or []:
                res = entry.get("resource") if isinstance(entry, dict) else None
                search = entry.get("search") if isinstance(entry, dict) else None
                mode = search.get("mode", "match") if isinstance(search, dict) else "match"
                if isinstance(res, dict) and mode == "match":  # not "include" / "outcome"
                    found.append(res)
            links = [ln for ln in page.get("link") or [] if isinstance(ln, dict)]
            nxt = next((ln.get("url") for ln in links if ln.get("relation") == "next"), None)
            if not nxt:
                return found
            if urlsplit(urljoin(self.base, nxt))[:2] != self.origin:
                raise FhirReadError(
                    self.base, f"a search's next link leaves the server ({nxt}); not followed"
                )
            url = str(nxt)
        self.warnings.append(
            f"{self.base}{query.split('?')[0]}: more than {self.max_pages} pages; the rest "
            "was not read"
        )
        return found


def _outcome(resp: Any) -> str:
    """`` (diagnostics)`` of an OperationOutcome answer, if there is one."""
    try:
        issues = resp.json().get("issue") or []
        text = "; ".join(str(i.get("diagnostics") or i.get("code", "")) for i in issues)
    except Exception:
        return ""
    return f" ({text[:300]})" if text else ""
