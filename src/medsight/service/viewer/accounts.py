"""The account page (``/ui/account``): change my password; for an admin, the users.

Every user can change their own password (the old one is asked).  An admin also sees every
account and can add one, change its role and disable or enable it.  The page only renders; its
script calls the same JSON API as any client (``/api/users``, ``PATCH /api/users/{name}``), so
the rules (the password policy, the last active admin kept, audit records) live in one place,
:mod:`medsight.service.auth` and :mod:`medsight.service.routes.system`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from medsight.core.errors import MedsightError
from medsight.io.html import render
from medsight.service.auth import PASSWORD_POLICY, authenticate
from medsight.service.deps import COOKIE, ServicesDep
from medsight.service.settings import Role

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/account")
def account_page(request: Request, services: ServicesDep) -> Response:
    """Change my password; the admin's user list, add, role and disable."""
    token = request.cookies.get(COOKIE)
    try:
        user = authenticate(services.store, token) if token else None
    except MedsightError:
        user = None
    if user is None:
        return RedirectResponse("/ui/login", status_code=303)
    services.audit.record(user.username, user.role.value, "view_account")
    html = render(
        "medsight.service.viewer:account.html",
        user=user,
        is_admin=user.role == Role.ADMIN,
        policy=PASSWORD_POLICY,
        roles=[r.value for r in Role],
    )
    return HTMLResponse(html)
