"""An analysis that stalls on a study's first attempt, for the process-kill tests.

``medsight serve --analyse slow_analyse:analyse`` (with this folder on ``PYTHONPATH``) runs it
in every worker process.  The first attempt at a study writes ``<home>/stalls/<study uid>``
(holding the worker's PID), a half result, and waits ``$MEDSIGHT_TEST_STALL_S`` seconds or until
``<home>/stalls/release`` exists; later attempts run the real pipeline at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path


def analyse(study: Path, out: Path, packages: Sequence) -> object:
    from medsight.service.worker import default_analyse

    marks = study.parent.parent / "stalls"
    marks.mkdir(exist_ok=True)
    try:
        fd = os.open(marks / study.name, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # a later attempt
        return default_analyse(study, out, packages)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    out.mkdir(parents=True, exist_ok=True)
    (out / "half-written.txt").write_text("the worker may die before this job ends")
    deadline = time.monotonic() + float(os.environ.get("MEDSIGHT_TEST_STALL_S", "600"))
    while time.monotonic() < deadline and not (marks / "release").exists():
        time.sleep(0.05)
    (out / "half-written.txt").unlink()
    return default_analyse(study, out, packages)
