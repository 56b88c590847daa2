"""The store's tables (SQLAlchemy ORM): users, tokens, studies, jobs, feedback, workers.

Job states move ``queued -> running -> done | failed``; a job row is committed before any
work on it starts, so a crash never loses a submission.  A running job carries the id of its
worker and a heartbeat the worker renews; a job whose heartbeat is older than the lease belongs
to a dead worker and goes back to the queue.  Each worker also keeps a row in ``workers``
with its own heartbeat, renewed while idle too, which readiness checks count.

The schema is created and upgraded by the Alembic revisions in
:mod:`medsight.service.migrations`; a change here needs a new revision there.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "NO_SUSPICION",
    "Base",
    "FeedbackRow",
    "JobRow",
    "JobState",
    "SegEditRow",
    "StudyRow",
    "TokenRow",
    "UserRow",
    "WorkerRow",
    "now",
]


def now() -> dt.datetime:
    """The current UTC time (naive, as SQLite stores it)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


#: The job's suspicion column when there is no probability to rank by (the column is NOT NULL:
#: a negative value, below any probability, read back as ``None`` by
#: :attr:`JobRow.ranked_suspicion`).
NO_SUSPICION = -1.0


class JobState(StrEnum):
    """Where a job is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Base(DeclarativeBase):
    """Declarative base of the service tables."""


class UserRow(Base):
    """A person or system that logs in."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    created: Mapped[dt.datetime] = mapped_column(default=now)


class TokenRow(Base):
    """A bearer token (only its sha256 is stored)."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64), default="login")
    created: Mapped[dt.datetime] = mapped_column(default=now)
    expires: Mapped[dt.datetime | None] = mapped_column(default=None)


class StudyRow(Base):
    """A study the service holds (files under ``home/studies/<uid>``)."""

    __tablename__ = "studies"
    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    modalities: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(String(256), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")
    urgency: Mapped[str] = mapped_column(String(16), default="routine")
    source: Mapped[str] = mapped_column(String(16), default="upload")
    n_files: Mapped[int] = mapped_column(default=0)
    received: Mapped[dt.datetime] = mapped_column(default=now)


class JobRow(Base):
    """One analysis of one version of a study with one set of packages."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("study_uid", "packages_key", "content_digest"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    study_uid: Mapped[str] = mapped_column(ForeignKey("studies.uid"))
    packages_key: Mapped[str] = mapped_column(Text)
    content_digest: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value, index=True)
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(default=0)
    created: Mapped[dt.datetime] = mapped_column(default=now)
    started: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished: Mapped[dt.datetime | None] = mapped_column(default=None)
    flagged: Mapped[bool] = mapped_column(default=False)
    suspicion: Mapped[float] = mapped_column(default=0.0)  # NO_SUSPICION: none to rank by
    # triage by clinical meaning (medsight.service.worklist.assess): the highest urgency of the
    # flagged findings, why the study is flagged, findings of unknown significance
    flag_urgency: Mapped[str] = mapped_column(String(16), default="")
    flag_reason: Mapped[str] = mapped_column(Text, default="")
    unknown_significance: Mapped[bool] = mapped_column(default=False)
    impression: Mapped[str] = mapped_column(Text, default="")
    delivery: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str] = mapped_column(String(128), default="")
    heartbeat: Mapped[dt.datetime | None] = mapped_column(default=None)

    @property
    def ranked_suspicion(self) -> float | None:
        """``suspicion``, or None when the job stored :data:`NO_SUSPICION`."""
        return self.suspicion if self.suspicion >= 0 else None


class FeedbackRow(Base):
    """A reviewer's verdict on one AI finding (latest per reviewer and finding counts)."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("job_id", "finding_index", "username"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    finding_index: Mapped[int] = mapped_column()
    finding_code: Mapped[str] = mapped_column(String(128), default="")
    model_id: Mapped[str] = mapped_column(String(128), default="")
    ai_positive: Mapped[bool | None] = mapped_column(default=None)
    verdict: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    username: Mapped[str] = mapped_column(String(64))
    time: Mapped[dt.datetime] = mapped_column(default=now)


class WorkerRow(Base):
    """A worker (thread or process) and when it last said it was alive."""

    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(128), default="")
    pid: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16), default="idle")  # idle | busy
    job_id: Mapped[str] = mapped_column(String(32), default="")
    started: Mapped[dt.datetime] = mapped_column(default=now)
    heartbeat: Mapped[dt.datetime] = mapped_column(default=now, index=True)


class SegEditRow(Base):
    """One clinician-edited version of a job's segmentation (medsight.service.whatif.segedit).

    Version 1 is the model's own mask and SEG in the job's results (no row); each edit adds
    the next version, derived from ``parent_version``, with who, when and what (the
    operations as JSON) and the files written under ``results/<job>/edits/``.
    """

    __tablename__ = "seg_edits"
    __table_args__ = (UniqueConstraint("job_id", "package_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    package_id: Mapped[str] = mapped_column(String(160))
    version: Mapped[int] = mapped_column()
    parent_version: Mapped[int] = mapped_column()
    label: Mapped[int] = mapped_column()
    operations: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, default="")
    username: Mapped[str] = mapped_column(String(64))
    time: Mapped[dt.datetime] = mapped_column(default=now)
    changed_voxels: Mapped[int] = mapped_column(default=0)
    measurements: Mapped[str] = mapped_column(Text, default="")
    mask_file: Mapped[str] = mapped_column(Text)
    seg_file: Mapped[str] = mapped_column(Text, default="")
    seg_series_uid: Mapped[str] = mapped_column(String(64), default="")
    seg_sop_uid: Mapped[str] = mapped_column(String(64), default="")
    series_number: Mapped[int | None] = mapped_column(default=None)
