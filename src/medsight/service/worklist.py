"""The triage worklist: by priority, then AI flags, AI suspicion and arrival.

A study's findings are triaged by what their labels mean clinically
(:mod:`medsight.core.significance`), not by which class a model happened to predict:

* **flagged**: a present finding of an *actionable* label (malignant, pneumonia, referable
  retinopathy).  The reason is stored and shown ("flagged: Malignant (probability 0.91,
  urgent)").
* **unknown significance**: a present finding of a label whose meaning is indeterminate or not
  stated (packages made before labels carried their meaning).  Never dismissed as normal: shown
  with its reason, ranked below flagged studies and above studies without findings.
* normal, benign and anatomy findings never flag and add no suspicion.

The order is: **priority** (the higher of the referrer's order urgency and the urgency of the
flagged findings: an urgent malignancy on a routine order is read with the urgent studies),
then flagged before unknown significance before the rest, then **suspicion** (the highest
probability among findings that are not normal / benign / anatomy; none, shown as a dash, when
no such finding has a probability or the study is not analysed yet), then oldest first.
Priority comes before the flag on purpose: a flag of *routine* urgency (an adrenal incidentaloma,
moderate retinopathy) does not jump a study the referrer ordered stat, while an urgent finding
lifts its study into the urgent tier, where flagged-first reprioritisation (what shortened report
turnaround for critical findings in published deployments) applies.

Examples
--------
>>> import datetime as dt
>>> t = dt.datetime(2026, 1, 1)
>>> items = [
...     WorklistItem("a", "CT", "routine", "done", False, 0.2, t, None, False),
...     WorklistItem("b", "CT", "stat", "done", False, 0.1, t, None, False),
...     WorklistItem("c", "MR", "routine", "done", True, 0.9, t, None, False,
...                  flag_urgency="urgent"),
...     WorklistItem("d", "CT", "urgent", "done", False, 0.0, t, None, False),
...     WorklistItem("e", "US", "routine", "done", True, 0.6, t, None, False,
...                  flag_urgency="routine"),
... ]
>>> [(i.study_uid, i.priority) for i in sorted(items, key=triage_key)]
[('b', 'stat'), ('c', 'urgent'), ('d', 'urgent'), ('e', 'routine'), ('a', 'routine')]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from sqlalchemy import select

from medsight.core.findings import Finding, FindingKind
from medsight.core.operating import operating_text
from medsight.core.significance import Significance, Urgency, triage_urgency
from medsight.models.reliability import format_probability
from medsight.reporting.report import NO_MODEL_APPLIES
from medsight.service.models import NO_SUSPICION, FeedbackRow, JobRow, JobState, StudyRow
from medsight.service.store import Store

__all__ = [
    "NO_SUSPICION",
    "Triage",
    "WorklistItem",
    "assess",
    "job_columns",
    "triage_key",
    "worklist",
]

_URGENCY_RANK = {u.value: u.rank for u in Urgency}


@dataclasses.dataclass(frozen=True)
class Triage:
    """What a study's findings mean for the worklist (stored on its job)."""

    flagged: bool = False
    flag_urgency: str = ""  # the highest urgency of the flagged findings; "" when not flagged
    flag_reason: str = ""  # why it is flagged / has findings of unknown significance
    unknown_significance: bool = False
    suspicion: float = 0.0


def _describe(f: Finding, urgency: Urgency | None = None) -> str:
    p = format_probability(f.probability) if f.probability is not None else None
    # the decision beside its operating point: "probability 0.06, positive at the ... 0.05"
    parts = [operating_text(f.probability, f.threshold, f.positive) or "segmented"]
    if f.kind == FindingKind.DETECTION and p is not None:  # a localised lesion
        parts = [f"detected, score {p}"]
    if urgency is not None:
        parts.append(urgency.value)
    return f"{f.finding.meaning or f.note} ({', '.join(parts)})"


def _counted(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that add suspicion: not normal, benign or anatomy."""
    return [f for f in findings if f.significance is None or not f.significance.dismissible]


def job_columns(findings: Iterable[Finding]) -> dict[str, object]:
    """The triage of ``findings`` as the job's store columns (what the worker writes).

    The suspicion column is :data:`NO_SUSPICION` when no finding that adds suspicion has a
    probability (every model withheld or skipped, segmentation only, benign only): the
    worklist then shows a dash, not a probability the AI never gave.

    Examples
    --------
    >>> job_columns([])["suspicion"] == NO_SUSPICION
    True
    """
    findings = list(findings)
    columns: dict[str, object] = dataclasses.asdict(assess(findings))
    if not any(f.probability is not None for f in _counted(findings)):
        columns["suspicion"] = NO_SUSPICION
    return columns


def assess(findings: Iterable[Finding]) -> Triage:
    """Triage a study's findings by the clinical meaning of their labels.

    Examples
    --------
    >>> from medsight.core.codes import Code
    >>> def f(name, p, positive, significance=None, urgency=None):
    ...     return Finding(Code(name, "99X", name), "m", "1", kind="classification",
    ...                    probability=p, positive=positive, significance=significance,
    ...                    urgency=urgency)
    >>> assess([f("Benign", 0.97, True, "benign")]) == Triage()  # no flag, no suspicion
    True
    >>> t = assess([f("Malignant", 0.91, True, "actionable", "urgent"), f("c1", 0.7, True)])
    >>> t.flagged, t.flag_urgency, t.suspicion
    (True, 'urgent', 0.91)
    >>> t.flag_reason
    'flagged: Malignant (probability 0.91, urgent); unknown significance: c1 (probability 0.70)'
    """
    findings = list(findings)
    flagged = [
        (f, triage_urgency(f.significance, f.urgency) or Urgency.URGENT)
        for f in findings
        if f.actionable
    ]
    flagged.sort(key=lambda fu: (-fu[1].rank, -(fu[0].probability or 0.0)))  # most urgent first
    unknown = [
        f for f in findings if f.present and f.significance in (None, Significance.INDETERMINATE)
    ]
    counted = _counted(findings)
    reasons = []
    if flagged:
        reasons.append("flagged: " + ", ".join(_describe(f, u) for f, u in flagged))
    if unknown:
        reasons.append("unknown significance: " + ", ".join(_describe(f) for f in unknown))
    return Triage(
        flagged=bool(flagged),
        flag_urgency=flagged[0][1].value if flagged else "",
        flag_reason="; ".join(reasons),
        unknown_significance=bool(unknown),
        suspicion=max((f.probability or 0.0 for f in counted), default=0.0),
    )


@dataclasses.dataclass(frozen=True)
class WorklistItem:
    """One row of the worklist (the study and its latest job)."""

    study_uid: str
    modalities: str
    urgency: str
    status: str
    flagged: bool
    suspicion: float | None  # None: no probability (not analysed yet, or none given)
    received: dt.datetime
    job_id: str | None
    reviewed: bool
    patient_id: str = ""
    description: str = ""
    impression: str = ""
    flag_urgency: str = ""
    flag_reason: str = ""
    unknown_significance: bool = False
    no_model: bool = False  # analysed, but no model applies to the study (each was skipped)
    priority: str = dataclasses.field(init=False, default="")  # max(urgency, flag_urgency)

    def __post_init__(self) -> None:
        ranked = [u for u in (self.urgency, self.flag_urgency) if u in _URGENCY_RANK]
        best = max(ranked, key=_URGENCY_RANK.__getitem__, default=self.urgency)
        object.__setattr__(self, "priority", best)


def triage_key(item: WorklistItem) -> tuple[int, int, float, dt.datetime]:
    """Sort key: priority (stat first), flagged, unknown significance, suspicion, oldest first."""
    return (
        -_URGENCY_RANK.get(item.priority, 0),
        0 if item.flagged else 1 if item.unknown_significance else 2,
        -(NO_SUSPICION if item.suspicion is None else item.suspicion),
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
        done = job is not None and job.state == JobState.DONE
        item = WorklistItem(
            study_uid=st.uid,
            modalities=st.modalities,
            urgency=st.urgency,
            status=job.state if job else "new",
            flagged=bool(job and job.flagged),
            suspicion=job.ranked_suspicion if job is not None and done else None,
            received=st.received,
            job_id=job.id if job else None,
            reviewed=bool(job and job.id in reviewed),
            patient_id=st.patient_id,
            description=st.description,
            impression=job.impression if job else "",
            flag_urgency=job.flag_urgency if job else "",
            flag_reason=job.flag_reason if job else "",
            unknown_significance=bool(job and job.unknown_significance),
            no_model=bool(done and job and job.impression.startswith(NO_MODEL_APPLIES)),
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
