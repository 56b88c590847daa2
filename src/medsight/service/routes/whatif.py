"""What-if endpoints (issue 22): occlusion, risk inputs and segmentation edits, all audited.

Any logged-in user (viewer and up) may ask a what-if: it changes nothing stored.  Storing an
edited segmentation (a new SEG version) needs a reviewer (radiologist or admin).  Each request
is written to the audit trail with what was asked (the region, mode and fill; the risk fields
changed, not their values; the edit operations), never pixels.  The work is in
:mod:`medsight.service.whatif`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from medsight.core.errors import InvalidInputError
from medsight.service.deps import Auditor, CurrentUser, RadiologistUser, ServicesDep
from medsight.service.errors import NotFoundError
from medsight.service.whatif.occlusion import OcclusionQuery, run_occlusion
from medsight.service.whatif.risk import RiskInputError, RiskQuery, input_spec, run_risk
from medsight.service.whatif.segedit import (
    EditQuery,
    edit_segmentation,
    list_versions,
    seg_package,
    version_mask,
)
from medsight.service.whatif.source import done_job, job_package, package_image, report_of

router = APIRouter(prefix="/api", tags=["what-if"])


def _risk_predictor(services: ServicesDep, package_id: str) -> Any:
    from medsight.inference.cache import cached_model
    from medsight.inference.risk import RiskPredictor
    from medsight.models.spec import Task

    package = services.catalog.resolve([package_id])[0]
    if package.spec.task is not Task.RISK:
        raise InvalidInputError("package", f"{package_id} is not a risk model")
    return cached_model(RiskPredictor, package)


@router.get("/jobs/{job_id}/whatif")
def whatif_tools(job_id: str, services: ServicesDep, user: CurrentUser, audit: Auditor) -> dict:
    """What the job offers: classifier findings to occlude, risk models, segmentations."""
    from medsight.models.spec import Task

    job = done_job(services, job_id)
    report = report_of(services, job_id)
    ran = set(job.packages_key.split(","))
    findings = [
        {
            "index": n,
            "package": f"{f['model_id']}@{f['model_version']}",
            "label": f["finding"].get("meaning", ""),
            "probability": f.get("probability"),
        }
        for n, f in enumerate(report.get("findings", []))
        if f.get("kind") == "classification"
    ]
    risk = []
    for pid, pkg in services.catalog.packages().items():
        if pkg.spec.task is Task.RISK:
            predictor = _risk_predictor(services, pid)
            risk.append(
                {"package": pid, "ran": pid in ran, "uses_images": predictor.uses_images}
                | {"inputs": input_spec(predictor)}
            )
    segs = [k.removeprefix("mask ") for k in report.get("outputs", {}) if k.startswith("mask ")]
    audit("view_whatif_tools", study=job.study_uid, job=job_id)
    return {
        "job": job_id,
        "findings": findings,
        "risk_models": risk,
        "segmentations": segs,
        "can_edit": user.role.value != "viewer",
    }


@router.post("/jobs/{job_id}/whatif/occlusion")
def whatif_occlusion(
    job_id: str, body: OcclusionQuery, services: ServicesDep, user: CurrentUser, audit: Auditor
) -> dict:
    """Re-run a classifier with the drawn region occluded (or kept alone) and compare."""
    job = done_job(services, job_id)
    package_id = body.package
    if body.finding is not None:
        findings = report_of(services, job_id).get("findings", [])
        if body.finding >= len(findings):
            raise NotFoundError(f"finding {body.finding}", f"does not exist ({len(findings)})")
        f = findings[body.finding]
        package_id = f"{f['model_id']}@{f['model_version']}"
    if package_id is None:
        raise InvalidInputError("package", "name the package or the finding to ask about")
    package = job_package(services, job, package_id)
    result = run_occlusion(package, package_image(services, job, package), body)
    audit(
        "whatif_occlusion",
        study=job.study_uid,
        job=job_id,
        package=package.id,
        region=body.region.model_dump(exclude_none=True),
        mode=body.mode.value,
        fill=body.fill.value,
        sensitivity_map=body.sensitivity_map,
        abstained=result["abstained"],
    )
    return result


def _risk(services: ServicesDep, body: RiskQuery, job_id: str | None) -> dict:
    predictor = _risk_predictor(services, body.package)
    source = None
    if job_id is not None:
        job = done_job(services, job_id)
        if predictor.uses_images:
            source = package_image(services, job, predictor.package)
    try:
        return run_risk(predictor, body, source)
    except RiskInputError as err:
        raise HTTPException(status_code=422, detail=str(err)) from err


@router.get("/risk/{package_id}/inputs")
def risk_inputs(
    package_id: str, services: ServicesDep, user: CurrentUser, audit: Auditor
) -> list[dict]:
    """The risk model's declared inputs (kinds, categories, ranges) for a what-if form."""
    predictor = _risk_predictor(services, package_id)
    audit("view_risk_inputs", package=package_id)
    return input_spec(predictor)


@router.post("/risk/whatif")
def risk_whatif(body: RiskQuery, services: ServicesDep, user: CurrentUser, audit: Auditor) -> dict:
    """A clinical-only risk model's output for the changed inputs next to the baseline."""
    result = _risk(services, body, None)
    audit("whatif_risk", package=body.package, fields=sorted(body.inputs))
    return result


@router.post("/jobs/{job_id}/risk/whatif")
def job_risk_whatif(
    job_id: str, body: RiskQuery, services: ServicesDep, user: CurrentUser, audit: Auditor
) -> dict:
    """As ``/api/risk/whatif``, with the job's image for a risk model that reads images."""
    result = _risk(services, body, job_id)
    study = services.store.get_job(job_id).study_uid
    audit("whatif_risk", study=study, job=job_id, package=body.package, fields=sorted(body.inputs))
    return result


@router.get("/jobs/{job_id}/segmentation/versions")
def segmentation_versions(
    job_id: str,
    services: ServicesDep,
    user: CurrentUser,
    audit: Auditor,
    package: str | None = None,
) -> list[dict]:
    """Every version of the job's segmentation: the model's (1), then each edit."""
    job = done_job(services, job_id)
    pkg = seg_package(services, job, package)
    audit("view_segmentation_versions", study=job.study_uid, job=job_id, package=pkg.id)
    return list_versions(services, job, pkg)


@router.get("/jobs/{job_id}/segmentation/versions/{version}/masks/{k}.png")
def version_mask_png(
    job_id: str,
    version: int,
    k: int,
    services: ServicesDep,
    user: CurrentUser,
    audit: Auditor,
    package: Annotated[str | None, Query()] = None,
) -> Response:
    """Slice ``k`` of one version's mask as a transparent overlay PNG, each label in its
    colour as on the model's own mask (so the page's legend holds for every version)."""
    import io

    import numpy as np
    from PIL import Image as PILImage

    from medsight.reporting.overlay import label_colour
    from medsight.service.whatif.source import check_index

    job = done_job(services, job_id)
    pkg = seg_package(services, job, package)
    arr = np.asarray(version_mask(services, job, pkg, version).array)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    plane = np.rint(arr[:, :, check_index("slice", k, arr.shape[2])].T).astype(np.int64)
    colours = {lab.index: lab.color for lab in pkg.spec.labels if lab.color}
    rgba = np.zeros((*plane.shape, 4), dtype=np.uint8)
    for value in np.unique(plane):
        if value > 0:
            rgba[plane == value] = (*label_colour(int(value), colours), 150)
    buf = io.BytesIO()
    PILImage.fromarray(rgba).save(buf, format="PNG")
    png = buf.getvalue()
    audit("view_result", study=job.study_uid, job=job_id, mask=k, version=version)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private"})


@router.post("/jobs/{job_id}/segmentation/edit", status_code=201)
def segmentation_edit(
    job_id: str, body: EditQuery, services: ServicesDep, user: RadiologistUser, audit: Auditor
) -> dict:
    """Apply brush / erase / threshold operations and store them as a new SEG version."""
    job = done_job(services, job_id)
    result = edit_segmentation(services, job, body, user.username)
    audit(
        "edit_segmentation",
        study=job.study_uid,
        job=job_id,
        package=result["package"],
        version=result["version"],
        from_version=result["parent_version"],
        label=result["label"],
        operations=[{"op": op.op, "slice": op.slice} for op in body.operations],
        changed_voxels=result["changed_voxels"],
    )
    return result
