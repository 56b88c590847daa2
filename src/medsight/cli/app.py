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
    from medsight.cli import info

    info.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, print medsight errors on one line, return the exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except MedsightError as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except SystemExit as exc:  # click usage errors in standalone_mode=False still raise here
        return int(exc.code or 0)
    except Exception as exc:  # click.ClickException and friends
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
