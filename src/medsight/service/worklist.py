"""The triage worklist: flagged studies first, then by urgency, AI suspicion and arrival.

Flagged-first reprioritisation is what shortened report turnaround for critical findings in
published deployments; unflagged studies keep first-come order within an urgency.

Examples
--------
>>> import datetime as dt
>>> t = dt.datetime(2026, 1, 1)
>>> items = [
...     WorklistItem("a", "CT", "routine", "done", False, 0.2, t, None, False),
...     WorklistItem("b", "CT", "stat", "done", False, 0.1, t, None, False),
...     WorklistItem("c", "MR", "routine", "done", True, 0.9, t, None, False),
... ]
>>> [i.study_uid for i in sorted(items, key=triage_key)]
['c', 'b', 'a']
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select

from medsight.service.models import FeedbackRow, JobRow, StudyRow
from medsight.service.settings import Urgency
from medsight.service.store import Store

__all__ = ["WorklistItem", "triage_key", "worklist"]

_URGENCY_RANK = {u.value: i for i, u in enumerate(Urgency)}


@dataclasses.dataclass(frozen=True)
class WorklistItem:
    """One row of the worklist (the study and its latest job)."""

    study_uid: str
    modalities: str
    urgency: str
    status: str
    flagged: bool
    suspicion: float
    received: dt.datetime
    job_id: str | None
    reviewed: bool
    patient_id: str = ""
    description: str = ""
    impression: str = ""


def triage_key(item: WorklistItem) -> tuple[int, int, float, dt.datetime]:
    """Sort key: flagged, then urgency (stat first), then suspicion, then oldest first."""
    return (
        0 if item.flagged else 1,
        -_URGENCY_RANK.get(item.urgency, 0),
        -item.suspicion,
        item.received,
    )


def worklist(
    store: Store, *, modality: str | None = None, status: str | None = None
) -> list[WorklistItem]:
    """Every study in triage order, optionally only one modality or job status.

    ``status`` is a job state (queued, running, done, failed) or ``reviewed`` / ``unreviewed``.
    """
    with store.session() as ses:
        studies = list(ses.scalars(select(StudyRow)))
        jobs: dict[str, JobRow] = {}
        for job in ses.scalars(select(JobRow).order_by(JobRow.created)):
            jobs[job.study_uid] = job  # the latest wins
        reviewed = set(ses.scalars(select(FeedbackRow.job_id).distinct()))
    items = []
    for st in studies:
        job = jobs.get(st.uid)
        item = WorklistItem(
            study_uid=st.uid,
            modalities=st.modalities,
            urgency=st.urgency,
            status=job.state if job else "new",
            flagged=bool(job and job.flagged),
            suspicion=job.suspicion if job else 0.0,
            received=st.received,
            job_id=job.id if job else None,
            reviewed=bool(job and job.id in reviewed),
            patient_id=st.patient_id,
            description=st.description,
            impression=job.impression if job else "",
        )
        if modality and modality.upper() not in item.modalities.upper().split(","):
            continue
        if status == "reviewed" and not item.reviewed:
            continue
        if status == "unreviewed" and item.reviewed:
            continue
        if status and status not in ("reviewed", "unreviewed") and item.status != status:
            continue
        items.append(item)
    return sorted(items, key=triage_key)
