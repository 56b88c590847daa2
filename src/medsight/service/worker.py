"""The in-process worker: takes queued jobs one at a time and analyses them.

Results are written to ``<home>/results/.<job>.partial`` and renamed to ``<home>/results/<job>``
only when complete, then delivered (PACS, FHIR) before the job is marked done, so a killed
worker leaves no half result under the final name.  On start, :meth:`Worker.start` requeues
what a dead worker left ``running`` (see :meth:`~medsight.service.store.Store.recover`).
``analyse`` is injected (default: :func:`medsight.analysis.pipeline.analyze`) so tests can slow
it down or make it fail.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from medsight.analysis.pipeline import AnalysisResult
from medsight.core.errors import MedsightError, short_reason
from medsight.models.package import ModelPackage
from medsight.service.catalog import PackageCatalog
from medsight.service.models import JobRow
from medsight.service.settings import ServiceSettings
from medsight.service.store import Store

__all__ = ["Analyse", "Worker", "default_analyse", "result_dir", "study_dir"]

log = logging.getLogger(__name__)

Analyse = Callable[[Path, Path, Sequence[ModelPackage]], AnalysisResult]
Deliver = Callable[[JobRow, Path], str]


def default_analyse(study: Path, out: Path, packages: Sequence[ModelPackage]) -> AnalysisResult:
    """:func:`medsight.analysis.pipeline.analyze` with every output."""
    from medsight.analysis.pipeline import analyze

    return analyze(study, out, packages)


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
    ) -> None:
        self.store, self.settings, self.catalog = store, settings, catalog
        self.analyse, self.deliver = analyse, deliver
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def run_one(self) -> bool:
        """Run the next queued job; False when there was none."""
        job = self.store.claim()
        if job is None:
            return False
        final = result_dir(self.settings, job.id)
        partial = final.with_name(f".{job.id}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            packages = self.catalog.resolve(job.packages_key.split(","))
            result = self.analyse(study_dir(self.settings, job.study_uid), partial, packages)
        except MedsightError as err:
            self.store.finish(job.id, error=str(err))
            return True
        except Exception as exc:  # a bug must fail the job, not kill the worker
            log.exception("job %s failed", job.id)
            self.store.finish(job.id, error=f"internal error: {short_reason(exc)}")
            return True
        findings = result.report.findings
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        delivery = self.deliver(job, final) if self.deliver is not None else ""
        self.store.finish(  # one update: "done" means analysed and delivery attempted
            job.id,
            flagged=any(f.positive for f in findings),
            suspicion=max((f.probability or 0.0 for f in findings), default=0.0),
            impression=result.report.impression,
            delivery=delivery,
        )
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
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
        """Requeue jobs a dead worker left running, then start the thread; returns those ids."""
        recovered = self.store.recover(self.settings.max_attempts)
        self._thread = threading.Thread(target=self._loop, name="medsight-worker", daemon=True)
        self._thread.start()
        return recovered

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current job."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
