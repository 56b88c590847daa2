"""CDS Hooks 2.0 (cds-hooks.hl7.org): discovery and the ``patient-view`` / ``order-select``
services, returning cards with the latest AI findings stored for the patient.

* ``GET /cds-services``: the discovery document, ``{"services": [...]}``, each service with
  ``hook``, ``id``, ``title``, ``description`` and ``prefetch`` templates.
* ``POST /cds-services/{id}``: a CDS Hooks request (``hook``, ``hookInstance``, ``context``
  with ``patientId``; ``fhirServer``, ``fhirAuthorization`` and ``prefetch`` optional;
  ``order-select`` also needs ``context.selections`` and ``context.draftOrders``) answered with
  ``{"cards": [...]}``.  A malformed request is a 400 with the reason; an unknown service a
  404; a patient without analysed studies gets ``{"cards": []}``.

Both are authenticated like the rest of the API (the bearer token of
:data:`~medsight.service.deps.CurrentUser`) or, for the EHRs configured in
``ServiceSettings.cds_jwks``, by the JWT the EHR signs as the CDS Hooks specification says
(:mod:`medsight.service.cds_auth`); each call is audited, with the EHR as ``ehr:<iss>``.

**Which findings become cards.**  The patient is matched on the studies' DICOM Patient ID
(``StudyRow.patient_id``), so the EHR's ``patientId`` must be that identifier.  For each of the
patient's :data:`MAX_STUDIES` most recent studies, the latest job counts when it is done; every
*present* finding of its ``report.json`` becomes one card.  Outputs a model withheld (outside its
intended use, unlike its training data) or that failed have no findings and never become cards
(findings of a model whose run is not ``ran`` are skipped as well, should a report carry any).
The indicator comes from the label's clinical meaning (:mod:`medsight.core.significance`):

==========================================  =========
finding                                      indicator
==========================================  =========
actionable, stat                             critical
actionable, urgent or routine (or unstated)  warning
indeterminate / unstated, normal, benign,    info
anatomy
==========================================  =========

``critical`` is kept for stat findings so the EHR's most intrusive display stays rare.  Every
card's ``detail`` opens by saying it is a preliminary AI suggestion that requires review; its
``source`` is ``medsight`` with the model id and version (``source.topic``); its link opens the
study in the viewer.

**Guideline cards.**  After the finding cards come the guideline suggestions stored with the
same analyses (``report.json`` ``guidelines``, :mod:`medsight.clinical.guideline_facts`): one
card per *applied* guideline (category, recommendation, rules fired, facts and their sources),
its ``source.label`` the rule set's title and citation, its indicator ``warning`` for the
categories of :data:`WARNING_CATEGORIES` (work-up suggested) and ``info`` otherwise.  A
guideline not applied (an input missing) gives no card.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select

from medsight.clinical.guideline_facts import SUGGESTION_HEADING, GuidelineSuggestion
from medsight.core.errors import InvalidInputError
from medsight.core.findings import Finding
from medsight.core.operating import operating_text
from medsight.core.significance import Significance, Urgency, triage_urgency
from medsight.reporting.report import DISCLAIMER, Report
from medsight.service.cds_auth import ReplayGuard, verify_ehr_jwt
from medsight.service.deps import Services, ServicesDep, get_current_user
from medsight.service.errors import AuthError, NotFoundError
from medsight.service.models import JobRow, JobState, StudyRow
from medsight.service.worker import result_dir

__all__ = [
    "MAX_STUDIES",
    "SERVICES",
    "WARNING_CATEGORIES",
    "CdsRequest",
    "cards_for_patient",
    "guideline_cards",
    "guideline_indicator",
]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/cds-services", tags=["cds-hooks"])

#: The most recent studies of a patient whose findings become cards.
MAX_STUDIES = 5

_PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "smoking": "Observation?patient={{context.patientId}}&code=http://loinc.org|72166-2",
    "conditions": "Condition?patient={{context.patientId}}",
}

#: The discovery entries, by service id.
SERVICES: dict[str, dict[str, Any]] = {
    "medsight-patient-view": {
        "hook": "patient-view",
        "title": "medsight AI imaging findings",
        "description": (
            "The latest AI findings on the patient's imaging studies analysed by medsight: "
            "preliminary suggestions that require review by a qualified clinician."
        ),
        "id": "medsight-patient-view",
        "prefetch": _PREFETCH,
    },
    "medsight-order-select": {
        "hook": "order-select",
        "title": "medsight AI findings when ordering",
        "description": (
            "While an order is selected, the patient's latest AI imaging findings from "
            "medsight (preliminary suggestions that require review), e.g. before repeating "
            "an imaging study."
        ),
        "id": "medsight-order-select",
        "prefetch": _PREFETCH,
    },
}


class CdsContext(BaseModel):
    """The hook's ``context`` (the fields medsight reads; others are kept)."""

    model_config = ConfigDict(extra="allow")

    patientId: Annotated[str, Field(min_length=1, max_length=64)]  # the field names are the spec's
    userId: str | None = None
    encounterId: str | None = None
    selections: list[str] | None = None
    draftOrders: dict[str, Any] | None = None


class CdsRequest(BaseModel):
    """A CDS Hooks 2.0 service request."""

    model_config = ConfigDict(extra="allow")

    hook: Annotated[str, Field(min_length=1)]
    hookInstance: Annotated[str, Field(min_length=1)]
    fhirServer: str | None = None
    fhirAuthorization: dict[str, Any] | None = None
    context: CdsContext
    prefetch: dict[str, Any] | None = None

    @field_validator("fhirServer")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value


Indicator = Literal["info", "warning", "critical"]


def indicator(finding: Finding) -> Indicator:
    """The card indicator of a present finding (see the module documentation).

    Examples
    --------
    >>> from medsight.core.codes import Code
    >>> f = Finding(Code("1", "SCT", "Malignant"), "m", "1", kind="classification",
    ...             probability=0.9, positive=True, significance="actionable")
    >>> indicator(f), indicator(Finding(Code("1", "SCT", "x"), "m", "1"))
    ('warning', 'info')
    """
    urgency = triage_urgency(finding.significance, finding.urgency)
    if urgency is Urgency.STAT:
        return "critical"
    return "warning" if urgency is not None else "info"


#: Guideline categories whose card is a ``warning`` (work-up or a short-interval decision is
#: suggested); every other category is ``info``.  ``critical`` is never used for a guideline:
#: the categories say what to do next, not that a reader is needed now.
WARNING_CATEGORIES: dict[str, frozenset[str]] = {
    "lung-rads": frozenset({"4A", "4B", "4X"}),  # suspicious / very suspicious
    "fleischner": frozenset({"ct-3m-pet-or-biopsy"}),  # consider PET/CT or tissue sampling
    "birads-us": frozenset({"0", "4", "5"}),  # needs evaluation, suspicious, highly suggestive
}


def guideline_indicator(suggestion: GuidelineSuggestion) -> Indicator:
    """The card indicator of an applied guideline suggestion (:data:`WARNING_CATEGORIES`).

    Examples
    --------
    >>> from medsight.clinical.guidelines import evaluate, load_ruleset
    >>> rs = load_ruleset("lung-rads")
    >>> r = evaluate(rs, {"exam": "baseline", "nodules": [{"type": "solid",
    ...                                                     "mean_diameter_mm": 9}]})
    >>> s = GuidelineSuggestion(ruleset=rs.name, version=rs.version, title=rs.title,
    ...                         citation={}, applied=True, result=r)
    >>> guideline_indicator(s)
    'warning'
    """
    result = suggestion.result
    if result is not None and result.category in WARNING_CATEGORIES.get(suggestion.ruleset, ()):
        return "warning"
    return "info"


def _guideline_detail(g: GuidelineSuggestion, study: StudyRow, job: JobRow) -> str:
    r = g.result
    assert r is not None
    cite = g.citation
    lines = [
        f"**{SUGGESTION_HEADING}: computed by rules from AI findings; it requires review "
        "by a qualified clinician.**",
        "",
        f"- Guideline: {_md(g.title)} (rule set {_md(g.name)})",
        f"- Category: **{_md(r.display)}** ({_md(r.label)})",
        f"- Recommendation: {_md(r.recommendation)}",
        *(f"- Note: {_md(n)}" for n in r.notes),
        "- Rules fired:",
        *(f"    - {_md(rule)}" for rule in r.rules),
        "- Facts used:",
        *(f"    - {_md(u.fact)} = {_md(u.value)} ({_md(u.source)})" for u in g.sources),
    ]
    if g.assumptions:
        lines.append(f"- Not assessed: {_md('; '.join(g.assumptions))}")
    when = (job.finished or job.created).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"- Study: {_md(study.description or 'study')}, analysed {when}")
    lines.append(f"- Source: {_md(g.citation_text())}")
    if cite.get("verified"):
        lines.append(f"- What medsight verified of it: {_md(cite['verified'])}")
    lines += ["", f"_{_md(DISCLAIMER)}_"]
    return "\n".join(lines)


def guideline_cards(
    suggestions: Sequence[GuidelineSuggestion], study: StudyRow, job: JobRow, base_url: str
) -> list[dict[str, Any]]:
    """One card per *applied* guideline suggestion of a stored analysis.

    The summary names the rule set and category; the indicator is
    :func:`guideline_indicator`'s; the source label is the rule set's title and citation (its
    URL the citation's); ``detail`` (markdown) lists the recommendation, the rules that fired
    and the facts with their sources.  A guideline that was not applied (an input missing)
    gives no card: nothing is suggested that no rule concluded.
    """
    cards = []
    for g in suggestions:
        r = g.result
        if not g.applied or r is None:
            continue
        summary = f"Guideline suggestion (not a diagnosis): {g.ruleset} {r.display}, {r.label}"
        cite = g.citation
        label = f"{g.title} ({cite.get('publisher', '')} {cite.get('year', '')}), via medsight"
        source: dict[str, Any] = {
            "label": label if len(label) <= 200 else label[:199] + "…",
            "topic": {
                "system": "urn:medsight:guideline",
                "code": f"{g.ruleset}@{g.version}",
                "display": g.title,
            },
        }
        if str(cite.get("url", "")).startswith(("http://", "https://")):
            source["url"] = cite["url"]
        cards.append(
            {
                "uuid": str(
                    uuid.uuid5(uuid.NAMESPACE_URL, f"medsight:{job.id}:guideline:{g.ruleset}")
                ),
                "summary": summary if len(summary) < 140 else summary[:138] + "…",
                "indicator": guideline_indicator(g),
                "detail": _guideline_detail(g, study, job),
                "source": source,
                "links": [
                    {
                        "label": "Open the study in the medsight viewer",
                        "url": f"{base_url.rstrip('/')}/ui/studies/{study.uid}",
                        "type": "absolute",
                    }
                ],
            }
        )
    return cards


def _md(text: object) -> str:
    """``text`` with markdown and HTML punctuation escaped (study descriptions come from DICOM)."""
    out = str(text)
    for ch in "\\`*_{}[]()<>#+!|":
        out = out.replace(ch, "\\" + ch)
    return out


def _summary(finding: Finding) -> str:
    # the decision beside its operating point (medsight.core.operating)
    parts = [operating_text(finding.probability, finding.threshold, finding.positive)]
    urgency = triage_urgency(finding.significance, finding.urgency)
    if urgency is not None:
        parts.append(urgency.value)
    extra = ", ".join(p for p in parts if p)
    text = f"AI (preliminary): {finding.finding.meaning or finding.note}"
    text += f" ({extra})" if extra else ""
    return text if len(text) < 140 else text[:138] + "…"


def _detail(finding: Finding, study: StudyRow, job: JobRow) -> str:
    code = finding.finding
    lines = [
        "**Preliminary AI suggestion: not a diagnosis; it requires review by a qualified "
        "clinician.**",
        "",
        f"- Finding: {_md(code.meaning)} ({_md(code.scheme)} {_md(code.value)})",
    ]
    if finding.note and finding.note.casefold() not in code.meaning.casefold():
        lines.append(f"- Note: {_md(finding.note)}")
    if finding.probability is not None:
        reliability = f" ({_md(finding.reliability)})" if finding.reliability else ""
        decision = operating_text(finding.probability, finding.threshold, finding.positive)
        lines.append(f"- {decision[0].upper()}{decision[1:]}{reliability}")
    for m in finding.measurements:
        lines.append(f"- {_md(m)}")
    meaning = finding.significance.value if finding.significance else "not stated"
    if finding.significance is Significance.ACTIONABLE:
        meaning += f", {triage_urgency(finding.significance, finding.urgency)}"
    lines.append(f"- Clinical meaning of the label: {meaning}")
    when = (job.finished or job.created).strftime("%Y-%m-%d %H:%M UTC")
    described = _md(study.description or "study")
    lines.append(f"- Study: {described} ({_md(study.modalities or '?')}), analysed {when}")
    lines.append(f"- Model: {_md(finding.model_id)} {_md(finding.model_version)}")
    if finding.weak_model:
        lines.append("- The model's validated performance is below what a reader can rely on.")
    lines += ["", f"_{_md(DISCLAIMER)}_"]
    return "\n".join(lines)


def _card(
    finding: Finding, index: int, study: StudyRow, job: JobRow, base_url: str
) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"medsight:{job.id}:{index}")),
        "summary": _summary(finding),
        "indicator": indicator(finding),
        "detail": _detail(finding, study, job),
        "source": {
            "label": "medsight",
            "topic": {
                "system": "urn:medsight:model",
                "code": f"{finding.model_id}@{finding.model_version}",
                "display": f"{finding.model_id} {finding.model_version}",
            },
        },
        "links": [
            {
                "label": "Open the study in the medsight viewer",
                "url": f"{base_url.rstrip('/')}/ui/studies/{study.uid}",
                "type": "absolute",
            }
        ],
    }


def _latest_jobs(services: Services, patient_id: str) -> list[tuple[StudyRow, JobRow]]:
    """The patient's newest studies (at most :data:`MAX_STUDIES`) whose latest job is done."""
    with services.store.session() as ses:
        q = select(StudyRow).where(StudyRow.patient_id == patient_id)
        studies = list(ses.scalars(q.order_by(StudyRow.received.desc())))
        found = []
        for study in studies:
            q2 = select(JobRow).where(JobRow.study_uid == study.uid)
            job = ses.scalars(q2.order_by(JobRow.created.desc()).limit(1)).first()
            if job is not None and job.state == JobState.DONE:
                found.append((study, job))
            if len(found) == MAX_STUDIES:
                break
    return found


def cards_for_patient(
    services: Services, patient_id: str, base_url: str, prefetch: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The cards of the patient's latest AI findings, then their guideline suggestions' cards
    (newest study first in each part)."""
    cards: list[dict[str, Any]] = []
    suggested: list[dict[str, Any]] = []
    for study, job in _latest_jobs(services, patient_id):
        path = result_dir(services.settings, job.id) / "report.json"
        try:
            report = Report.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:  # a result folder removed or damaged by hand
            log.warning("job %s: report.json unreadable (%s); no cards from it", job.id, exc)
            continue
        ran = {r.model_id for r in report.models if r.status == "ran"}
        for index, finding in enumerate(report.findings):
            if not finding.present or (report.models and finding.model_id not in ran):
                continue
            cards.append(_card(finding, index, study, job, base_url))
        suggested += guideline_cards(report.guidelines, study, job, base_url)
    return cards + suggested


def _parse(body: bytes, service_id: str) -> CdsRequest:
    where = f"CDS Hooks request to {service_id}"
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(where, f"body is not JSON ({exc.__class__.__name__})") from None
    try:
        req = CdsRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        raise InvalidInputError(where, f"{field}: {err['msg']}") from None
    hook = SERVICES[service_id]["hook"]
    if req.hook != hook:
        raise InvalidInputError(where, f"hook is {req.hook!r}; this service answers {hook!r}")
    if hook == "order-select":
        if req.context.selections is None or req.context.draftOrders is None:
            raise InvalidInputError(
                where, "order-select needs context.selections and context.draftOrders"
            )
        if req.context.draftOrders.get("resourceType") != "Bundle":
            raise InvalidInputError(where, "context.draftOrders must be a FHIR Bundle")
    return req


_bearer = HTTPBearer(auto_error=False)


@dataclasses.dataclass(frozen=True)
class CdsCaller:
    """Who calls a CDS Hooks endpoint: a medsight user, or an EHR by its verified JWT."""

    name: str  # the username, or "ehr:<iss>"
    role: str  # the user's role, or "ehr"
    subject: str = ""  # the EHR JWT's sub (its client id)


def get_cds_caller(
    request: Request,
    services: ServicesDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> CdsCaller:
    """The caller: an EHR JWT (:mod:`medsight.service.cds_auth`) when EHR issuers are
    configured (``cds_jwks``) and the bearer token is a JWT, else a medsight bearer token or
    session as on every other route.  A rejected JWT is audited with its reason."""
    token = creds.credentials if creds else None
    issuers = services.settings.cds_jwks
    if token and issuers and token.count(".") == 2:  # medsight's own tokens have no dots
        state = request.app.state
        if getattr(state, "cds_replay", None) is None:
            state.cds_replay = ReplayGuard()
        audience = str(request.url.replace(query="", fragment=""))
        try:
            client = verify_ehr_jwt(
                token, audience=audience, issuers=issuers, replay=state.cds_replay
            )
        except AuthError as err:
            services.audit.record(
                "ehr", "ehr", "cds_jwt_rejected", reason=str(err), path=request.url.path
            )
            raise
        return CdsCaller(f"ehr:{client.issuer}", "ehr", client.subject)
    user = get_current_user(request, services, creds)
    return CdsCaller(user.username, user.role.value)


Caller = Annotated[CdsCaller, Depends(get_cds_caller)]


@router.get("")
def discovery(caller: Caller) -> dict[str, list[dict[str, Any]]]:
    """The CDS Hooks discovery document."""
    return {"services": list(SERVICES.values())}


@router.post("/{service_id}")
async def call_service(
    service_id: str,
    request: Request,
    services: ServicesDep,
    caller: Caller,
) -> dict[str, list[dict[str, Any]]]:
    """Answer a CDS Hooks request with cards of the patient's latest AI findings."""
    if service_id not in SERVICES:
        raise NotFoundError(
            f"CDS service {service_id!r}", f"does not exist ({', '.join(SERVICES)})"
        )
    req = _parse(await request.body(), service_id)
    patient = req.context.patientId
    cards = await run_in_threadpool(
        cards_for_patient, services, patient, str(request.base_url), req.prefetch or {}
    )
    await run_in_threadpool(
        services.audit.record,
        caller.name,
        caller.role,
        "cds_hook",
        client=caller.subject or None,
        service=service_id,
        hook_instance=req.hookInstance,
        patient=patient,
        cards=len(cards),
    )
    return {"cards": cards}
