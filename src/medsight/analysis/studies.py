"""One report per study, never mixing patients: split what a path holds into studies.

A folder handed to ``medsight analyze`` may hold several studies of several patients.  Each
DICOM study (StudyInstanceUID) becomes its own group with its own report, SR/SEG set and FHIR
Bundle.  A file without identity (PNG, JPEG, NIfTI) is a study of its own: nothing says two
such files show the same patient, so they are never reported together.

A group whose series disagree on the patient (two PatientIDs or names under one
StudyInstanceUID, or files of two patients in one series) is *not analysed*: the report would
name the wrong patient for some of its findings.  Its ``problem`` says why.

Examples
--------
>>> from pathlib import Path
>>> from medsight.io.study import SeriesEntry, Study
>>> a = SeriesEntry("a.png", "OT", "a.png", [], path=Path("a.png"))
>>> b = SeriesEntry("b.png", "OT", "b.png", [], path=Path("b.png"))
>>> [g.folder for g in split_studies(Study(Path("."), [a, b], []))]  # named by file key
['a.png', 'b.png']
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict

from medsight.io.study import SeriesEntry, Study

__all__ = ["StudyGroup", "slug", "split_studies"]


@dataclasses.dataclass(frozen=True)
class StudyGroup:
    """The series of one study (or one file), with who it belongs to."""

    folder: str  # sub-folder name for its outputs (no patient data in it)
    study: Study
    study_uid: str
    patient_id: str
    patient_name: str
    problem: str | None = None  # set: the group must not be analysed

    @property
    def label(self) -> str:
        """How the group is named in messages and the index."""
        if self.study_uid:
            return f"study {self.study_uid} (patient {self.patient_id or 'unknown'})"
        return f"file {self.folder}"


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (letters, digits, ``_.-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _identity(entry: SeriesEntry) -> tuple[str, str]:
    if entry.dicom is None:
        return "", ""
    hdr = entry.dicom.header
    return str(hdr.get("PatientID", "") or ""), str(hdr.get("PatientName", "") or "")


def _conflict(entries: list[SeriesEntry]) -> str | None:
    ids = {_identity(e)[0] for e in entries}
    names = {_identity(e)[1] for e in entries} - {""}
    for e in entries:
        if e.dicom is not None and len(e.dicom.identities) > 1:
            shown = ", ".join(pid or "(none)" for pid, _ in e.dicom.identities)
            return (
                f"series {e.description or e.key} mixes files of several patients or studies "
                f"(PatientID {shown}); not analysed: a report must name one patient"
            )
    if len(ids) > 1:
        shown = ", ".join(sorted(i or "(none)" for i in ids))
        return (
            f"its series name {len(ids)} different patients (PatientID {shown}) under one "
            "StudyInstanceUID; not analysed: a report must name one patient"
        )
    if len(names) > 1:
        return (
            f"its series name {len(names)} different patient names under one PatientID; not "
            "analysed: a report must name one patient"
        )
    return None


def split_studies(study: Study) -> list[StudyGroup]:
    """The studies in ``study`` (in the order first met), each with its identity check.

    Bad files stay with the first group (they belong to no known study), so they are still
    reported.
    """
    by_uid: dict[str, list[SeriesEntry]] = defaultdict(list)
    order: list[str] = []
    for entry in study:
        if entry.dicom is not None:
            key = "dicom:" + (entry.study_instance_uid or f"(no study UID) {entry.patient_id}")
        else:
            key = "file:" + entry.key
        if key not in by_uid:
            order.append(key)
        by_uid[key].append(entry)
    groups = []
    used: set[str] = set()
    for n, key in enumerate(order):
        entries = by_uid[key]
        first = entries[0]
        pid, name = _identity(first)
        if first.dicom is not None:
            uid = first.study_instance_uid
            date = str(first.dicom.header.get("StudyDate", "") or "")
            folder = slug(f"study_{date}_{uid[-12:]}" if uid else f"study_{n + 1}")
        else:
            uid = ""
            folder = slug(first.key)
        while folder in used:
            folder += "_"
        used.add(folder)
        sub = Study(root=study.root, series=entries, bad_files=study.bad_files if n == 0 else [])
        groups.append(StudyGroup(folder, sub, uid, pid, name, _conflict(entries)))
    return groups
