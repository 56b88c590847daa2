"""PACS: search it, pull a study and queue it (DICOMweb or DIMSE); C-ECHO; deliver again.

Search and pull go to the configured PACS: DICOMweb (QIDO-RS / WADO-RS, ``dicomweb_url``) or
DIMSE (C-FIND / C-MOVE, ``dimse_qr_peer``); with both configured, ``?source=dimse`` picks DIMSE
(DICOMweb is the default).  A DICOMweb pull answers with the analysis job it queued; a DIMSE
pull answers at once with a pull job (``kind: "pull"``, :mod:`medsight.service.pacs.pulls`)
that ``GET /api/pacs/pulls/{id}`` follows until the C-STORE SCP has received and queued it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from medsight.core.errors import InvalidInputError
from medsight.service.deps import AdminUser, Auditor, RadiologistUser, ServicesDep
from medsight.service.errors import NotFoundError
from medsight.service.jobs import record_studies, submit
from medsight.service.models import JobState
from medsight.service.pacs.pulls import PullOut, Pulls
from medsight.service.pacs.query import PacsSource, StudyQuery, choose_source
from medsight.service.schemas import JobOut, SubmitIn
from medsight.service.worker import result_dir

router = APIRouter(prefix="/api/pacs", tags=["pacs"])


def get_pulls(request: Request) -> Pulls:
    """The app's DIMSE pull jobs (made on first use, kept on ``app.state``)."""
    pulls = getattr(request.app.state, "pacs_pulls", None)
    if pulls is None:
        pulls = request.app.state.pacs_pulls = Pulls()
    return pulls  # type: ignore[no-any-return]


PullsDep = Annotated[Pulls, Depends(get_pulls)]
SourceParam = Annotated[
    PacsSource | None, Query(description="dicomweb or dimse; default: the one configured")
]


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
    source: SourceParam = None,
) -> list[dict]:
    """Search the PACS (QIDO-RS or C-FIND) by patient ID / name, accession, date, modality.

    Each study says whether it is already here (``local``) and its latest job's state.
    """
    from medsight.service.pacs.query import find_studies

    chosen = choose_source(services.settings, source)
    rows = await run_in_threadpool(find_studies, services.settings, query, chosen)
    audit("query_pacs", source=chosen.value, studies=len(rows), **query.filters())
    for row in rows:
        jobs = services.store.jobs_for(row["study_uid"])
        row["local"] = _stored(services, row["study_uid"])
        row["job"] = JobOut.of(jobs[0]).model_dump(mode="json") if jobs else None
    return rows


@router.post("/pull", response_model=JobOut | PullOut, status_code=202)
async def pull(
    body: SubmitIn,
    services: ServicesDep,
    user: RadiologistUser,
    audit: Auditor,
    pulls: PullsDep,
    source: SourceParam = None,
) -> JobOut | PullOut:
    """Retrieve a study from the PACS and queue it.

    DICOMweb: WADO-RS, then the analysis job.  DIMSE: a pull job (C-MOVE to medsight's C-STORE
    SCP, which queues the study by the routing rules); follow it at ``/api/pacs/pulls/{id}``.
    """
    if choose_source(services.settings, source) == PacsSource.DIMSE:
        from medsight.service.pacs.pulls import start_pull

        def audited(out: PullOut) -> None:
            audit(
                "pull_study",
                source=PacsSource.DIMSE.value,
                study=out.study_uid,
                pull=out.id,
                state=out.state.value,
                completed=out.completed,
                failed=out.failed,
                warning=out.warning,
                job=out.job.id if out.job is not None else None,
                error=out.error or None,
            )

        return await run_in_threadpool(
            start_pull,
            services,
            pulls,
            body.study_uid,
            packages=body.packages,
            urgency=body.urgency,
            on_end=audited,
        )
    from medsight.service.pacs.dicomweb import pull_study

    url = str(services.settings.dicomweb_url)
    ingested = await run_in_threadpool(
        pull_study, url, body.study_uid, services.settings.home / "studies"
    )
    record_studies(services, ingested, source="dicomweb", urgency=body.urgency)
    job, new = submit(services, body.study_uid, body.packages)
    audit(
        "pull_study",
        source=PacsSource.DICOMWEB.value,
        study=body.study_uid,
        job=job.id,
        files=ingested.stored,
    )
    return JobOut.of(job, existing=not new)


@router.get("/pulls/{pull_id}", response_model=PullOut)
def pull_state(
    pull_id: str, services: ServicesDep, user: RadiologistUser, pulls: PullsDep
) -> PullOut:
    """A DIMSE pull job: its state, the C-MOVE sub-operation counts and the queued job."""
    return pulls.out(services, pull_id)


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
