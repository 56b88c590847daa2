"""Viewer pages: login, worklist, study view (slices, window/level, AI overlay, findings).

Pages use the same token as the API, kept in an HttpOnly, SameSite=Strict cookie; a page
without a valid cookie redirects to the login page.  Every page view is audited.  Pages are
rendered by :mod:`medsight.io.html` (autoescaped, strict about undefined names) from this
package's ``templates/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from medsight.core.errors import MedsightError
from medsight.core.operating import probability_pair, threshold_phrase
from medsight.io.html import render
from medsight.service.auth import User, authenticate, revoke
from medsight.service.deps import COOKIE, ServicesDep
from medsight.service.models import JobState
from medsight.service.settings import Role
from medsight.service.worklist import worklist

__all__ = ["mount_static", "router"]

router = APIRouter(prefix="/ui", include_in_schema=False)
_HERE = Path(__file__).parent
_TEMPLATES = "medsight.service.viewer:"  # templates/ of this package, for medsight.io.html


def _page(name: str, **context: Any) -> HTMLResponse:
    """Render ``templates/<name>`` of this package through :mod:`medsight.io.html`."""
    return HTMLResponse(render(_TEMPLATES + name, **context))


def _user(request: Request, services: ServicesDep) -> User | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return authenticate(services.store, token)
    except MedsightError:
        return None


def _to_login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303)


def mount_static(app: FastAPI) -> None:
    """Serve the viewer's CSS and JavaScript under ``/ui/static`` and ``/`` -> worklist."""
    app.mount("/ui/static", StaticFiles(directory=_HERE / "static"), name="viewer-static")

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/ui/worklist", status_code=303)


@router.get("")
@router.get("/")
def ui_root() -> RedirectResponse:
    """``/ui`` (the address ``medsight serve`` prints) -> the worklist (or the login page)."""
    return RedirectResponse("/ui/worklist", status_code=303)


@router.get("/login")
def login_page(error: str = "") -> HTMLResponse:
    """The login form."""
    return _page("login.html", user=None, error=error)


@router.post("/login")
def login_submit(
    services: ServicesDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
) -> Response:
    """Check the password, set the session cookie, go to the worklist."""
    try:
        token = services.login(username, password)
    except MedsightError as err:
        return _page("login.html", user=None, error=str(err))
    resp = RedirectResponse("/ui/worklist", status_code=303)
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
    return resp


@router.get("/logout")
def logout(request: Request, services: ServicesDep) -> RedirectResponse:
    """Revoke the session token and forget the cookie."""
    token = request.cookies.get(COOKIE)
    if token:
        revoke(services.store, token)
    resp = _to_login()
    resp.delete_cookie(COOKIE, path="/")
    return resp


@router.get("/worklist")
def worklist_page(
    request: Request, services: ServicesDep, modality: str = "", status: str = ""
) -> Response:
    """The triage worklist with modality / status filters."""
    user = _user(request, services)
    if user is None:
        return _to_login()
    items = worklist(services.store, modality=modality or None, status=status or None)
    services.audit.record(user.username, user.role.value, "view_worklist", studies=len(items))
    from medsight.service.viewer.ohif import ohif_available

    ohif = ohif_available(services.settings)  # OHIF links only when its build is installed
    return _page(
        "worklist.html", user=user, items=items, modality=modality, status=status, ohif=ohif
    )


@router.get("/upload")
def upload_page(request: Request, services: ServicesDep) -> Response:
    """Drag-and-drop (or pick) DICOM files, folders or zips; per-file and total progress."""
    user = _user(request, services)
    if user is None:
        return _to_login()
    services.audit.record(user.username, user.role.value, "view_upload")
    limit = services.settings.max_upload_bytes
    can_upload = user.role.rank >= Role.RADIOLOGIST.rank  # else the page says why, no drop zone
    return _page(
        "upload.html",
        user=user,
        max_bytes=limit,
        max_mib=limit // 2**20,
        can_upload=can_upload,
    )


@router.get("/pacs")
def pacs_page(request: Request, services: ServicesDep) -> Response:
    """Query/retrieve: search the configured PACS, retrieve a study and follow its job."""
    user = _user(request, services)
    if user is None:
        return _to_login()
    services.audit.record(user.username, user.role.value, "view_pacs")
    from medsight.service.pacs.query import configured_sources

    sources = [s.value for s in configured_sources(services.settings)]
    return _page("pacs.html", user=user, configured=bool(sources), sources=sources)


@router.get("/studies/{uid}")
def study_page(uid: str, request: Request, services: ServicesDep) -> Response:
    """One study: slices, window/level, AI overlay, findings with accept / reject, report."""
    import json

    from medsight.service.worker import result_dir

    user = _user(request, services)
    if user is None:
        return _to_login()
    study = services.store.get_study(uid)
    jobs = services.store.jobs_for(uid)
    job = next((j for j in jobs if j.state == JobState.DONE), jobs[0] if jobs else None)
    report: dict[str, Any] = {}
    has_mask = False
    verdicts: dict[int, str] = {}
    if job is not None and job.state == JobState.DONE:
        folder = result_dir(services.settings, job.id)
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        has_mask = any(folder.glob("mask_*.nii.gz"))
        verdicts = {
            f.finding_index: f.verdict
            for f in services.store.feedback_for(job.id)
            if f.username == user.username
        }
    services.audit.record(
        user.username, user.role.value, "view_study", study=uid, job=job.id if job else None
    )
    return _page(
        "study.html",
        user=user,
        study=study,
        job=job,
        report=report,
        has_mask=has_mask,
        verdicts=verdicts,
        probability_pair=probability_pair,
        threshold_phrase=threshold_phrase,
    )
