"""Wall time per stage of ``analyze``, so the slow part of a study is visible.

:func:`recording` starts a :class:`StageTimes` for the current context; :func:`stage` is a
no-op outside one, so code deep in a run (an explainer inside a model's findings builder)
can mark its stage without being handed the recorder.  Stages nest: a stage's time is
*exclusive* (the time of stages inside it is counted there, not twice), so the stages add up
to the recorded wall time, apart from the unmarked glue between them.  A stage entered more
than once (a series loaded for two models) adds up under one name.

Examples
--------
>>> with recording() as times:
...     with stage("model a"):
...         with stage("explain a"):
...             pass
>>> sorted(times.seconds)
['explain a', 'model a']
>>> times.total() >= sum(times.seconds.values())
True
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["StageTimes", "recording", "stage"]

_CURRENT: contextvars.ContextVar[StageTimes | None] = contextvars.ContextVar(
    "medsight_stage_times", default=None
)


class StageTimes:
    """Exclusive wall seconds per stage name, in the order the stages first ran."""

    def __init__(self, start: float | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self._children: list[float] = []  # time of finished inner stages, per open stage
        #: ``time.perf_counter()`` at the start (earlier when stages were timed before, e.g.
        #: the study scan that decides which studies there are)
        self._start = time.perf_counter() if start is None else float(start)
        self._end: float | None = None

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` under ``name`` (measured elsewhere, e.g. before recording began)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (exclusive of stages nested in it)."""
        self._children.append(0.0)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            inner = self._children.pop()
            self.add(name, elapsed - inner)
            if self._children:
                self._children[-1] += elapsed

    def stop(self) -> None:
        """End the recording (the total stops growing)."""
        self._end = time.perf_counter()

    def total(self) -> float:
        """Wall seconds from the start of the recording to its end (or now)."""
        end = self._end if self._end is not None else time.perf_counter()
        return end - self._start

    def as_dict(self, **extra: Any) -> dict[str, Any]:
        """JSON-ready: ``stages`` (seconds), ``total_s``, ``unmarked_s`` and ``extra``."""
        total = self.total()
        return {
            "stages": {k: round(v, 6) for k, v in self.seconds.items()},
            "total_s": round(total, 6),
            "unmarked_s": round(total - sum(self.seconds.values()), 6),
            **extra,
        }


@contextlib.contextmanager
def recording(times: StageTimes | None = None) -> Iterator[StageTimes]:
    """Record the stages of the block (into ``times`` when given) and stop at its end."""
    times = times or StageTimes()
    token = _CURRENT.set(times)
    try:
        yield times
    finally:
        times.stop()
        _CURRENT.reset(token)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Mark the block as stage ``name`` of the current recording (nothing when none)."""
    times = _CURRENT.get()
    if times is None:
        yield
        return
    with times.stage(name):
        yield
