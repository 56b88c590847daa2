"""Response bodies of the REST API."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from medsight.service.models import JobRow
from medsight.service.settings import Urgency

__all__ = ["FeedbackIn", "JobOut", "SubmitIn", "TokenOut", "UploadOut"]


class TokenOut(BaseModel):
    """A bearer token."""

    access_token: str
    token_type: str = "bearer"


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: str
    study_uid: str
    packages: list[str]
    state: str
    error: str
    attempts: int
    created: dt.datetime
    started: dt.datetime | None
    finished: dt.datetime | None
    flagged: bool
    suspicion: float | None  # None: no probability to rank by (worklist.NO_SUSPICION stored)
    flag_urgency: str = ""
    flag_reason: str = ""
    unknown_significance: bool = False
    impression: str
    delivery: str
    existing: bool = False

    @classmethod
    def of(cls, row: JobRow, *, existing: bool = False) -> JobOut:
        """From a store row."""
        return cls(
            id=row.id,
            study_uid=row.study_uid,
            packages=row.packages_key.split(","),
            state=row.state,
            error=row.error,
            attempts=row.attempts,
            created=row.created,
            started=row.started,
            finished=row.finished,
            flagged=row.flagged,
            suspicion=row.ranked_suspicion,
            flag_urgency=row.flag_urgency,
            flag_reason=row.flag_reason,
            unknown_significance=row.unknown_significance,
            impression=row.impression,
            delivery=row.delivery,
            existing=existing,
        )


class UploadOut(BaseModel):
    """What an upload stored and queued."""

    studies: list[str]
    stored: int
    skipped: list[str]
    jobs: list[JobOut]


class SubmitIn(BaseModel):
    """A request to analyse a study the service holds (or pulls from the PACS)."""

    study_uid: str = Field(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)
    packages: list[str] = Field(default_factory=list)
    urgency: Urgency | None = None


class FeedbackIn(BaseModel):
    """A reviewer's verdict on one finding."""

    verdict: str = Field(pattern="^(confirm|reject)$")
    comment: str = Field("", max_length=2000)
