"""The in-process worker: takes queued jobs one at a time and analyses them.

Results are written to ``<home>/results/.<job>.<attempt>.partial`` and renamed to
``<home>/results/<job>`` only when complete, then delivered (PACS, FHIR) before the job is
marked done, so a killed worker leaves no half result under the final name.  The rename never
replaces: when an earlier attempt already put a complete result there (it died between the
rename and marking the job done) that result stays and the new one is dropped, so a job has
one result folder, written once.  While a job runs, a side thread renews its
heartbeat; the loop also requeues jobs whose heartbeat is older than ``job_lease_s`` (their
worker died: ``kill -9``, power loss), see :meth:`~medsight.service.store.Store.recover`.
A study no model is made for (every model skipped it: another modality, dimensionality ...)
is not a failure: its job ends done with a report saying that no model applies and why each
was skipped; a model that failed keeps the job failed.  Reports and errors name the study by
its UID, never by the server's folder.
``analyse`` is injected (default: :func:`medsight.analysis.pipeline.analyze`) so tests can slow
it down or make it fail.

Every worker keeps a row in the store's ``workers`` table with its own heartbeat, renewed
while it is idle too (at most every ``job_lease_s / 4``, and every 5 s at least), which
``/api/ready`` counts; a stopping worker removes its row.  Requeues and failures of dead
workers' jobs are written to the audit trail (``requeue_job`` / ``fail_job``).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from medsight.analysis.pipeline import AnalysisResult, NoModelApplies
from medsight.core.errors import MedsightError, short_reason
from medsight.models.package import ModelPackage
from medsight.reporting.report import Report, no_model_impression, write_report
from medsight.service.audit import AuditTrail
from medsight.service.catalog import PackageCatalog
from medsight.service.models import JobRow
from medsight.service.settings import ServiceSettings
from medsight.service.store import Store
from medsight.service.worklist import job_columns

__all__ = ["Analyse", "Deliver", "Worker", "default_analyse", "result_dir", "study_dir"]

log = logging.getLogger(__name__)

Analyse = Callable[[Path, Path, Sequence[ModelPackage]], AnalysisResult]
Deliver = Callable[[JobRow, Path], str]


def default_analyse(study: Path, out: Path, packages: Sequence[ModelPackage]) -> AnalysisResult:
    """:func:`medsight.analysis.pipeline.analyze` with every output."""
    from medsight.analysis.pipeline import analyze

    return analyze(study, out, packages)


def _study_name(uid: str) -> str:
    """How reports and errors of the service name a study (never by its folder)."""
    return f"study {uid}"


def study_dir(settings: ServiceSettings, uid: str) -> Path:
    """Where a study's files live."""
    return settings.home / "studies" / uid


def result_dir(settings: ServiceSettings, job_id: str) -> Path:
    """Where a finished job's results live."""
    return settings.home / "results" / job_id


class Worker:
    """Runs queued jobs in a background thread (one at a time)."""

    def __init__(
        self,
        store: Store,
        settings: ServiceSettings,
        catalog: PackageCatalog,
        analyse: Analyse = default_analyse,
        deliver: Deliver | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.store, self.settings, self.catalog = store, settings, catalog
        self.analyse, self.deliver, self.audit = analyse, deliver, audit
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_recovery = 0.0
        self._last_beat = 0.0
        self._beat_s = min(settings.job_lease_s / 4, 5.0)

    def _record(self, action: str, job: JobRow) -> None:
        if self.audit is not None:
            self.audit.record(
                f"worker {self.id}", "worker", action, study=job.study_uid, job=job.id
            )

    def beat(self, job_id: str = "") -> None:
        """Record this worker's own heartbeat (busy with ``job_id`` or idle)."""
        self._last_beat = time.monotonic()
        self.store.worker_beat(self.id, host=socket.gethostname(), pid=os.getpid(), job_id=job_id)

    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        while not done.wait(self._beat_s):
            try:
                self.beat(job_id)
                if not self.store.beat(job_id, self.id):
                    log.warning("job %s is no longer held by this worker", job_id)
                    return
            except Exception:
                log.exception("heartbeat of job %s", job_id)

    def run_one(self) -> bool:
        """Run the next queued job; False when there was none."""
        job = self.store.claim(self.id)
        if job is None:
            return False
        self.beat(job.id)
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job.id, done), daemon=True)
        beat.start()
        try:
            self._run(job)
        finally:
            done.set()
            beat.join()
        return True

    def _run(self, job: JobRow) -> None:
        final = result_dir(self.settings, job.id)
        partial = final.with_name(f".{job.id}.{job.attempts}.partial")
        for stale in final.parent.glob(f".{job.id}.*.partial"):  # earlier, dead attempts
            shutil.rmtree(stale, ignore_errors=True)
        self._record("analyse_study", job)
        folder = study_dir(self.settings, job.study_uid)
        try:
            packages = self.catalog.resolve(job.packages_key.split(","))
            result = self.analyse(folder, partial, packages)
        except NoModelApplies as err:
            if not err.runs or any(r.status != "skipped" for r in err.runs):  # a model failed
                self.store.finish(job.id, error=self._error_text(err, job), worker=self.id)
                return
            result = self._no_model_report(job, err, partial)  # not a malfunction: done
        except MedsightError as err:
            self.store.finish(job.id, error=self._error_text(err, job), worker=self.id)
            return
        except Exception as exc:  # a bug must fail the job, not kill the worker
            log.exception("job %s failed", job.id)
            self.store.finish(job.id, error=f"internal error: {short_reason(exc)}", worker=self.id)
            return
        findings = result.report.findings
        if result.report.input != _study_name(job.study_uid):  # the study, not a server path
            write_report(
                result.report.model_copy(update={"input": _study_name(job.study_uid)}), partial
            )
        if not self.store.beat(job.id, self.id):  # requeued meanwhile: another worker owns it
            log.warning("job %s was taken over; dropping this attempt's result", job.id)
            shutil.rmtree(partial, ignore_errors=True)
            return
        try:
            partial.rename(final)  # a directory never replaces a non-empty one
        except OSError:
            if not (final / "report.json").is_file():
                raise
            log.warning("job %s already has a complete result; keeping it", job.id)
            shutil.rmtree(partial, ignore_errors=True)
        delivery = ""
        if self.deliver is not None:
            delivery = self.deliver(job, final)
            if delivery:
                self._record("deliver_results", job)
        triage = job_columns(findings)  # by the labels' clinical meaning, not "any positive"
        self.store.finish(  # one update: "done" means analysed and delivery attempted
            job.id,
            **triage,
            impression=result.report.impression,
            delivery=delivery,
            worker=self.id,
        )

    def _error_text(self, err: MedsightError, job: JobRow) -> str:
        """The failure as the job shows it: the study named by its UID, not its folder."""
        folder = str(study_dir(self.settings, job.study_uid))
        text = str(err).replace(folder, _study_name(job.study_uid))
        return text.replace(str(self.settings.home), "$MEDSIGHT_HOME")  # any other server path

    def _no_model_report(self, job: JobRow, err: NoModelApplies, out: Path) -> AnalysisResult:
        """A report saying that no model applies, each model listed with why it was skipped."""
        report = Report(
            input=_study_name(job.study_uid),
            study=err.study,
            models=err.runs,
            impression=no_model_impression(err.runs),
        )
        write_report(report, out)
        return AnalysisResult(report, out, {})

    def recover(self) -> list[str]:
        """Requeue jobs whose worker stopped renewing their heartbeat."""
        self._last_recovery = time.monotonic()
        found = self.store.recover(self.settings.max_attempts, self.settings.job_lease_s)
        if found:
            log.warning("requeued or failed %d job(s) of dead workers: %s", len(found), found)
        for job_id in found:
            job = self.store.get_job(job_id)
            self._record("requeue_job" if job.state == "queued" else "fail_job", job)
        self.store.prune_workers(max(100 * self.settings.job_lease_s, 3600.0))
        return found

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if time.monotonic() - self._last_beat > self._beat_s:
                    self.beat()
                if time.monotonic() - self._last_recovery > self.settings.job_lease_s / 2:
                    self.recover()
                busy = self.run_one()
            except Exception:  # the store is unreachable: wait and retry
                log.exception("worker loop")
                busy = False
            if not busy:
                self._wake.wait(self.settings.worker_poll_s)
                self._wake.clear()

    def wake(self) -> None:
        """Look at the queue now (after a submission)."""
        self._wake.set()

    def start(self) -> list[str]:
        """Requeue jobs of dead workers, then start the thread; returns the requeued ids."""
        self.beat()
        recovered = self.recover()
        self._thread = threading.Thread(target=self._loop, name="medsight-worker", daemon=True)
        self._thread.start()
        return recovered

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current job."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                try:
                    self.store.forget_worker(self.id)
                except Exception:  # the store is gone; the row ages out
                    log.warning("could not remove the row of worker %s", self.id)

    def serve_forever(self, stop: threading.Event, parent_pid: int | None = None) -> None:
        """Start, run until ``stop`` is set (or the parent process is gone), then stop."""
        self.start()
        try:
            while not stop.wait(1.0):
                if parent_pid is not None and os.getppid() != parent_pid:
                    log.error("the process that started this worker is gone; exiting")
                    os._exit(1)  # like the parent: kill -9 semantics, the lease requeues our job
        finally:
            self.stop()
