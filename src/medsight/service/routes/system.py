"""Health, readiness, login, users, API tokens and the package list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from medsight import __version__
from medsight.core.errors import InvalidInputError
from medsight.service.auth import (
    PASSWORD_POLICY,
    create_token,
    create_user,
    list_users,
    require,
    revoke,
    set_active,
    set_password,
    set_role,
)
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
    """A user to create (the password policy is checked by the service, with its message)."""

    username: str = Field(max_length=64)
    password: str = Field(min_length=1, max_length=256, description=PASSWORD_POLICY)
    role: Role = Role.VIEWER


@router.post("/users", status_code=201)
def post_user(body: NewUser, services: ServicesDep, user: AdminUser, audit: Auditor) -> dict:
    """Create a user (admin)."""
    create_user(services.store, body.username, body.password, body.role)
    audit("create_user", username=body.username, new_role=body.role.value)
    return {"username": body.username, "role": body.role.value, "active": True}


@router.get("/users")
def get_users(services: ServicesDep, user: AdminUser) -> dict:
    """Every account with its role, whether it is active and its valid tokens (admin)."""
    return {
        "password_policy": PASSWORD_POLICY,
        "users": [
            {
                "username": u.username,
                "role": u.role.value,
                "active": u.active,
                "created": u.created.isoformat(),
                "sessions": u.sessions,
            }
            for u in list_users(services.store)
        ],
    }


class UserChange(BaseModel):
    """What to change of an account: ``role`` and ``active`` (admin), ``password`` (the user
    themselves with ``old_password``, or an admin resetting someone else's)."""

    role: Role | None = None
    active: bool | None = None
    password: str | None = Field(None, min_length=1, max_length=256, description=PASSWORD_POLICY)
    old_password: str | None = Field(None, max_length=256)


@router.patch("/users/{username}")
def patch_user(
    username: str,
    body: UserChange,
    request: Request,
    services: ServicesDep,
    user: CurrentUser,
    audit: Auditor,
) -> dict:
    """Change a role, enable/disable (admin; never the last active admin) or a password.

    Users change their own password with ``old_password``; an admin may reset another user's
    without it. A changed password ends the user's other login sessions; disabling ends all.
    """
    own = username == user.username
    if not own or body.role is not None or body.active is not None:
        require(user, Role.ADMIN)
    if body.password is not None:
        if own and body.old_password is None:
            raise InvalidInputError(
                "old_password", "is required to change your own password", hint=PASSWORD_POLICY
            )
        header = request.headers.get("authorization", "")
        current = header.removeprefix("Bearer ").strip() or request.cookies.get(COOKIE, "")
        set_password(
            services.store,
            username,
            body.password,
            old=body.old_password if own else None,
            keep_token=current if own else None,
        )
        audit("change_password", username=username, by_admin=not own)
    if body.role is not None:
        set_role(services.store, username, body.role)
        audit("change_role", username=username, new_role=body.role.value)
    if body.active is not None:
        set_active(services.store, username, body.active)
        audit("enable_user" if body.active else "disable_user", username=username)
    info = next(u for u in list_users(services.store) if u.username == username)
    return {"username": info.username, "role": info.role.value, "active": info.active}


@router.delete("/users/{username}")
def delete_user(username: str, services: ServicesDep, user: AdminUser, audit: Auditor) -> dict:
    """Disable an account (admin): its row stays so the audit trail still names it."""
    set_active(services.store, username, False)
    audit("disable_user", username=username)
    return {"username": username, "active": False}


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
