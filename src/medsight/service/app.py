"""``create_app(settings)``: the FastAPI app with its store, audit trail, worker and SCP.

Every response but the static assets' is sent ``Cache-Control: no-store`` (and ``Pragma:
no-cache``): pages and API answers carry patient identifiers, which must not stay in the
browser's cache after logout.  Nothing is created at import time.  The worker thread (and
the C-STORE SCP, when ``dimse_port`` is set) start with the app's lifespan and stop with it;
``analyse`` and ``deliver`` can be injected (tests slow the analysis down or record
deliveries).

Examples
--------
>>> import tempfile
>>> from fastapi.testclient import TestClient
>>> app = create_app(ServiceSettings(home=tempfile.mkdtemp(), run_worker=False))
>>> with TestClient(app) as client:
...     client.get("/api/health").json()["status"], client.get("/api/worklist").status_code
('ok', 401)
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from medsight import __version__
from medsight.core.errors import InvalidInputError, MedsightError
from medsight.service.audit import AuditTrail
from medsight.service.auth import check_password, create_user
from medsight.service.catalog import PackageCatalog
from medsight.service.deps import Services
from medsight.service.errors import status_for
from medsight.service.settings import Role, ServiceSettings
from medsight.service.store import Store
from medsight.service.worker import Analyse, Deliver, Worker, default_analyse

__all__ = ["ADMIN_PASSWORD_FILE", "create_app"]

log = logging.getLogger(__name__)

#: Where the first start writes the generated password of user ``admin`` (relative to the home;
#: only when no ``admin_password`` is configured and the store has no user yet).
ADMIN_PASSWORD_FILE = "initial-admin-password"

_UI_CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)


#: Path prefixes of static assets (the viewer's CSS / JavaScript, the OHIF build): cacheable.
#: Everything else (pages, API answers, reports, DICOMweb) may carry patient data and is sent
#: with ``Cache-Control: no-store``, so after logging out the browser's Back button shows no
#: cached worklist (unless its route chose a policy itself: the viewer's slice images are
#: ``private``, cached by this browser only, so the slider stays fast).
_CACHEABLE = ("/ui/static/", "/ohif/")


def _bootstrap_admin(store: Store, settings: ServiceSettings) -> None:
    from sqlalchemy import func, select

    from medsight.service.models import UserRow

    with store.session() as ses:
        if ses.scalar(select(func.count()).select_from(UserRow)):
            return
    if settings.admin_password is not None:
        password = settings.admin_password.get_secret_value()
        try:
            check_password(password, "admin")
        except InvalidInputError as exc:  # name the setting, not a form field
            raise InvalidInputError(
                "setting admin_password (MEDSIGHT_ADMIN_PASSWORD)",
                exc.problem,
                hint=f"the first admin's password must follow the policy: {exc.hint}",
            ) from None
    else:
        password = secrets.token_urlsafe(18)
        file = settings.home / ADMIN_PASSWORD_FILE
        file.write_text(password + "\n", encoding="utf-8")
        file.chmod(0o600)
        log.warning("created user 'admin'; its password is in %s", file)
    create_user(store, "admin", password, Role.ADMIN)


def create_app(
    settings: ServiceSettings,
    *,
    analyse: Analyse = default_analyse,
    deliver: Deliver | None = None,
) -> FastAPI:
    """Build the app: store, audit trail, package catalog, worker, routes and viewer."""
    from medsight.service.routes import cds_hooks, dicomweb, jobs, pacs, studies, system, worklist
    from medsight.service.routes import whatif as whatif_routes
    from medsight.service.viewer import accounts, ohif, pages

    settings.ensure_home()
    from medsight.inference.cache import configure as configure_model_cache

    configure_model_cache(settings.model_cache)  # built models reused across analyses
    store = Store(settings.resolved_database_url())
    _bootstrap_admin(store, settings)
    catalog = PackageCatalog(settings.packages)
    if deliver is None:
        from medsight.service.pacs.delivery import Delivery

        deliver = Delivery(settings)
    audit = AuditTrail(settings.home / "audit" / "service.jsonl")
    worker = (
        Worker(store, settings, catalog, analyse, deliver, audit) if settings.run_worker else None
    )
    services = Services(settings=settings, store=store, audit=audit, catalog=catalog, worker=worker)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        scp = None
        if worker is not None:
            worker.start()
        if settings.dimse_port is not None:
            from medsight.service.pacs.dimse import StoreSCP

            for rule in settings.rules:  # a typo in a rule must stop the start, not a study
                catalog.resolve(rule.packages)

            scp = StoreSCP(services)
            scp.start()
        try:
            yield
        finally:
            if scp is not None:
                scp.stop()
            if worker is not None:
                worker.stop()
            store.engine.dispose()

    app = FastAPI(
        title="medsight",
        version=__version__,
        summary="AI for medical imaging: studies in, explained findings and worklist out.",
        lifespan=lifespan,
    )
    app.state.services = services

    @app.middleware("http")
    async def _security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.url.path.startswith("/ui"):
            response.headers.setdefault("Content-Security-Policy", _UI_CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
        cacheable = request.url.path.startswith(_CACHEABLE)
        if not cacheable and "cache-control" not in response.headers:  # a route's own wins
            response.headers["Cache-Control"] = "no-store"  # pages, API, reports: patient data
            response.headers["Pragma"] = "no-cache"
        return response

    @app.exception_handler(MedsightError)
    async def _medsight_error(_request: Request, err: MedsightError) -> JSONResponse:
        status = status_for(err)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": str(err)}, status_code=status, headers=headers)

    for module in (system, studies, jobs, worklist, pacs, cds_hooks, pages, dicomweb, ohif):
        app.include_router(module.router)
    app.include_router(jobs.summary_router)
    app.include_router(whatif_routes.router)
    app.include_router(accounts.router)
    pages.mount_static(app)
    return app
