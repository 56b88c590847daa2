"""PACS: search (QIDO-RS), pull a study over DICOMweb and queue it; C-ECHO; deliver again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from medsight.core.errors import InvalidInputError
from medsight.service.deps import AdminUser, Auditor, RadiologistUser, ServicesDep
from medsight.service.errors import NotFoundError
from medsight.service.jobs import record_studies, submit
from medsight.service.models import JobState
from medsight.service.pacs.query import StudyQuery
from medsight.service.schemas import JobOut, SubmitIn
from medsight.service.worker import result_dir

router = APIRouter(prefix="/api/pacs", tags=["pacs"])


def _stored(services: ServicesDep, uid: str) -> bool:
    try:
        services.store.get_study(uid)
    except NotFoundError:
        return False
    return True


@router.get("/studies")
async def find(
    query: Annotated[StudyQuery, Query()],
    services: ServicesDep,
    user: RadiologistUser,
    audit: Auditor,
) -> list[dict]:
    """Search the configured DICOMweb PACS (QIDO-RS) by patient ID / name, date, modality.

    Each study says whether it is already here (``local``) and its latest job's state.
    """
    from medsight.service.pacs.query import find_studies

    rows = await run_in_threadpool(find_studies, services.settings.dicomweb_url, query)
    audit("query_pacs", studies=len(rows), **query.filters())
    for row in rows:
        jobs = services.store.jobs_for(row["study_uid"])
        row["local"] = _stored(services, row["study_uid"])
        row["job"] = JobOut.of(jobs[0]).model_dump(mode="json") if jobs else None
    return rows


@router.post("/pull", response_model=JobOut, status_code=202)
async def pull(
    body: SubmitIn, services: ServicesDep, user: RadiologistUser, audit: Auditor
) -> JobOut:
    """Retrieve a study from the configured DICOMweb PACS (WADO-RS) and queue it."""
    from medsight.service.pacs.dicomweb import pull_study

    url = services.settings.dicomweb_url
    if not url:
        raise InvalidInputError("dicomweb_url", "no DICOMweb PACS is configured")
    ingested = await run_in_threadpool(
        pull_study, url, body.study_uid, services.settings.home / "studies"
    )
    record_studies(services, ingested, source="dicomweb", urgency=body.urgency)
    job, new = submit(services, body.study_uid, body.packages)
    audit("pull_study", study=body.study_uid, job=job.id, files=ingested.stored)
    return JobOut.of(job, existing=not new)


@router.post("/echo")
def c_echo(services: ServicesDep, user: AdminUser) -> dict:
    """C-ECHO the configured DIMSE destination."""
    from medsight.service.pacs.dimse import echo

    dest = services.settings.dimse_destination
    if not dest:
        raise InvalidInputError("dimse_destination", "no DIMSE destination is configured")
    return {"destination": dest, "ok": echo(dest, calling_ae=services.settings.ae_title)}


@router.post("/deliver/{job_id}", response_model=JobOut)
def deliver(job_id: str, services: ServicesDep, user: RadiologistUser, audit: Auditor) -> JobOut:
    """Send a finished job's results to the configured PACS / FHIR server again."""
    from medsight.service.pacs.delivery import Delivery

    job = services.store.get_job(job_id)
    if job.state != JobState.DONE:
        raise InvalidInputError(f"job {job_id}", f"is {job.state}, not done")
    summary = Delivery(services.settings)(job, result_dir(services.settings, job_id))
    services.store.set_delivery(job_id, summary)
    audit("deliver_results", study=job.study_uid, job=job_id)
    return JobOut.of(services.store.get_job(job_id))
