"""``medsight serve [--host 127.0.0.1] [--port N]``: the REST API, worker and web viewer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8042,
    settings_file: Annotated[
        Path | None,
        typer.Option("--settings", help="TOML/JSON settings file (default $MEDSIGHT_SETTINGS)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the API (docs at /docs), the worklist and viewer (/ui) with an in-process worker.

    The home folder (store, studies, results, audit log) is $MEDSIGHT_HOME or ~/.medsight.
    """
    import uvicorn

    from medsight.service import create_app, load_settings

    settings = load_settings(settings_file)
    app = create_app(settings)
    typer.echo(f"medsight: home {settings.home}; http://{host}:{port}/ui (API docs: /docs)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the medsight command."""
    app.command("serve")(serve)
