"""The store: SQLAlchemy engine and the job state machine (SQLite default, PostgreSQL by URL).

Claiming a job is atomic (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, a conditional
``UPDATE ... WHERE state = 'queued'`` on SQLite), so two workers never run the same job.  A
running job's worker renews its heartbeat (:meth:`Store.beat`); :meth:`Store.recover` puts
jobs whose heartbeat is older than the lease back in the queue (or fails them after
``max_attempts``), so several workers, in one process or on several machines sharing a
PostgreSQL store, can recover each other's jobs without stealing live ones.  Workers also
record their own heartbeat, idle or busy (:meth:`Store.worker_beat`), for readiness checks.
The schema is brought to the newest Alembic revision when a store opens
(:func:`medsight.service.migrations.upgrade`).

Examples
--------
>>> store = Store("sqlite://")
>>> store.upsert_study("1.2.3", modalities="CT")
>>> job, new = store.submit("1.2.3", ["m@1"], "abc")
>>> new, store.submit("1.2.3", ["m@1"], "abc")[1]
(True, False)
>>> store.claim("w1").id == job.id
True
>>> store.get_job(job.id).state
'running'
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, delete, event, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from medsight.service.errors import NotFoundError
from medsight.service.models import FeedbackRow, JobRow, JobState, StudyRow, WorkerRow, now

__all__ = ["Store"]


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        extra: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if url in ("sqlite://", "sqlite:///:memory:"):
            extra["poolclass"] = StaticPool
        engine = create_engine(url, **extra)

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    """Tables and the operations the service runs on them."""

    def __init__(self, url: str) -> None:
        from medsight.service.migrations import upgrade

        self.engine = _engine(url)
        try:
            self.migration = upgrade(self.engine)  # what start-up did to the schema
        except Exception:
            self.engine.dispose()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success, rolled back on error."""
        with self._sessions() as ses, ses.begin():
            yield ses

    # studies -----------------------------------------------------------------------------
    def upsert_study(self, uid: str, **fields: Any) -> None:
        """Create the study row or update the given fields."""
        with self.session() as ses:
            row = ses.get(StudyRow, uid)
            if row is None:
                ses.add(StudyRow(uid=uid, **fields))
            else:
                for key, value in fields.items():
                    setattr(row, key, value)

    def get_study(self, uid: str) -> StudyRow:
        """The study row; :class:`NotFoundError` if unknown."""
        with self.session() as ses:
            row = ses.get(StudyRow, uid)
        if row is None:
            raise NotFoundError(f"study {uid}", "is not in the store")
        return row

    def studies_without_jobs(self, *, source: str) -> list[str]:
        """UIDs of studies from ``source`` that were never queued."""
        with self.session() as ses:
            queued = select(JobRow.study_uid)
            q = select(StudyRow.uid).where(
                (StudyRow.source == source) & StudyRow.uid.not_in(queued)
            )
            return list(ses.scalars(q))

    # jobs --------------------------------------------------------------------------------
    def submit(
        self, study_uid: str, packages: Sequence[str], content_digest: str
    ) -> tuple[JobRow, bool]:
        """Queue an analysis; the same study content with the same packages is queued once.

        Returns the job and whether it is new.  A *failed* duplicate is queued again.
        """
        key = ",".join(sorted(set(packages)))
        where = (
            (JobRow.study_uid == study_uid)
            & (JobRow.packages_key == key)
            & (JobRow.content_digest == content_digest)
        )
        for _ in range(2):
            with self.session() as ses:
                job = ses.scalars(select(JobRow).where(where)).first()
                if job is not None:
                    if job.state == JobState.FAILED:
                        job.state, job.error, job.attempts = JobState.QUEUED, "", 0
                    return job, False
            try:
                with self.session() as ses:
                    job = JobRow(
                        id=uuid.uuid4().hex,
                        study_uid=study_uid,
                        packages_key=key,
                        content_digest=content_digest,
                    )
                    ses.add(job)
                return job, True
            except IntegrityError:  # a concurrent submit won the race: return its job
                continue
        raise NotFoundError(f"study {study_uid}", "job could not be created")  # pragma: no cover

    def get_job(self, job_id: str) -> JobRow:
        """The job row; :class:`NotFoundError` if unknown."""
        with self.session() as ses:
            row = ses.get(JobRow, job_id)
        if row is None:
            raise NotFoundError(f"job {job_id}", "does not exist")
        return row

    def jobs_for(self, study_uid: str) -> list[JobRow]:
        """The study's jobs, newest first."""
        with self.session() as ses:
            q = select(JobRow).where(JobRow.study_uid == study_uid).order_by(JobRow.created.desc())
            return list(ses.scalars(q))

    def list_jobs(self, state: str | None = None, limit: int = 200) -> list[JobRow]:
        """Jobs, newest first, optionally in one state."""
        with self.session() as ses:
            q = select(JobRow)
            if state:
                q = q.where(JobRow.state == state)
            return list(ses.scalars(q.order_by(JobRow.created.desc()).limit(limit)))

    def claim(self, worker: str = "") -> JobRow | None:
        """Mark the oldest queued job running for ``worker`` and return it (None: queue empty).

        On PostgreSQL one ``SELECT ... FOR UPDATE SKIP LOCKED`` transaction: concurrent
        workers each lock a different queued row without waiting for each other.  SQLite has
        one writer at a time: a conditional ``UPDATE ... WHERE state = 'queued'``, retried when
        another worker took the row first.
        """
        if self.engine.dialect.name == "postgresql":
            return self._claim_skip_locked(worker)
        while True:
            with self.session() as ses:
                q = select(JobRow.id).where(JobRow.state == JobState.QUEUED)
                job_id = ses.scalars(q.order_by(JobRow.created).limit(1)).first()
            if job_id is None:
                return None
            with self.session() as ses:
                res = ses.execute(
                    update(JobRow)
                    .where((JobRow.id == job_id) & (JobRow.state == JobState.QUEUED))
                    .values(**self._running(worker))
                )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                return self.get_job(job_id)

    @staticmethod
    def _running(worker: str) -> dict[str, Any]:
        stamp = now()
        return {
            "state": JobState.RUNNING,
            "started": stamp,
            "heartbeat": stamp,
            "worker": worker,
            "attempts": JobRow.attempts + 1,
        }

    def _claim_skip_locked(self, worker: str) -> JobRow | None:
        with self.session() as ses:
            q = (
                select(JobRow.id)
                .where(JobRow.state == JobState.QUEUED)
                .order_by(JobRow.created)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            job_id = ses.scalars(q).first()
            if job_id is None:
                return None
            ses.execute(update(JobRow).where(JobRow.id == job_id).values(**self._running(worker)))
        return self.get_job(job_id)

    def beat(self, job_id: str, worker: str) -> bool:
        """Renew the heartbeat of ``worker``'s running job; False if it is no longer theirs."""
        with self.session() as ses:
            res = ses.execute(
                update(JobRow)
                .where(
                    (JobRow.id == job_id)
                    & (JobRow.worker == worker)
                    & (JobRow.state == JobState.RUNNING)
                )
                .values(heartbeat=now())
            )
        return res.rowcount == 1  # type: ignore[attr-defined]

    def finish(
        self, job_id: str, *, error: str = "", worker: str | None = None, **fields: Any
    ) -> bool:
        """Mark a job done (or failed with ``error``) and store result fields.

        With ``worker``, only while that worker still holds the job (a worker presumed dead
        whose job was requeued cannot overwrite the new attempt).  Returns whether it did.
        """
        state = JobState.FAILED if error else JobState.DONE
        where = JobRow.id == job_id
        if worker is not None:
            where = where & (JobRow.worker == worker) & (JobRow.state == JobState.RUNNING)
        with self.session() as ses:
            res = ses.execute(
                update(JobRow)
                .where(where)
                .values(state=state, error=error, finished=now(), **fields)
            )
        return res.rowcount == 1  # type: ignore[attr-defined]

    def set_delivery(self, job_id: str, text: str) -> None:
        """Record what happened when the results were sent on."""
        with self.session() as ses:
            ses.execute(update(JobRow).where(JobRow.id == job_id).values(delivery=text))

    def recover(self, max_attempts: int, lease_s: float | None = None) -> list[str]:
        """Requeue running jobs whose heartbeat is older than ``lease_s`` (None: every one).

        A job that already used ``max_attempts`` attempts fails instead (a study that kills
        its worker every time must not loop forever).  Returns the ids it touched.
        """
        where = JobRow.state == JobState.RUNNING
        if lease_s is not None:
            where = where & (JobRow.heartbeat < now() - dt.timedelta(seconds=lease_s))
        with self.session() as ses:
            rows = list(ses.scalars(select(JobRow).where(where)))
            for row in rows:
                if row.attempts >= max_attempts:
                    row.state = JobState.FAILED
                    row.error = f"the worker stopped {row.attempts} times while running this job"
                    row.finished = now()
                else:
                    row.state = JobState.QUEUED
                row.worker = ""
            return [r.id for r in rows]

    # workers -----------------------------------------------------------------------------
    def worker_beat(self, worker: str, *, host: str, pid: int, job_id: str = "") -> None:
        """Record that ``worker`` is alive (busy with ``job_id``, or idle when empty)."""
        with self.session() as ses:
            row = ses.get(WorkerRow, worker)
            if row is None:
                row = WorkerRow(id=worker, host=host, pid=pid)
                ses.add(row)
            row.state, row.job_id, row.heartbeat = ("busy" if job_id else "idle"), job_id, now()

    def forget_worker(self, worker: str) -> None:
        """Remove a stopping worker's row."""
        with self.session() as ses:
            ses.execute(delete(WorkerRow).where(WorkerRow.id == worker))

    def prune_workers(self, older_than_s: float) -> int:
        """Remove the rows of workers silent for longer than ``older_than_s``; returns how many."""
        cutoff = now() - dt.timedelta(seconds=older_than_s)
        with self.session() as ses:
            res = ses.execute(delete(WorkerRow).where(WorkerRow.heartbeat < cutoff))
        return int(res.rowcount)  # type: ignore[attr-defined]

    def live_workers(self, within_s: float) -> list[WorkerRow]:
        """Workers whose heartbeat is younger than ``within_s``."""
        cutoff = now() - dt.timedelta(seconds=within_s)
        with self.session() as ses:
            return list(ses.scalars(select(WorkerRow).where(WorkerRow.heartbeat >= cutoff)))

    def queue_depth(self) -> dict[str, int]:
        """How many jobs are queued and running (one query; raises when the store is down)."""
        with self.session() as ses:
            ses.execute(text("SELECT 1"))
            q = (
                select(JobRow.state, func.count())
                .where(JobRow.state.in_([JobState.QUEUED, JobState.RUNNING]))
                .group_by(JobRow.state)
            )
            counts = {str(state): int(n) for state, n in ses.execute(q)}
        return {"queued": counts.get("queued", 0), "running": counts.get("running", 0)}

    # feedback ----------------------------------------------------------------------------
    def set_feedback(
        self,
        job_id: str,
        index: int,
        code: str,
        verdict: str,
        username: str,
        comment: str,
        *,
        model_id: str = "",
        ai_positive: bool | None = None,
    ) -> None:
        """Store (or replace) one reviewer's verdict on one finding."""
        with self.session() as ses:
            q = select(FeedbackRow).where(
                (FeedbackRow.job_id == job_id)
                & (FeedbackRow.finding_index == index)
                & (FeedbackRow.username == username)
            )
            row = ses.scalars(q).first()
            if row is None:
                row = FeedbackRow(job_id=job_id, finding_index=index, username=username)
                ses.add(row)
            row.finding_code, row.verdict, row.comment, row.time = code, verdict, comment, now()
            row.model_id, row.ai_positive = model_id, ai_positive

    def all_feedback(self) -> list[FeedbackRow]:
        """Every verdict stored."""
        with self.session() as ses:
            return list(ses.scalars(select(FeedbackRow)))

    def feedback_for(self, job_id: str) -> list[FeedbackRow]:
        """Every verdict stored for a job."""
        with self.session() as ses:
            q = select(FeedbackRow).where(FeedbackRow.job_id == job_id)
            return list(ses.scalars(q.order_by(FeedbackRow.finding_index)))
