"""MkDocs hook: the command-line reference page (``reference/cli.md``), made at build time.

The page is generated from the typer app itself with typer's own Markdown generator
(``python -m typer medsight.cli.app utils docs``), so it always matches the installed
``medsight --help``; nothing is committed that could go stale.  ``mkdocs.yml`` names this file
under ``hooks`` and excludes ``hooks/`` from the site.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from mkdocs.structure.files import File, Files

PAGE = "reference/cli.md"
TITLE = "Command-line reference"
INTRO = (
    "Generated from the command line itself when the site is built "
    "(`python -m typer medsight.cli.app utils docs`); `medsight COMMAND --help` prints the "
    "same.\n\n"
)


def cli_markdown() -> str:
    """The Markdown reference of every ``medsight`` command, from typer's generator."""
    generator = ["typer", "medsight.cli.app", "utils", "docs", "--name", "medsight"]
    proc = subprocess.run(
        [sys.executable, "-m", *generator, "--title", TITLE],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"typer could not document medsight.cli.app: {proc.stderr[-2000:]}")
    heading, _, rest = proc.stdout.strip().partition("\n")
    return f"{heading}\n\n{INTRO}{rest.lstrip()}\n"


def on_files(files: Files, config: Any) -> Files:
    """Add the generated reference page to the site's files."""
    files.append(File.generated(config, PAGE, content=cli_markdown()))
    return files
