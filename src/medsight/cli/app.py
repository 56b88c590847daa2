"""The ``medsight`` typer app.

Commands live in their own modules and are registered here, in one place, so the list of
commands is easy to read.  Every command turns a :class:`~medsight.core.errors.MedsightError`
into a one-line message on stderr and a non-zero exit code (see :func:`main`).
"""

from __future__ import annotations

import sys

import typer

from medsight.core.errors import MedsightError

app = typer.Typer(
    name="medsight",
    help="AI for medical imaging: from a DICOM study to a validated, explained report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Imports are local so `medsight --help` stays fast; each module adds its own commands.
    from medsight.cli import analyze, deid, info, qc
    from medsight.cli import batch as batch_cli
    from medsight.cli import denoise as denoise_cli
    from medsight.cli import evaluate as evaluate_cli
    from medsight.cli import export as export_cli
    from medsight.cli import guideline as guideline_cli
    from medsight.cli import serve as serve_cli
    from medsight.cli import synth as synth_cli
    from medsight.cli import train as train_cli
    from medsight.cli import user as user_cli

    info.register(app)
    analyze.register(app)
    deid.register(app)
    qc.register(app)
    train_cli.register(app)
    evaluate_cli.register(app)
    export_cli.register(app)
    serve_cli.register(app)
    denoise_cli.register(app)
    synth_cli.register(app)
    guideline_cli.register(app)
    batch_cli.register(app)
    user_cli.register(app)


@app.callback()
def _root() -> None:
    """AI for medical imaging: from a DICOM study to a validated, explained report."""


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, print medsight errors on one line, return the exit code."""
    try:
        app(args=argv, prog_name="medsight")
    except MedsightError as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    except SystemExit as exc:  # typer/click exit normally this way, with usage errors too
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
