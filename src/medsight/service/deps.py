"""Request dependencies (full-stack-fastapi-template ``api/deps.py`` style).

Everything a route needs comes from here, built once per app in
:func:`~medsight.service.app.create_app` and kept on ``app.state.services``; tests replace any
of them with ``app.dependency_overrides``.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from medsight.service.audit import AuditTrail
from medsight.service.auth import LoginThrottle, User, authenticate, login, require
from medsight.service.catalog import PackageCatalog
from medsight.service.errors import AuthError
from medsight.service.settings import Role, ServiceSettings
from medsight.service.store import Store
from medsight.service.worker import Worker

__all__ = [
    "COOKIE",
    "AdminUser",
    "Auditor",
    "CurrentUser",
    "RadiologistUser",
    "Services",
    "ServicesDep",
    "get_services",
]

COOKIE = "medsight_token"


@dataclasses.dataclass
class Services:
    """The objects one app instance shares between requests."""

    settings: ServiceSettings
    store: Store
    audit: AuditTrail
    catalog: PackageCatalog
    worker: Worker | None
    throttle: LoginThrottle = dataclasses.field(default_factory=LoginThrottle)

    def login(self, username: str, password: str) -> str:
        """A session token for a username and password, throttled; the attempt is audited
        (``login`` or ``login_failed``) and a failure re-raised."""
        try:
            token = login(
                self.store,
                username,
                password,
                hours=self.settings.token_hours,
                throttle=self.throttle,
            )
        except Exception:
            self.audit.record(username, "", "login_failed")
            raise
        self.audit.record(username, "", "login")
        return token


def get_services(request: Request) -> Services:
    """The app's :class:`Services`."""
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]
_bearer = HTTPBearer(auto_error=False)


def get_current_user(
    request: Request,
    services: ServicesDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The caller, from ``Authorization: Bearer`` or the viewer's session cookie."""
    token = creds.credentials if creds else request.cookies.get(COOKIE)
    if not token:
        raise AuthError(None, "not authenticated (send Authorization: Bearer <token>)")
    return authenticate(services.store, token)


CurrentUser = Annotated[User, Depends(get_current_user)]


def _radiologist(user: CurrentUser) -> User:
    return require(user, Role.RADIOLOGIST)


def _admin(user: CurrentUser) -> User:
    return require(user, Role.ADMIN)


RadiologistUser = Annotated[User, Depends(_radiologist)]
AdminUser = Annotated[User, Depends(_admin)]


@dataclasses.dataclass
class _Auditor:
    trail: AuditTrail
    user: User

    def __call__(self, action: str, **what: object) -> None:
        self.trail.record(self.user.username, self.user.role.value, action, **what)


def get_auditor(services: ServicesDep, user: CurrentUser) -> _Auditor:
    """A callable that writes ``action`` by the current user to the audit trail."""
    return _Auditor(services.audit, user)


Auditor = Annotated[_Auditor, Depends(get_auditor)]
