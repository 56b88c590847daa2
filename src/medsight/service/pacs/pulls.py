"""Pull jobs: retrieve a study from a DIMSE PACS (C-MOVE) in the background and follow it.

A C-MOVE can take minutes, and the study does not come back on the request: the PACS sends it
to medsight's C-STORE SCP (:class:`~medsight.service.pacs.dimse.StoreSCP`).
:func:`start_pull` checks the settings and that the PACS holds the study (C-FIND), then runs
the move in a thread and answers at once with a :class:`PullOut`; ``GET
/api/pacs/pulls/{id}`` follows it through its states:

``moving``
    the PACS is sending; the sub-operation counts so far.
``receiving``
    the move completed; waiting for the SCP to record the study and, ``dimse_settle_s`` after
    its last instance, queue it by the routing rules.
``done``
    the SCP queued the study (``job``), or no routing rule matches it (no job: it is on the
    worklist as new, as any study received over C-STORE).
``failed``
    ``error`` names the study and the counts; what did arrive stays stored.

``received`` counts the study's instances medsight stored since the pull began, whatever the
PACS reports (Orthanc, for one, reports no counts when it breaks a move off).

The pull never queues the study itself: the SCP's settle logic does, once, and the pull reports
the job the SCP queued for the study's current content.  A pull's progress lives in memory
only; after a restart it is gone, but the instances are stored and the SCP queues studies it
received and never queued when it starts again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from medsight.core.errors import InvalidInputError, MedsightError
from medsight.service.errors import DeliveryError, NotFoundError
from medsight.service.pacs.qr import (
    MoveCounts,
    MoveError,
    c_move_study,
    check_move_settings,
    find_study,
)
from medsight.service.schemas import JobOut

if TYPE_CHECKING:
    from medsight.service.deps import Services
    from medsight.service.models import JobRow, StudyRow
    from medsight.service.settings import Urgency

__all__ = ["PullOut", "PullState", "Pulls", "start_pull"]

log = logging.getLogger(__name__)

#: Seconds to wait for the SCP to record a moved study, and to queue it past its settle time.
RECEIVE_TIMEOUT_S = 60.0
QUEUE_GRACE_S = 30.0
_POLL_S = 0.1


class PullState(StrEnum):
    """Where a pull job is."""

    MOVING = "moving"
    RECEIVING = "receiving"
    DONE = "done"
    FAILED = "failed"


class PullOut(BaseModel):
    """A pull job as the API shows it (``kind`` tells it from an analysis job)."""

    kind: Literal["pull"] = "pull"
    id: str
    source: str = "dimse"
    study_uid: str
    state: PullState
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int | None = None
    received: int = 0
    job: JobOut | None = None
    message: str = ""
    error: str = ""
    created: dt.datetime
    finished: dt.datetime | None = None


@dataclasses.dataclass
class _Pull:
    id: str
    study_uid: str
    state: PullState = PullState.MOVING
    counts: MoveCounts = dataclasses.field(default_factory=MoveCounts)
    job_id: str | None = None
    received: int = 0
    started: float = dataclasses.field(default_factory=time.time)
    message: str = ""
    error: str = ""
    created: dt.datetime = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.UTC))
    finished: dt.datetime | None = None


class Pulls:
    """The app's pull jobs, newest ``keep`` kept; safe to use from many threads."""

    def __init__(self, keep: int = 200) -> None:
        self._keep = keep
        self._pulls: OrderedDict[str, _Pull] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, study_uid: str) -> _Pull:
        """A new pull job of ``study_uid``, in state ``moving``."""
        pull = _Pull(id=uuid.uuid4().hex, study_uid=study_uid)
        with self._lock:
            self._pulls[pull.id] = pull
            while len(self._pulls) > self._keep:
                self._pulls.popitem(last=False)
        return pull

    def _set(self, pull: _Pull, **fields: object) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(pull, key, value)

    def _fail(self, pull: _Pull, error: str, **fields: object) -> None:
        self._set(
            pull, state=PullState.FAILED, error=error, finished=dt.datetime.now(dt.UTC), **fields
        )

    def out(self, services: Services, pull_id: str) -> PullOut:
        """The pull job ``pull_id`` as the API shows it.

        Raises
        ------
        NotFoundError
            No such pull (or it is older than the ``keep`` newest, or from before a restart).
        """
        with self._lock:
            pull = self._pulls.get(pull_id)
            if pull is None:
                raise NotFoundError(f"pull {pull_id}", "is unknown (pulls live until a restart)")
            snap = dataclasses.replace(pull, counts=dataclasses.replace(pull.counts))
        job = None
        if snap.job_id is not None:
            job = JobOut.of(services.store.get_job(snap.job_id))
        return PullOut(
            id=snap.id,
            study_uid=snap.study_uid,
            state=snap.state,
            completed=snap.counts.completed,
            failed=snap.counts.failed,
            warning=snap.counts.warning,
            remaining=snap.counts.remaining,
            received=snap.received,
            job=job,
            message=snap.message,
            error=snap.error,
            created=snap.created,
            finished=snap.finished,
        )

    def run(
        self,
        services: Services,
        pull: _Pull,
        urgency: Urgency | None,
        on_end: Callable[[PullOut], None],
    ) -> None:
        """Move, wait for the SCP to record and queue the study; ``on_end`` gets the result."""
        try:
            counts = c_move_study(
                services.settings,
                pull.study_uid,
                lambda c: self._set(pull, counts=dataclasses.replace(c)),
            )
            received = _received(services, pull.study_uid, pull.started)
            self._set(pull, counts=counts, received=received, state=PullState.RECEIVING)
            row = _wait_recorded(services, pull.study_uid)
            if urgency is not None:
                services.store.upsert_study(pull.study_uid, urgency=urgency.value)
            job, message = _wait_queued(services, row)
            self._set(
                pull,
                job_id=job.id if job is not None else None,
                message=message,
                state=PullState.DONE,
                finished=dt.datetime.now(dt.UTC),
            )
        except MoveError as err:
            received = _received(services, pull.study_uid, pull.started)
            error = str(err)
            if received:  # then the destination is known: say what arrived, not the hint
                error = f"{err.where}: {err.problem}; {received} instance(s) of it arrived here "
                error += "and are kept"
            self._fail(pull, error, counts=err.counts, received=received)
        except MedsightError as err:
            self._fail(pull, str(err))
        except Exception as exc:
            log.exception("pull %s of study %s failed", pull.id, pull.study_uid)
            error = f"study {pull.study_uid}: the pull failed unexpectedly ({exc})"
            self._fail(pull, error)
        try:
            on_end(self.out(services, pull.id))
        except Exception:
            log.exception("reporting pull %s failed", pull.id)


def _files(services: Services, uid: str) -> int:
    from medsight.service.worker import study_dir

    folder = study_dir(services.settings, uid)
    return sum(1 for p in folder.rglob("*.dcm") if not p.name.startswith("."))


def _received(services: Services, uid: str, since: float) -> int:
    """Instances of study ``uid`` stored (written or rewritten) since ``since`` (epoch s)."""
    from medsight.service.worker import study_dir

    folder = study_dir(services.settings, uid)
    return sum(
        1
        for p in folder.rglob("*.dcm")
        if not p.name.startswith(".") and p.stat().st_mtime >= since - 0.01
    )


def _wait_recorded(services: Services, uid: str) -> StudyRow:
    """The study row once the SCP has recorded every instance stored (its association ended)."""
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    while True:
        try:
            row = services.store.get_study(uid)
        except NotFoundError:
            row = None
        stored = _files(services, uid)
        if row is not None and stored and row.n_files == stored:
            return row
        if time.monotonic() > deadline:
            raise DeliveryError(
                f"study {uid}",
                f"moved, but the C-STORE SCP has not recorded it within {RECEIVE_TIMEOUT_S:.0f} "
                f"s ({stored} instance(s) stored)",
            )
        time.sleep(_POLL_S)


def _wait_queued(services: Services, row: StudyRow) -> tuple[JobRow | None, str]:
    """The job the SCP queued for the study's content by its routing rule (None: no rule)."""
    from medsight.service.ingest import StudyFacts, content_digest
    from medsight.service.pacs.rules import match
    from medsight.service.worker import study_dir

    facts = StudyFacts(
        uid=row.uid,
        patient_id=row.patient_id,
        modalities=set(filter(None, row.modalities.split(","))),
        description=row.description,
        body_part=row.body_part,
    )
    rule = match(services.settings.rules, facts)  # the rule the SCP's settle applies
    if rule is None:
        return None, (
            "received; no routing rule matches it, so it is on the worklist, not queued "
            f"(POST /api/studies/{row.uid}/jobs queues it)"
        )
    key = ",".join(sorted({p.id for p in services.catalog.resolve(rule.packages)}))
    digest = content_digest(study_dir(services.settings, row.uid))
    wait = services.settings.dimse_settle_s + QUEUE_GRACE_S
    deadline = time.monotonic() + wait
    while True:
        for job in services.store.jobs_for(row.uid):
            if job.packages_key == key and job.content_digest == digest:
                return job, "received and queued by the routing rules"
        if time.monotonic() > deadline:
            raise DeliveryError(
                f"study {row.uid}",
                f"received, but the C-STORE SCP did not queue it within {wait:.0f} s; it stays "
                "stored and is queued when the service starts again",
            )
        time.sleep(_POLL_S)


def start_pull(
    services: Services,
    pulls: Pulls,
    study_uid: str,
    *,
    packages: list[str],
    urgency: Urgency | None,
    on_end: Callable[[PullOut], None],
) -> PullOut:
    """Check, then C-MOVE ``study_uid`` from ``dimse_qr_peer`` in a background thread.

    Raises
    ------
    InvalidInputError
        ``packages`` were given (the routing rules choose them for a study arriving over
        DIMSE), or a setting C-MOVE needs is missing
        (:func:`~medsight.service.pacs.qr.check_move_settings`).
    NotFoundError
        The PACS holds no such study.
    DeliveryError
        The PACS cannot be reached or refused the C-FIND.
    """
    if packages:
        raise InvalidInputError(
            "packages",
            "a study retrieved over DIMSE arrives at the C-STORE SCP and is queued by the "
            "routing rules (rules), not by the request",
            hint=f"leave packages empty; POST /api/studies/{study_uid}/jobs queues other ones",
        )
    peer = check_move_settings(services.settings)
    if find_study(services.settings, study_uid) is None:
        raise NotFoundError(
            f"study {study_uid}", f"is not on the PACS {peer} (C-FIND by StudyInstanceUID)"
        )
    pull = pulls.add(study_uid)
    thread = threading.Thread(
        target=pulls.run,
        args=(services, pull, urgency, on_end),
        name=f"pacs-pull-{pull.id[:8]}",
        daemon=True,
    )
    thread.start()
    return pulls.out(services, pull.id)
