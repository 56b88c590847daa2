"""Health, readiness, login, users, API tokens and the package list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from medsight import __version__
from medsight.service.auth import create_token, create_user, revoke
from medsight.service.deps import COOKIE, AdminUser, Auditor, CurrentUser, ServicesDep
from medsight.service.errors import InvalidLoginError, UnsupportedMediaError
from medsight.service.schemas import TokenOut
from medsight.service.settings import Role

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/health")
def health() -> dict:
    """Liveness (no authentication)."""
    return {"status": "ok", "version": __version__}


@router.get("/ready", responses={503: {"description": "the database or every worker is down"}})
def ready(services: ServicesDep) -> JSONResponse:
    """Readiness (no authentication, no patient data): 200 when the database answers and at
    least one worker's heartbeat is younger than ``job_lease_s``, else 503 naming the failed
    check; with the queue depth and the number of live workers."""
    checks: dict[str, str] = {}
    queue: dict[str, int] = {}
    live = 0
    try:
        queue = services.store.queue_depth()
        live = len(services.store.live_workers(services.settings.job_lease_s))
        checks["database"] = "ok"
    except Exception as exc:  # whatever the driver raises: say which check, not the URL
        checks["database"] = f"unreachable ({type(exc).__name__})"
    if checks["database"] != "ok":
        checks["workers"] = "unknown (no database)"
    elif live:
        checks["workers"] = "ok"
    else:
        checks["workers"] = f"no worker heartbeat in the last {services.settings.job_lease_s:g} s"
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ok else "not ready", "checks": checks, "workers": live, **queue}
    return JSONResponse(body, status_code=200 if ok else 503)


class LoginIn(BaseModel):
    """A username and password, as JSON or as (OAuth2 password) form fields."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


_LOGIN_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": LoginIn.model_json_schema()},
        "application/x-www-form-urlencoded": {"schema": LoginIn.model_json_schema()},
    },
}


async def _login_fields(request: Request) -> LoginIn:
    """The login body as JSON or form data; 415 for any other content type, 422 if invalid."""
    from pydantic import ValidationError

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw: object
    if kind == "application/json":
        try:
            raw = await request.json()
        except ValueError as exc:
            raise InvalidLoginError("login body", f"is not valid JSON ({exc})") from exc
    elif kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raw = dict(await request.form())
    else:
        raise UnsupportedMediaError(
            "login body",
            f"content type {kind or '(none)'!r} is not supported",
            hint='send JSON {"username": ..., "password": ...} or form fields username, password',
        )
    try:
        return LoginIn.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise InvalidLoginError(f"login field {where}", err["msg"]) from exc


@router.post("/auth/login", response_model=TokenOut, openapi_extra={"requestBody": _LOGIN_BODY})
async def post_login(request: Request, services: ServicesDep) -> TokenOut:
    """A session token for a username and password (JSON body or OAuth2 password form)."""
    body = await _login_fields(request)
    token = await run_in_threadpool(services.login, body.username, body.password)
    return TokenOut(access_token=token)


@router.post("/auth/logout")
def post_logout(request: Request, services: ServicesDep, user: CurrentUser) -> dict:
    """Revoke the token this request was made with."""
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() or request.cookies.get(COOKIE, "")
    revoke(services.store, token)
    services.audit.record(user.username, user.role.value, "logout")
    return {"logged_out": user.username}


class NewUser(BaseModel):
    """A user to create."""

    username: str = Field(max_length=64)
    password: str = Field(min_length=8, max_length=256)
    role: Role = Role.VIEWER


@router.post("/users", status_code=201)
def post_user(body: NewUser, services: ServicesDep, user: AdminUser, audit: Auditor) -> dict:
    """Create a user (admin)."""
    create_user(services.store, body.username, body.password, body.role)
    audit("create_user", username=body.username, new_role=body.role.value)
    return {"username": body.username, "role": body.role.value}


class NewToken(BaseModel):
    """An API token to create for a user (no expiry)."""

    username: str
    name: str = Field("api", max_length=64)


@router.post("/tokens", response_model=TokenOut, status_code=201)
def post_token(body: NewToken, services: ServicesDep, user: AdminUser, audit: Auditor) -> TokenOut:
    """Create a non-expiring API token for a user (admin); shown once."""
    token = create_token(services.store, body.username, name=body.name, hours=None)
    audit("create_token", username=body.username, name=body.name)
    return TokenOut(access_token=token)


@router.get("/audit/verify")
def audit_verify(services: ServicesDep, user: AdminUser, audit: Auditor) -> dict:
    """Check the audit trail's hash chain (admin); copy ``head`` somewhere tamper-proof."""
    from medsight.privacy.audit import verify_log

    audit("verify_audit")
    result = verify_log(services.audit.path)
    return {
        "ok": result.ok,
        "entries": result.entries,
        "head": result.head,
        "problems": result.problems,
    }


@router.get("/me")
def me(user: CurrentUser) -> dict:
    """Who the token belongs to."""
    return {"username": user.username, "role": user.role.value}


@router.get("/packages")
def packages(services: ServicesDep, user: CurrentUser) -> list[dict]:
    """The model packages this service can run, with the task family that runs each."""
    from medsight.families import family_for

    return [
        {
            "id": pid,
            "task": p.spec.task.value,
            "family": family_for(p.spec.task).name,
            "modalities": p.spec.input.modalities,
        }
        for pid, p in services.catalog.packages().items()
    ]
