"""Jobs: state, the report and result files, reviewer feedback per finding."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from medsight.core.errors import InvalidInputError
from medsight.service.deps import Auditor, CurrentUser, RadiologistUser, ServicesDep
from medsight.service.errors import ConflictError, NotFoundError
from medsight.service.models import JobState
from medsight.service.schemas import FeedbackIn, JobOut
from medsight.service.worker import result_dir

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


def _result(services: ServicesDep, job_id: str) -> Path:
    job = services.store.get_job(job_id)
    if job.state != JobState.DONE:
        raise ConflictError(f"job {job_id}", f"has no result yet (state {job.state})")
    return result_dir(services.settings, job_id)


def load_report(services: ServicesDep, job_id: str) -> dict[str, Any]:
    """The job's ``report.json`` as a dict."""
    return json.loads((_result(services, job_id) / "report.json").read_text(encoding="utf-8"))


@router.get("", response_model=list[JobOut])
def list_jobs(
    services: ServicesDep,
    user: CurrentUser,
    audit: Auditor,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[JobOut]:
    """Jobs, newest first; ``state=failed`` lists what needs attention."""
    rows = services.store.list_jobs(state.value if state else None, limit)
    audit("list_jobs", state=state.value if state else None, jobs=len(rows))
    return [JobOut.of(r) for r in rows]


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, services: ServicesDep, user: CurrentUser, audit: Auditor) -> JobOut:
    """The job's state (``queued``, ``running``, ``done``, ``failed`` with ``error``)."""
    job = services.store.get_job(job_id)
    audit("view_job", study=job.study_uid, job=job_id)
    return JobOut.of(job)


@router.get("/{job_id}/report")
def get_report(job_id: str, services: ServicesDep, user: CurrentUser, audit: Auditor) -> dict:
    """The report (findings, impression, models, warnings) as JSON."""
    report = load_report(services, job_id)
    audit("view_result", study=services.store.get_job(job_id).study_uid, job=job_id)
    return report


@router.get("/{job_id}/files/{name:path}")
def get_file(
    job_id: str, name: str, services: ServicesDep, user: CurrentUser, audit: Auditor
) -> Response:
    """One result file (``report.html``, ``overlay_*.png``, ``dicom/sr_*.dcm`` ...)."""
    root = _result(services, job_id).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or path.name.startswith("."):
        raise InvalidInputError("file", f"{name!r} is outside the job's results")
    if not path.is_file():
        raise NotFoundError(f"file {name}", "is not among the job's results")
    audit("view_result", study=services.store.get_job(job_id).study_uid, job=job_id, file=name)
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".dcm":
        media = "application/dicom"
    # result pages are documents, never programs: no script runs from them
    csp = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
    return FileResponse(path, media_type=media, headers={"Content-Security-Policy": csp})


@router.get("/{job_id}/masks/{k}.png")
def mask_slice(
    job_id: str,
    k: int,
    services: ServicesDep,
    user: CurrentUser,
    audit: Auditor,
    series: int | None = None,
    model: str | None = None,
) -> Response:
    """Slice ``k`` of the job's segmentation mask as a transparent overlay PNG.

    Each label is drawn in its colour from the package spec (fallback: a colour-blind-safe
    palette); ``model`` picks one model's mask when several models segmented.

    With ``series`` (the viewer's series index), only a mask on that series' grid (same shape
    and affine) is returned; 404 when the models segmented another series.
    """
    from medsight.service.viewer.overlays import label_png, model_volumes
    from medsight.service.viewer.slices import matching_mask

    folder = _result(services, job_id)
    vols = [v for v in model_volumes(folder, services.catalog) if v.mask is not None]
    vols = [v for v in vols if model is None or v.slug == model]
    job = services.store.get_job(job_id)
    if vols and series is not None:
        on_grid = [
            v
            for v in vols
            if v.mask is not None
            and matching_mask(services.settings, job.study_uid, series, [v.mask])
        ]
        vols = on_grid
    if not vols or vols[0].mask is None:
        raise NotFoundError(f"job {job_id}", "has no segmentation mask for this series")
    audit("view_result", study=job.study_uid, job=job_id, mask=k)
    png = label_png(vols[0].mask, k, vols[0].colours)
    return Response(png, media_type="image/png")


@router.get("/{job_id}/overlays")
def overlays(
    job_id: str, series: int, services: ServicesDep, user: CurrentUser, audit: Auditor
) -> dict:
    """The models whose mask / heatmap lie on series ``series``, their labels and pictures."""
    from medsight.service.viewer.overlays import overlay_info

    folder = _result(services, job_id)
    job = services.store.get_job(job_id)
    audit("view_result", study=job.study_uid, job=job_id, series=series)
    return overlay_info(services.settings, job.study_uid, series, folder, services.catalog)


@router.get("/{job_id}/heatmaps/{model}/{k}.png")
def heatmap_slice(
    job_id: str, model: str, k: int, services: ServicesDep, user: CurrentUser, audit: Auditor
) -> Response:
    """Slice ``k`` of model ``model``'s heatmap volume as a transparent overlay PNG."""
    from medsight.service.viewer.overlays import find_volume, heatmap_png

    file = find_volume(_result(services, job_id), services.catalog, model, "heatmap")
    job = services.store.get_job(job_id)
    audit("view_result", study=job.study_uid, job=job_id, heatmap=k)
    return Response(heatmap_png(file, k), media_type="image/png")


@router.put("/{job_id}/findings/{index}/feedback")
def put_feedback(
    job_id: str,
    index: int,
    body: FeedbackIn,
    services: ServicesDep,
    user: RadiologistUser,
    audit: Auditor,
) -> dict:
    """Confirm or reject finding ``index`` of the job's report (latest verdict per reviewer)."""
    findings = load_report(services, job_id)["findings"]
    if not 0 <= index < len(findings):
        raise NotFoundError(f"finding {index}", f"does not exist (the report has {len(findings)})")
    finding = findings[index]
    code = finding["finding"]
    code_text = f"{code.get('scheme', '')}:{code.get('value', '')}"
    services.store.set_feedback(
        job_id,
        index,
        code_text,
        body.verdict,
        user.username,
        body.comment,
        model_id=f"{finding.get('model_id', '')}@{finding.get('model_version', '')}",
        ai_positive=finding.get("positive"),
    )
    audit("review_finding", job=job_id, finding=index, verdict=body.verdict)
    return {"job_id": job_id, "finding": index, "verdict": body.verdict, "by": user.username}


@router.get("/{job_id}/feedback")
def get_feedback(job_id: str, services: ServicesDep, user: CurrentUser, audit: Auditor) -> list:
    """Every reviewer verdict on the job's findings."""
    services.store.get_job(job_id)
    audit("view_feedback", job=job_id)
    return [
        {
            "finding": f.finding_index,
            "code": f.finding_code,
            "verdict": f.verdict,
            "comment": f.comment,
            "by": f.username,
            "time": f.time,
        }
        for f in services.store.feedback_for(job_id)
    ]


summary_router = APIRouter(prefix="/api/feedback", tags=["feedback"])


@summary_router.get("/summary")
def feedback_summary(services: ServicesDep, user: CurrentUser, audit: Auditor) -> list[dict]:
    """Real-world accuracy per model and finding from reviewer verdicts (with Wilson CIs)."""
    from medsight.service.feedback import summarise

    audit("view_feedback_summary")
    rows = services.store.all_feedback()
    return summarise((r.model_id, r.finding_code, r.ai_positive, r.verdict) for r in rows)
