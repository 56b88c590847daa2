"""Validation of written DICOM objects with dciodvfy (Debian package ``dicom3tools``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from medsight.core.errors import MedsightError

__all__ = ["DciodvfyMissingError", "dciodvfy", "dciodvfy_errors"]


class DciodvfyMissingError(MedsightError, RuntimeError):
    """dciodvfy is not installed."""


def dciodvfy(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """Run dciodvfy on one file; return ``(errors, warnings)`` as lines.

    Raises
    ------
    DciodvfyMissingError
        The binary is not on PATH (install the Debian package dicom3tools).
    """
    binary = shutil.which("dciodvfy")
    if binary is None:
        raise DciodvfyMissingError(
            "dciodvfy", "is not installed", hint="apt-get install dicom3tools"
        )
    run = subprocess.run([binary, str(Path(path))], capture_output=True, text=True, timeout=120)
    lines = [line.strip() for line in (run.stdout + run.stderr).splitlines()]
    errors = [line for line in lines if line.startswith("Error")]
    warnings = [line for line in lines if line.startswith("Warning")]
    return errors, warnings


def dciodvfy_errors(path: str | os.PathLike[str]) -> list[str]:
    """Only the error lines of :func:`dciodvfy`."""
    return dciodvfy(path)[0]
