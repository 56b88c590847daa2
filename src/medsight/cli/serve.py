"""``medsight serve [--host 127.0.0.1] [--port N] [--workers N]``: the API, workers and viewer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8042,
    settings_file: Annotated[
        Path | None,
        typer.Option("--settings", help="TOML/JSON settings file (default $MEDSIGHT_SETTINGS)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=0, help="Worker processes to start and supervise (0: one in-process worker)."
        ),
    ] = 0,
    analyse: Annotated[
        str | None, typer.Option(hidden=True, help="module:function analysing a study.")
    ] = None,
) -> None:
    """Serve the API (docs at /docs), the worklist and viewer (/ui) with an in-process worker.

    The home folder (store, studies, results, audit log) is $MEDSIGHT_HOME or ~/.medsight.
    With --workers N, N `medsight worker` processes run the jobs (restarted when they die;
    more can run on other machines against the same PostgreSQL store).
    On the first start (no user yet, no $MEDSIGHT_ADMIN_PASSWORD) user 'admin' is created with
    a random password written to the file initial-admin-password in the home folder.
    """
    import uvicorn

    from medsight.cli.worker import load_analyse
    from medsight.service import create_app, load_settings
    from medsight.service.app import ADMIN_PASSWORD_FILE
    from medsight.service.processes import WorkerPool

    settings = load_settings(settings_file)
    extra = {"analyse": load_analyse(analyse)} if analyse else {}
    if workers:  # the processes run the jobs; the store is migrated before they start
        app = create_app(settings.model_copy(update={"run_worker": False}), **extra)
    else:
        app = create_app(settings, **extra)
    typer.echo(f"medsight: home {settings.home}; http://{host}:{port}/ui (API docs: /docs)")
    if (settings.home / ADMIN_PASSWORD_FILE).is_file():
        typer.echo(
            f"medsight: the first password of user 'admin' is in "
            f"{settings.home / ADMIN_PASSWORD_FILE} (delete the file once you have it)"
        )
    if workers and settings.run_worker:
        pool = WorkerPool(
            workers, settings_file=settings_file, analyse=analyse, log_level=log_level
        )
        _run_pool_with(app, pool)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _run_pool_with(app: Any, pool: Any) -> None:
    """Start ``pool`` after the app's start-up and stop it before the app's shutdown (uvicorn
    re-raises SIGTERM once it has shut down, so code after ``uvicorn.run`` may never run)."""
    from contextlib import asynccontextmanager

    from fastapi.concurrency import run_in_threadpool

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            pool.start()
            typer.echo(f"medsight: {pool.n} worker process(es): {pool.pids()}")
            try:
                yield state
            finally:
                await run_in_threadpool(pool.stop)

    app.router.lifespan_context = lifespan


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``worker`` to the medsight command."""
    from medsight.cli import worker

    app.command("serve")(serve)
    worker.register(app)
