"""``medsight worker``: one worker process on the service's store, here or on another machine.

It runs queued jobs of a ``medsight serve`` that shares its settings (the same
``database_url`` and home folder: PostgreSQL and a shared file system across machines).
``medsight serve --workers N`` starts N of these itself.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer


def load_analyse(ref: str) -> Any:
    """The analysis function named ``module:attr`` (a plug-in; the default is the pipeline)."""
    from medsight.core.errors import InvalidInputError

    module, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidInputError(
            "--analyse", f"{ref!r} is not an importable module:function ({exc})"
        ) from exc


def _warm_up(runner: Any) -> None:
    """Load the packages and the heavy libraries before taking a job: loading torch holds the
    interpreter for seconds, which would starve the first job's lease heartbeat."""
    import contextlib

    with contextlib.suppress(ImportError):
        import monai  # noqa: F401
        import torch  # noqa: F401
    runner.catalog.packages()


def worker(
    settings_file: Annotated[
        Path | None,
        typer.Option("--settings", help="TOML/JSON settings file (default $MEDSIGHT_SETTINGS)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "info",
    analyse: Annotated[
        str | None, typer.Option(hidden=True, help="module:function analysing a study.")
    ] = None,
    parent_pid: Annotated[
        int | None, typer.Option(hidden=True, help="Exit when this parent process is gone.")
    ] = None,
) -> None:
    """Run queued analysis jobs of the service's store until SIGTERM / Ctrl-C.

    Point it at the same settings as ``medsight serve`` (database_url, home, packages); on
    SIGTERM it stops after the current job (a job it abandons is requeued after job_lease_s).
    """
    from medsight.service import load_settings
    from medsight.service.audit import AuditTrail
    from medsight.service.catalog import PackageCatalog
    from medsight.service.pacs.delivery import Delivery
    from medsight.service.processes import die_with_parent
    from medsight.service.store import Store
    from medsight.service.worker import Worker, default_analyse

    if parent_pid is not None:
        die_with_parent(parent_pid)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    settings = load_settings(settings_file)
    settings.ensure_home()
    from medsight.inference.cache import configure as configure_model_cache

    configure_model_cache(settings.model_cache)  # built models reused across jobs
    fn = load_analyse(analyse) if analyse else default_analyse
    store = Store(settings.resolved_database_url())
    audit = AuditTrail(settings.home / "audit" / "service.jsonl")
    runner = Worker(
        store, settings, PackageCatalog(settings.packages), fn, Delivery(settings), audit
    )
    _warm_up(runner)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    where = store.engine.url.render_as_string(hide_password=True)
    typer.echo(f"medsight worker {runner.id}: store {where}")
    try:
        runner.serve_forever(stop, parent_pid)
    finally:
        store.engine.dispose()


def register(app: typer.Typer) -> None:
    """Add ``worker`` to the medsight command."""
    app.command("worker")(worker)
