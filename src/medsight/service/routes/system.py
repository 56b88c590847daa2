"""Health, login, users, API tokens and the package list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel, Field

from medsight import __version__
from medsight.service.auth import create_token, create_user, revoke
from medsight.service.deps import COOKIE, AdminUser, Auditor, CurrentUser, ServicesDep
from medsight.service.schemas import TokenOut
from medsight.service.settings import Role

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/health")
def health() -> dict:
    """Liveness (no authentication)."""
    return {"status": "ok", "version": __version__}


@router.post("/auth/login", response_model=TokenOut)
def post_login(
    services: ServicesDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
) -> TokenOut:
    """A session token for a username and password (OAuth2 password form fields)."""
    return TokenOut(access_token=services.login(username, password))


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
