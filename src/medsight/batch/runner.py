"""Run one operation over every study of an archive, idempotently, on a local pool or Ray.

Each study is one task.  A task writes into a private staging folder
(``OUT/.batch/staging/<folder>-<attempt id>``); when the operation returns, the folder is
renamed to ``OUT/<folder>`` and only then is the done marker ``OUT/<folder>/.done.json``
written (atomically).  So:

- a rerun skips every study with a done marker;
- a study whose worker died (killed, out of memory, a crashing decoder) has no marker, whatever
  it had written: the rerun (or the retry in the same run) removes it and does it again;
- a failure is retried up to ``retries`` times (except a
  :class:`~medsight.core.errors.MedsightError`: bad input fails the same way every time), then
  listed with its error in ``OUT/batch_summary.json``; the others still finish.

Engines: ``local`` runs each attempt in its own fresh process (forked by a ``forkserver``,
else ``spawn``), at most ``workers``
at a time, so a killed process costs only its own study, which is then known exactly (a shared
``ProcessPoolExecutor`` breaks as a whole when one worker dies, and cannot say whose study it
was).  ``ray`` submits one Ray task per attempt (``max_retries=0``: retries are counted here,
the same way for both engines) to a local Ray instance or to the cluster at ``address``; OUT
must then be a folder every node sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import shutil
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from enum import StrEnum
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from medsight.batch.ops import PRELOAD, output_folder, resolve
from medsight.batch.tasks import StudyTask
from medsight.core.errors import InvalidInputError, MedsightError
from medsight.io.atomic import write_text_atomic

__all__ = ["DONE", "BatchResult", "Engine", "TaskResult", "run_batch"]

DONE = ".done.json"
STATE = ".batch"
SUMMARY = "batch_summary.json"


class Engine(StrEnum):
    """Where the tasks run."""

    LOCAL = "local"
    RAY = "ray"


@dataclasses.dataclass
class TaskResult:
    """One study's outcome: ``done`` (this run), ``skipped`` (done before) or ``failed``."""

    id: str
    folder: str
    status: str
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class BatchResult:
    """Every study's outcome, in archive order."""

    operation: str
    engine: str
    out_dir: Path
    results: list[TaskResult]
    seconds: float

    @property
    def failed(self) -> list[TaskResult]:
        """The studies that failed every attempt."""
        return [r for r in self.results if r.status == "failed"]

    def counts(self) -> dict[str, int]:
        """How many studies are done, skipped and failed."""
        out = {"done": 0, "skipped": 0, "failed": 0}
        for r in self.results:
            out[r.status] += 1
        return out


@dataclasses.dataclass(frozen=True)
class _Job:
    task: StudyTask
    folder: str
    attempt: int
    staging: str


class _Permanent(Exception):
    """A failure that another attempt would repeat (bad input)."""


def execute(
    operation: str, task: StudyTask, folder: str, staging: str, out_dir: str, options: dict
) -> dict[str, Any]:
    """Run ``operation`` on ``task`` into ``staging``, publish it as ``out_dir/folder`` and
    mark it done.  Runs in the worker (a local process or a Ray worker)."""
    stage, final = Path(staging), Path(out_dir) / folder
    stage.mkdir(parents=True)
    try:
        summary = resolve(operation)(task, stage, options)
    except MedsightError as err:
        raise _Permanent(str(err)) from None
    if final.exists():  # a stale, unfinished output (no done marker): replaced
        shutil.rmtree(final)
    os.replace(stage, final)
    public = folder if operation == "deid" else task.id  # no original UID in de-identified OUT
    marker = {"id": public, "operation": operation, "summary": summary, "finished": time.time()}
    write_text_atomic(final / DONE, json.dumps(marker, indent=2) + "\n")
    return summary


def is_done(out_dir: Path, folder: str) -> bool:
    """Whether the study in ``out_dir/folder`` finished (its done marker exists)."""
    return (out_dir / folder / DONE).is_file()


def run_batch(
    operation: str,
    tasks: list[StudyTask],
    out_dir: str | os.PathLike[str],
    *,
    options: dict[str, Any] | None = None,
    engine: Engine | str = Engine.LOCAL,
    workers: int = 2,
    retries: int = 2,
    address: str | None = None,
    progress: Callable[[TaskResult], None] | None = None,
) -> BatchResult:
    """Run ``operation`` (see :mod:`medsight.batch.ops`) on every task not done yet.

    Parameters
    ----------
    operation : str
        ``analyze``, ``deid``, ``qc`` or ``"module:attr"``.
    tasks : list of StudyTask
        From :func:`medsight.batch.tasks.discover_tasks`.
    out_dir : path
        One folder per study, the state under ``.batch/`` and ``batch_summary.json``.
    options : dict
        Passed to the operation (JSON-able values).
    engine, workers, address
        ``local``: ``workers`` processes.  ``ray``: the Ray cluster at ``address`` (default:
        the one this process is connected to, else a new local one with ``workers`` CPUs).
    retries : int
        Further attempts after a failure (not after a MedsightError).
    progress : callable
        Called with each study's result as it is known.

    Returns
    -------
    BatchResult
    """
    if retries < 0 or workers < 1:
        raise InvalidInputError("batch", "retries must be >= 0 and workers >= 1")
    out = Path(out_dir)
    options = dict(options or {})
    resolve(operation)  # an unknown operation fails here, not in every worker
    engine = Engine(engine)
    say = progress or (lambda _r: None)
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        return _run_batch(operation, tasks, out, options, engine, workers, retries, address, say)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One run per OUT at a time (a second one would remove the first one's staging)."""
    import fcntl

    (out / STATE).mkdir(exist_ok=True)
    with (out / STATE / "lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidInputError(
                out, "another batch run is using this output folder", hint="wait for it"
            ) from None
        yield


def _run_batch(
    operation: str,
    tasks: list[StudyTask],
    out: Path,
    options: dict[str, Any],
    engine: Engine,
    workers: int,
    retries: int,
    address: str | None,
    say: Callable[[TaskResult], None],
) -> BatchResult:
    start = time.monotonic()
    staging_root = out / STATE / "staging"
    shutil.rmtree(staging_root, ignore_errors=True)  # left by workers killed in a past run
    results: dict[str, TaskResult] = {}
    todo: list[_Job] = []
    seen: set[str] = set()
    for task in tasks:
        folder = output_folder(task, operation, options)
        if folder in seen:
            raise InvalidInputError(task.id, f"two studies share the output folder {folder}")
        seen.add(folder)
        public = folder if operation == "deid" else task.id  # no original UID in deid OUT
        if is_done(out, folder):
            results[task.id] = TaskResult(public, folder, "skipped")
            say(results[task.id])
        else:
            todo.append(_Job(task, folder, 1, _staging(staging_root, folder)))

    def finish(job: _Job, summary: dict[str, Any] | None, error: str | None, retry: bool) -> bool:
        """Record an attempt; True when the task should be tried again."""
        shutil.rmtree(job.staging, ignore_errors=True)
        if error is not None and retry and job.attempt <= retries:
            return True
        public = job.folder if operation == "deid" else job.task.id
        res = TaskResult(public, job.folder, "failed" if error else "done", job.attempt)
        res.error, res.summary = error, summary or {}
        results[job.task.id] = res
        say(res)
        return False

    run = _run_local if engine is Engine.LOCAL else _run_ray
    timing: dict[str, float] = {}
    run(operation, todo, out, options, workers, address, finish, timing, staging_root)
    for task_id, secs in timing.items():
        if task_id in results:
            results[task_id].seconds = round(secs, 3)
    ordered = [results[t.id] for t in tasks]
    batch = BatchResult(operation, engine.value, out, ordered, time.monotonic() - start)
    _write_summary(batch)
    return batch


def _staging(root: Path, folder: str) -> str:
    return str(root / f"{folder}-{uuid.uuid4().hex[:8]}")


def _retry(job: _Job, root: Path) -> _Job:
    return dataclasses.replace(job, attempt=job.attempt + 1, staging=_staging(root, job.folder))


def _context(operation: str) -> Any:
    """``forkserver`` where there is one (a clean server, started once, forks each attempt
    cheaply, with the operation's heavy modules imported once), else ``spawn``; never a
    plain fork of this possibly multi-threaded process."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")  # the preload counts only before the server starts
    ctx.set_forkserver_preload(["__main__", "medsight.batch.runner", *PRELOAD.get(operation, ())])
    return ctx


def _child(conn: Connection, args: tuple) -> None:
    """Entry of a local worker process: run one attempt, send back its outcome."""
    try:
        conn.send(("ok", execute(*args)))
    except _Permanent as err:
        conn.send(("permanent", str(err)))
    except BaseException as exc:  # report anything the operation raised, then exit
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        conn.send(("error", detail[-2000:]))
    finally:
        conn.close()


_Finish = Callable[[_Job, dict[str, Any] | None, str | None, bool], bool]


def _run_local(
    operation: str,
    todo: list[_Job],
    out: Path,
    options: dict[str, Any],
    workers: int,
    address: str | None,
    finish: _Finish,
    timing: dict[str, float],
    staging_root: Path,
) -> None:
    if address is not None:
        raise InvalidInputError("--address", "only the ray engine connects to a cluster")
    ctx = _context(operation)
    pending = deque(todo)
    running: dict[Any, tuple[Any, Connection, _Job, float]] = {}
    while pending or running:
        while pending and len(running) < workers:
            job = pending.popleft()
            recv, send = ctx.Pipe(duplex=False)
            args = (operation, job.task, job.folder, job.staging, str(out), options)
            proc = ctx.Process(target=_child, args=(send, args), daemon=True)
            proc.start()
            send.close()
            running[proc.sentinel] = (proc, recv, job, time.monotonic())
        for sentinel in wait(list(running)):
            proc, recv, job, began = running.pop(sentinel)
            try:
                outcome = recv.recv() if recv.poll() else None
            except (EOFError, OSError):  # died before it could say anything
                outcome = None
            proc.join()
            recv.close()
            timing[job.task.id] = timing.get(job.task.id, 0.0) + time.monotonic() - began
            if outcome is None:
                error = f"worker process died (exit code {proc.exitcode}) before finishing"
                again = finish(job, None, error, True)
            elif outcome[0] == "ok":
                again = finish(job, outcome[1], None, False)
            else:
                again = finish(job, None, outcome[1], outcome[0] == "error")
            if again:
                pending.append(_retry(job, staging_root))


@contextlib.contextmanager
def _ray_session(address: str | None, workers: int) -> Iterator[Any]:
    try:
        import ray
    except ImportError:
        raise InvalidInputError(
            "--engine ray",
            "ray is not installed",
            hint='install the scale extra: pip install "medsight[scale]"',
        ) from None
    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(  # a private single-node Ray on this machine, on the loopback only
                address="local",
                num_cpus=workers,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
            )
        else:
            ray.init(address=address)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _run_ray(
    operation: str,
    todo: list[_Job],
    out: Path,
    options: dict[str, Any],
    workers: int,
    address: str | None,
    finish: _Finish,
    timing: dict[str, float],
    staging_root: Path,
) -> None:
    if not todo:
        return
    with _ray_session(address, workers) as ray:
        remote = ray.remote(max_retries=0, num_cpus=1)(execute)
        limit = max(2, int(ray.cluster_resources().get("CPU", workers))) * 2  # in flight
        pending = deque(todo)
        running: dict[Any, tuple[_Job, float]] = {}
        while pending or running:
            while pending and len(running) < limit:
                job = pending.popleft()
                args = (operation, job.task, job.folder, job.staging, str(out), options)
                running[remote.remote(*args)] = (job, time.monotonic())
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                job, began = running.pop(ref)
                timing[job.task.id] = timing.get(job.task.id, 0.0) + time.monotonic() - began
                again = _ray_outcome(ray, ref, job, finish)
                if again:
                    pending.append(_retry(job, staging_root))


def _ray_outcome(ray: Any, ref: Any, job: _Job, finish: _Finish) -> bool:
    try:
        summary = ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause if err.cause is not None else err
        detail = str(cause).strip().splitlines()
        text = detail[-1] if detail else type(cause).__name__
        return finish(job, None, text[-2000:], not isinstance(cause, _Permanent))
    except ray.exceptions.RayError as err:  # the worker died (killed, out of memory, ...)
        return finish(job, None, f"worker process died ({type(err).__name__})", True)
    return finish(job, summary, None, False)


def _write_summary(batch: BatchResult) -> None:
    """``OUT/batch_summary.json``; for ``deid`` without error texts (they name input files,
    whose names may identify): those are shown on the console only."""
    studies = [dataclasses.asdict(r) for r in batch.results]
    if batch.operation == "deid":
        for s in studies:
            s["error"] = s["error"] and "failed (the error was shown on the console)"
    data = {
        "operation": batch.operation,
        "engine": batch.engine,
        "seconds": round(batch.seconds, 3),
        "counts": batch.counts(),
        "studies": studies,
    }
    write_text_atomic(batch.out_dir / SUMMARY, json.dumps(data, indent=2) + "\n")
