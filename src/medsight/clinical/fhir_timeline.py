"""Patient timelines from a FHIR R4 Bundle export: Patient + Observations + ImagingStudy.

Each ``ImagingStudy`` of a patient is a visit at its ``started`` date (days since the
patient's first study); each requested variable takes, at a visit, the latest ``Observation``
of that variable on or before the visit's date (last value carried forward, never from the
future; none yet = missing).  ``age`` and ``sex`` come from the Patient through
:func:`medsight.clinical.context.context_from_bundle` and its rules (an age uncertain by a
year is left out), the age computed on each visit's date.  The outcome is an Observation too
(boolean, or a yes / no code or string): the patient's latest one.

Observations are matched to a variable name by their ``code.text``, a coding's ``code`` or a
coding's ``display`` (case-insensitive): ``--features age,sex,8310-5`` or ``body temperature``.
With ``dataset=``, a visit is linked to the Case whose ``StudyInstanceUID`` attribute equals
the study's DICOM UID (``identifier`` with system ``urn:dicom:uid``, value ``urn:oid:...``), so
the image model can read it; visits without such a Case keep ``case=None``.

Examples
--------
>>> import json, tempfile, pathlib
>>> bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
...   {"resource": {"resourceType": "Patient", "id": "p1", "gender": "male",
...                 "birthDate": "1950-01-01"}},
...   {"resource": {"resourceType": "ImagingStudy", "id": "s1", "status": "available",
...                 "subject": {"reference": "Patient/p1"}, "started": "2020-03-01"}},
...   {"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
...                 "subject": {"reference": "Patient/p1"}, "code": {"text": "icu"},
...                 "effectiveDateTime": "2020-03-04", "valueBoolean": True}}]}
>>> path = pathlib.Path(tempfile.mkdtemp()) / "b.json"
>>> _ = path.write_text(json.dumps(bundle))
>>> ts = timelines_from_bundle(path, target="icu", features="age,sex")
>>> ts[0].outcome.label, ts[0].visits[0].values
(1, {'age': 70.0, 'sex': 'male'})
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsight.clinical.context import context_from_bundle
from medsight.core.errors import InvalidInputError, UnreadableFileError
from medsight.data.dataset import Dataset
from medsight.data.timeline import (
    ClinicalVariable,
    Outcome,
    PatientTimeline,
    TimelineSet,
    Visit,
    infer_variable,
    parse_binary,
    parse_features,
)

__all__ = ["timelines_from_bundle"]

_DROPPED = {"entered-in-error", "cancelled"}


def _date(text: Any) -> dt.date | None:
    if not isinstance(text, str) or len(text) < 10:
        return None  # a year or year-month is too vague to order visits by
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None


def _subject(res: dict[str, Any]) -> str | None:
    ref = (res.get("subject") or {}).get("reference")
    if isinstance(ref, str) and ref.startswith("Patient/"):
        return ref.split("/", 1)[1]
    return None


def _names(res: dict[str, Any]) -> set[str]:
    code = res.get("code") or {}
    names = {str(code.get("text", "")).lower()}
    for coding in code.get("coding") or []:
        names |= {str(coding.get("code", "")).lower(), str(coding.get("display", "")).lower()}
    return names - {""}


def _value(res: dict[str, Any]) -> Any:
    if "valueQuantity" in res:
        return (res["valueQuantity"] or {}).get("value")
    if "valueBoolean" in res:
        return "yes" if res["valueBoolean"] else "no"
    if "valueCodeableConcept" in res:
        concept = res["valueCodeableConcept"] or {}
        codings = concept.get("coding") or [{}]
        return concept.get("text") or codings[0].get("display") or codings[0].get("code")
    for key in ("valueString", "valueInteger"):
        if key in res:
            return res[key]
    return None


def _study_uid(res: dict[str, Any]) -> str | None:
    for ident in res.get("identifier") or []:
        if ident.get("system") == "urn:dicom:uid":
            return str(ident.get("value", "")).removeprefix("urn:oid:") or None
    return None


def timelines_from_bundle(
    path: str | os.PathLike[str],
    *,
    target: str,
    features: str | Sequence[str] | None = None,
    positive: str | None = None,
    dataset: Dataset | None = None,
) -> TimelineSet:
    """Timelines of every patient in a FHIR Bundle (see the module docstring).

    Raises
    ------
    UnreadableFileError
        Not a JSON Bundle.
    InvalidInputError
        No patient with an imaging study and an outcome.
    """
    where = os.fspath(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableFileError(where, f"is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise UnreadableFileError(where, "is not a FHIR Bundle")
    resources = [e.get("resource") for e in data.get("entry") or [] if isinstance(e, dict)]
    resources = [r for r in resources if isinstance(r, dict) and r.get("status") not in _DROPPED]
    patients = [r["id"] for r in resources if r.get("resourceType") == "Patient" and r.get("id")]
    studies: dict[str, list[tuple[dt.date, dict[str, Any]]]] = defaultdict(list)
    observations: dict[str, list[tuple[dt.date, set[str], Any]]] = defaultdict(list)
    for res in resources:
        pid = _subject(res)
        if pid is None:
            continue
        if res.get("resourceType") == "ImagingStudy":
            day = _date(res.get("started"))
            if day is not None:
                studies[pid].append((day, res))
        elif res.get("resourceType") == "Observation":
            day = _date(res.get("effectiveDateTime") or res.get("issued"))
            if day is not None:
                observations[pid].append((day, _names(res), _value(res)))
    requested = parse_features(features)
    by_uid = {}
    if dataset is not None:
        by_uid = {str(c.attributes.get("StudyInstanceUID")): c for c in dataset}
    excluded: Counter[str] = Counter()
    raw: list[tuple[str, list[tuple[dt.date, str | None, dict[str, Any]]], Outcome]] = []
    for pid in sorted(patients):
        obs = sorted(observations.get(pid, []), key=lambda o: o[0])
        outcome_obs = [o for o in obs if target.lower() in o[1]]
        label = parse_binary(outcome_obs[-1][2], positive) if outcome_obs else None
        visits = sorted(studies.get(pid, []), key=lambda s: s[0])
        if label is None:
            excluded["patients_without_target"] += 1
            continue
        if not visits:
            excluded["patients_without_imaging_study"] += 1
            continue
        rows = []
        for day, study in visits:
            values: dict[str, Any] = {}
            if any(n in ("age", "sex") for n, _ in requested):
                ctx = context_from_bundle(path, pid, reference_date=day)
                values["age"] = ctx.age_years
                values["sex"] = ctx.sex.value if ctx.sex is not None else None
            for name, _ in requested:
                if name in ("age", "sex"):
                    continue
                seen = [o for o in obs if name.lower() in o[1] and o[0] <= day]
                values[name] = seen[-1][2] if seen else None
            rows.append((day, _study_uid(study), values))
        raw.append((pid, rows, Outcome(label=label)))
    if not raw:
        raise InvalidInputError(where, f"no patient has an imaging study and a {target!r} value")
    variables: list[ClinicalVariable] = [
        infer_variable(name, [r[2].get(name) for _, rows, _ in raw for r in rows], kind)
        for name, kind in requested
    ]
    timelines = []
    for pid, rows, outcome in raw:
        first = rows[0][0]
        visits = tuple(
            Visit(
                f"{pid}/study-{i}" if uid is None or uid not in by_uid else by_uid[uid].case_id,
                float((day - first).days),
                {v.name: v.parse(values.get(v.name)) for v in variables},
                case=by_uid.get(uid) if uid else None,
                study_uid=uid,
            )
            for i, (day, uid, values) in enumerate(rows)
        )
        timelines.append(PatientTimeline(pid, visits, outcome))
    return TimelineSet(
        Path(where).stem,
        timelines,
        variables,
        target=target,
        time_column="ImagingStudy.started",
        excluded=dict(excluded),
    )
