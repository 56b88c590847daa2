"""Studies: upload (multipart DICOM files or zips), details, submit for analysis, slices."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from medsight.core.errors import InvalidInputError
from medsight.service.deps import Auditor, CurrentUser, RadiologistUser, ServicesDep
from medsight.service.errors import UploadTooLargeError
from medsight.service.ingest import discard_ingested, ingest_streams, valid_uid
from medsight.service.jobs import record_studies, submit
from medsight.service.schemas import JobOut, SubmitIn, UploadOut
from medsight.service.settings import Urgency
from medsight.service.upload_body import (
    UploadCancelled,
    discard_incoming,
    new_incoming,
    receive_files,
    sweep_incoming,
)

router = APIRouter(prefix="/api/studies", tags=["studies"])
log = logging.getLogger(__name__)


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise UploadTooLargeError("upload", f"is larger than the limit of {limit} bytes")
        yield chunk


async def _client_gone(request: Request, wait_s: float = 0.02) -> bool:
    """Whether the client has disconnected, once its body is read (waits ``wait_s`` at most).

    Not ``Request.is_disconnected()``: behind the app's HTTP middleware its zero-time poll
    is always cancelled before a queued disconnect arrives, so it never says yes.
    """
    with anyio.move_on_after(wait_s):
        return (await request.receive())["type"] == "http.disconnect"
    return False


def _cancelled(audit: Auditor, received: int, removed: int) -> Response:
    """Log and audit an upload the client gave up on; the answer goes nowhere (499)."""
    log.info("upload cancelled by the client: %d bytes received, %d files taken back",
             received, removed)  # fmt: skip
    audit("upload_cancelled", bytes=received, removed=removed)
    return Response(status_code=499)


def _check_uid(uid: str) -> str:
    if not valid_uid(uid):
        raise InvalidInputError("study uid", f"{uid[:80]!r} is not a DICOM UID")
    return uid


@router.post("", response_model=UploadOut, status_code=201)
async def upload(
    request: Request,
    services: ServicesDep,
    user: RadiologistUser,
    audit: Auditor,
    packages: Annotated[list[str] | None, Query()] = None,
    urgency: Urgency = Urgency.ROUTINE,
    analyse: bool = True,
) -> UploadOut:
    """Store DICOM files (multipart field ``files``; each a DICOM file or a zip of them).

    The body streams into the store's incoming area (``<home>/incoming``), which is emptied
    when the request ends.  Size limits apply while the body streams in (413);
    path-traversing zip members, damaged zips and uploads without any DICOM instance get a
    400.  A client that disconnects (a cancelled upload) before the answer leaves nothing:
    a partial body is dropped, and instances this request already stored are taken back
    before any study row or job is made (audited as ``upload_cancelled``).  With
    ``analyse`` each study is queued for the chosen ``packages`` (default: all); a study
    already analysed with the same packages and the same instances is not queued again.
    """
    settings = services.settings
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload_bytes:
        raise UploadTooLargeError("upload", f"is larger than {settings.max_upload_bytes} bytes")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInputError("upload", "send multipart/form-data with one or more 'files'")
    sweep_incoming(settings.home)  # what a killed server left mid-upload, a day ago or more
    folder = new_incoming(settings.home)
    try:
        received = await receive_files(
            request.headers,
            _limited(request, settings.max_upload_bytes),
            folder,
            max_files=settings.max_upload_files,
        )
        if not received:
            raise InvalidInputError("upload", "no 'files' field with a file in it")
        with contextlib.ExitStack() as stack:
            streams = [(f.filename, stack.enter_context(f.path.open("rb"))) for f in received]
            ingested = await run_in_threadpool(
                ingest_streams,
                streams,
                settings.home / "studies",
                max_unzipped_bytes=settings.max_unzipped_bytes,
                max_files=settings.max_upload_files,
            )
    except UploadCancelled as gone:
        return _cancelled(audit, gone.received, 0)
    finally:
        discard_incoming(folder)
    if await _client_gone(request):  # cancelled while the server unpacked and stored
        removed = await run_in_threadpool(discard_ingested, ingested, settings.home / "studies")
        return _cancelled(audit, int(length) if length and length.isdigit() else 0, removed)
    studies = record_studies(services, ingested, source="upload", urgency=urgency)
    jobs = []
    for facts in studies:
        audit("upload_study", study=facts.uid, files=ingested.stored)
        if analyse:
            job, new = submit(services, facts.uid, packages)
            jobs.append(JobOut.of(job, existing=not new))
    return UploadOut(
        studies=[s.uid for s in studies],
        stored=ingested.stored,
        skipped=ingested.skipped,
        jobs=jobs,
    )


@router.get("/{uid}")
def get_study(uid: str, services: ServicesDep, user: CurrentUser, audit: Auditor) -> dict:
    """The study's header facts and its jobs (newest first)."""
    row = services.store.get_study(_check_uid(uid))
    audit("view_study", study=uid)
    return {
        "uid": row.uid,
        "patient_id": row.patient_id,
        "modalities": row.modalities,
        "description": row.description,
        "body_part": row.body_part,
        "urgency": row.urgency,
        "source": row.source,
        "n_files": row.n_files,
        "received": row.received,
        "jobs": [JobOut.of(j) for j in services.store.jobs_for(uid)],
    }


@router.post("/{uid}/jobs", response_model=JobOut, status_code=202)
def submit_job(
    uid: str, body: SubmitIn, services: ServicesDep, user: RadiologistUser, audit: Auditor
) -> JobOut:
    """Queue the study for analysis (an identical queued or finished job is returned instead)."""
    if body.study_uid != _check_uid(uid):
        raise InvalidInputError("study_uid", "does not match the URL")
    if body.urgency is not None:
        services.store.upsert_study(uid, urgency=body.urgency.value)
    job, new = submit(services, uid, body.packages)
    audit("submit_job", study=uid, job=job.id)
    return JobOut.of(job, existing=not new)


@router.get("/{uid}/series")
def list_series(uid: str, services: ServicesDep, user: CurrentUser, audit: Auditor) -> list:
    """The study's image series with their slice counts (for the viewer)."""
    from medsight.service.viewer.slices import series_info

    services.store.get_study(_check_uid(uid))
    audit("view_study", study=uid)
    return series_info(services.settings, uid)


@router.get("/{uid}/series/{index}/slices/{k}.png")
def slice_png(
    uid: str,
    index: int,
    k: int,
    services: ServicesDep,
    user: CurrentUser,
    audit: Auditor,
    center: float | None = None,
    width: Annotated[float | None, Query(gt=0)] = None,
) -> Response:
    """Slice ``k`` of series ``index`` as a PNG with window ``center`` / ``width``."""
    from medsight.service.viewer.slices import render_slice

    services.store.get_study(_check_uid(uid))
    audit("view_images", study=uid, series=index, slice=k)
    png = render_slice(services.settings, uid, index, k, center=center, width=width)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private"})
