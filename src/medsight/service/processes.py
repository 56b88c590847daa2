"""Worker processes: ``medsight serve --workers N`` starts and supervises N ``medsight worker``.

Each child runs :class:`~medsight.service.worker.Worker` against the same store as the
service (SQLite file or PostgreSQL), so a job is claimed by exactly one of them (see
:meth:`~medsight.service.store.Store.claim`).  The pool restarts a child that exits (a crash,
``kill -9``, out of memory) after a short back-off; the dead child's job goes back to the queue
when its lease runs out.  A child dies with the service: it is started with ``--parent-pid``,
asks Linux for ``SIGKILL`` when its parent dies (``PR_SET_PDEATHSIG``) and also checks once a
second that its parent is still there, so a ``kill -9`` of ``medsight serve`` leaves no orphan
worker behind and the next start recovers every job.

Examples
--------
>>> WorkerPool(2, settings_file=None).command()[3:6]
['worker', '--log-level', 'info']
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["WorkerPool", "die_with_parent"]

log = logging.getLogger(__name__)


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to ``SIGKILL`` this process when its parent dies (Linux; else a no-op).

    Exits at once when the parent is already gone (it died before this call).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)


class WorkerPool:
    """Starts ``n`` worker processes, restarts those that exit, stops them all on :meth:`stop`."""

    def __init__(
        self,
        n: int,
        *,
        settings_file: Path | None,
        analyse: str | None = None,
        log_level: str = "info",
        restart_delay_s: float = 1.0,
    ) -> None:
        self.n, self.settings_file, self.analyse = n, settings_file, analyse
        self.log_level, self.restart_delay_s = log_level, restart_delay_s
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self.restarts = 0
        self._stop = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def command(self) -> list[str]:
        """The command line of one worker child."""
        cmd = [sys.executable, "-m", "medsight.cli.app", "worker", "--log-level", self.log_level]
        if self.settings_file is not None:
            cmd += ["--settings", str(self.settings_file)]
        if self.analyse:
            cmd += ["--analyse", self.analyse]
        return [*cmd, "--parent-pid", str(os.getpid())]

    def pids(self) -> list[int]:
        """The PIDs of the running children."""
        with self._lock:
            return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def _spawn(self, slot: int) -> None:
        proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL)
        self.procs[slot] = proc
        log.info("started worker process %d (slot %d)", proc.pid, slot)

    def start(self) -> None:
        """Start the children and the supervising thread."""
        with self._lock:
            for slot in range(self.n):
                self._spawn(slot)
        self._thread = threading.Thread(target=self._watch, name="medsight-pool", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        died_at: dict[int, float] = {}
        while not self._stop.wait(0.2):
            with self._lock:
                for slot, proc in enumerate(self.procs):
                    if proc is None or proc.poll() is None or self._stopping.is_set():
                        continue
                    first = died_at.setdefault(slot, time.monotonic())
                    if time.monotonic() - first < self.restart_delay_s:
                        continue  # back off: a worker that cannot start must not spin
                    log.warning(
                        "worker process %d exited with %s; starting another",
                        proc.pid,
                        proc.returncode,
                    )
                    del died_at[slot]
                    self.restarts += 1
                    self._spawn(slot)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every child (each finishes or abandons its job), SIGKILL after ``timeout``.

        The supervising thread ends last: a child it restarted gets ``SIGKILL`` from the kernel
        when that thread ends (``PR_SET_PDEATHSIG`` follows the thread that started it).
        """
        self._stopping.set()
        with self._lock:
            live = [p for p in self.procs if p is not None and p.poll() is None]
            for proc in live:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for proc in live:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
