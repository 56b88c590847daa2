"""Batch operations that fail on purpose (imported by worker processes and Ray workers).

Each writes a first file, then fails in its own way, so a test can see that nothing half
written is ever published as done.  Attempts are counted in ``options["log"]`` (one line per
attempt and study).
"""

import os
import signal
from pathlib import Path

from medsight.core.errors import InvalidInputError


def _attempt(task, staging, options):
    log = Path(options["log"])
    with log.open("a") as f:
        f.write(f"{task.folder} {os.getpid()}\n")
    (staging / "part1.txt").write_text("first half")


def _complete(task, staging):
    (staging / "part2.txt").write_text("second half")
    return {"pid": os.getpid()}


def crash_once(task, staging, options):
    """Kill the own process (SIGKILL) mid-study, once per study in ``options["crash"]``."""
    _attempt(task, staging, options)
    marker = Path(options["log"]).parent / f"{task.folder}.crashed"
    if task.folder in options["crash"] and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return _complete(task, staging)


def fail(task, staging, options):
    """Raise a RuntimeError for the studies in ``options["fail"]`` (every attempt)."""
    _attempt(task, staging, options)
    if task.folder in options["fail"]:
        raise RuntimeError(f"boom in {task.folder}")
    return _complete(task, staging)


def bad_input(task, staging, options):
    """Raise a MedsightError (bad input: never retried) for the studies in ``options["fail"]``."""
    _attempt(task, staging, options)
    if task.folder in options["fail"]:
        raise InvalidInputError(task.folder, "not an image this operation can use")
    return _complete(task, staging)
