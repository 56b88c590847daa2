"""Patient timelines: a patient's imaging visits in time order, clinical variables, outcome.

A :class:`PatientTimeline` groups the Cases of one patient, orders them by acquisition time
(a day-offset column such as the COVID-19 X-ray set's ``offset``, or dates such as DICOM
``StudyDate`` / ``AcquisitionDate`` turned into days since the patient's first visit), keeps
the clinical variables of each visit typed (:class:`ClinicalVariable`: numeric, binary or
categorical; a missing value stays missing, never imputed here) and holds the outcome: a binary
target or a time-to-event pair ``(time, event)``.

:func:`timelines_from_dataset` builds a :class:`TimelineSet` from any Dataset (the CSV manifest
adapter gives one Case per row with the other columns as attributes).  Rows and patients
without a usable target are left out and counted (:attr:`TimelineSet.excluded`), never a
crash.  The FHIR Bundle reader is :func:`medsight.clinical.fhir_timeline.timelines_from_bundle`
(it lives above ``data`` in the layering because it reuses the clinical FHIR parsers).

Examples
--------
>>> from medsight.core import Case
>>> from medsight.data import Dataset
>>> cases = [Case("a", patient_id="p1", attributes={"day": "3", "age": "61", "died": "Y"}),
...          Case("b", patient_id="p1", attributes={"day": "0", "age": "61", "died": "Y"}),
...          Case("c", patient_id="p2", attributes={"day": "1", "age": None, "died": None})]
>>> ts = timelines_from_dataset(Dataset("toy", cases), target="died", features="age",
...                             time_column="day")
>>> [(t.patient_id, [v.case_id for v in t.visits], t.outcome.label) for t in ts]
[('p1', ['b', 'a'], 1)]
>>> ts.excluded, ts.variables[0].kind.value
({'rows_without_target': 1, 'patients_without_target': 1}, 'numeric')
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any

from medsight.core import Case, InvalidInputError
from medsight.data.dataset import Dataset

__all__ = [
    "ClinicalVariable",
    "Outcome",
    "PatientTimeline",
    "TimelineSet",
    "VariableKind",
    "Visit",
    "infer_variable",
    "parse_binary",
    "parse_days",
    "parse_features",
    "timelines_from_dataset",
]

_TRUE = {"y", "yes", "true", "1", "1.0", "positive", "pos"}
_FALSE = {"n", "no", "false", "0", "0.0", "negative", "neg"}
_MISSING = {"", "todo", "unknown", "?", "na", "n/a", "nan", "none", "null", "-"}


class VariableKind(StrEnum):
    """How a clinical variable is typed (and later encoded)."""

    NUMERIC = "numeric"
    BINARY = "binary"
    CATEGORICAL = "categorical"


@dataclasses.dataclass(frozen=True)
class ClinicalVariable:
    """One clinical variable: its name, kind and (categorical / binary) the values seen.

    ``parse`` turns a raw cell into the typed value (float, 0/1, or the category string), or
    None when the cell is missing or (numeric) not a number.

    Examples
    --------
    >>> ClinicalVariable("age", VariableKind.NUMERIC).parse("61"), \
ClinicalVariable("sex", VariableKind.CATEGORICAL, ("F", "M")).parse(" M ")
    (61.0, 'M')
    >>> ClinicalVariable("icu", VariableKind.BINARY).parse("N") == 0
    True
    """

    name: str
    kind: VariableKind
    categories: tuple[str, ...] = ()

    def parse(self, raw: Any) -> float | int | str | None:
        """The typed value of ``raw``; None for missing (or unparseable numeric)."""
        if _is_missing(raw):
            return None
        if self.kind is VariableKind.NUMERIC:
            return _as_float(raw)
        if self.kind is VariableKind.BINARY:
            return parse_binary(raw)
        return str(raw).strip()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``model.json``)."""
        return {"name": self.name, "kind": self.kind.value, "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClinicalVariable:
        """The inverse of :meth:`to_dict`."""
        return cls(str(data["name"]), VariableKind(data["kind"]), tuple(data.get("categories", ())))


def _is_missing(raw: Any) -> bool:
    if raw is None:
        return True
    if isinstance(raw, float) and math.isnan(raw):
        return True
    return isinstance(raw, str) and raw.strip().lower() in _MISSING


def _as_float(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return float(raw)
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_binary(raw: Any, positive: str | None = None) -> int | None:
    """0/1 from Y/N, yes/no, true/false, 1/0; or 1 where ``raw`` equals ``positive``.

    With ``positive`` given, any other non-missing value is 0.  Without it, a value that is
    not one of the known spellings is None (not guessed).

    Examples
    --------
    >>> parse_binary("Y"), parse_binary("no"), parse_binary("Would have been stated")
    (1, 0, None)
    >>> parse_binary("N", positive="N"), parse_binary("Y", positive="N")
    (1, 0)
    """
    if _is_missing(raw):
        return None
    text = str(raw).strip().lower()
    if positive is not None:
        if text == positive.strip().lower():
            return 1
        return 0 if (text in _TRUE | _FALSE) else None
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    return None


_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%B %d, %Y", "%d.%m.%Y")


def parse_days(raw: Any) -> tuple[float | None, dt.date | None]:
    """A visit time: ``(days, None)`` for a day offset, ``(None, date)`` for a date.

    DICOM ``StudyDate`` / ``AcquisitionDate`` (``YYYYMMDD``), ISO dates and ``January 22,
    2020`` are dates; a bare year (``2017``) is too vague and gives ``(None, None)``.

    Examples
    --------
    >>> parse_days("7"), parse_days("20200122"), parse_days("2017")
    ((7.0, None), (None, datetime.date(2020, 1, 22)), (None, None))
    """
    if _is_missing(raw):
        return None, None
    text = str(raw).strip()
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", text) and len(text.lstrip("+-")) < 8:
        if re.fullmatch(r"\d{4}", text) and 1900 <= int(text) <= 2100:
            return None, None
        return float(text), None
    for fmt in _DATE_FORMATS:
        try:
            return None, dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None, None


def parse_features(spec: str | Sequence[str] | None) -> list[tuple[str, VariableKind | None]]:
    """``"age:numeric,sex,view:categorical"`` -> names with a forced kind (None: inferred).

    Examples
    --------
    >>> parse_features("age, sex:categorical")
    [('age', None), ('sex', <VariableKind.CATEGORICAL: 'categorical'>)]
    """
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[tuple[str, VariableKind | None]] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, _, kind = item.partition(":")
        try:
            forced = VariableKind(kind.strip().lower()) if kind.strip() else None
        except ValueError:
            raise InvalidInputError(
                f"--features {item!r}",
                f"{kind!r} is not a variable kind",
                hint=f"use one of {', '.join(k.value for k in VariableKind)}",
            ) from None
        out.append((name.strip(), forced))
    return out


def infer_variable(
    name: str, values: Sequence[Any], kind: VariableKind | None = None
) -> ClinicalVariable:
    """Type a variable from its raw values (missing ones ignored), unless ``kind`` forces it.

    Numeric when every present value is a number (and not only 0/1), binary when every present
    value is a yes/no spelling, categorical otherwise.

    Examples
    --------
    >>> infer_variable("age", ["61", None, "7"]).kind.value
    'numeric'
    >>> v = infer_variable("view", ["PA", "AP", None, "PA"]); v.kind.value, v.categories
    ('categorical', ('AP', 'PA'))
    """
    present = [v for v in values if not _is_missing(v)]
    if kind is None:
        if present and all(parse_binary(v) is not None for v in present):
            kind = VariableKind.BINARY
        elif present and all(_as_float(v) is not None for v in present):
            kind = VariableKind.NUMERIC
        else:
            kind = VariableKind.CATEGORICAL
    categories: tuple[str, ...] = ()
    if kind is VariableKind.CATEGORICAL:
        categories = tuple(sorted({str(v).strip() for v in present}))
    return ClinicalVariable(name, kind, categories)


@dataclasses.dataclass(frozen=True)
class Visit:
    """One imaging visit: its Case (image), time in days and typed clinical values."""

    case_id: str
    time_days: float | None
    values: Mapping[str, Any]
    case: Case | None = None
    study_uid: str | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A binary outcome (``label``) or a time-to-event pair (``time`` days, ``event`` 0/1)."""

    label: int | None = None
    time: float | None = None
    event: int | None = None

    @property
    def is_survival(self) -> bool:
        """Whether this is a time-to-event outcome."""
        return self.time is not None


@dataclasses.dataclass(frozen=True)
class PatientTimeline:
    """A patient's visits ordered by time, with the outcome to predict."""

    patient_id: str
    visits: tuple[Visit, ...]
    outcome: Outcome
    attributes: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def last(self) -> Visit:
        """The latest visit."""
        return self.visits[-1]

    def gaps(self) -> list[float]:
        """Days since the previous visit (0 for the first; unknown times count as 0)."""
        out, prev = [], None
        for v in self.visits:
            t = v.time_days
            out.append(0.0 if t is None or prev is None else max(0.0, t - prev))
            prev = t if t is not None else prev
        return out


class TimelineSet(Sequence[PatientTimeline]):
    """The timelines of a data set, the typed variables and what was left out (counts)."""

    def __init__(
        self,
        name: str,
        timelines: Sequence[PatientTimeline],
        variables: Sequence[ClinicalVariable],
        *,
        target: str,
        time_column: str | None,
        excluded: Mapping[str, int] | None = None,
        survival: bool = False,
    ) -> None:
        self.name = name
        self._timelines = tuple(timelines)
        self.variables = tuple(variables)
        self.target = target
        self.time_column = time_column
        self.excluded = dict(excluded or {})
        self.survival = survival

    def __len__(self) -> int:
        return len(self._timelines)

    def __getitem__(self, index: int) -> PatientTimeline:  # type: ignore[override]
        return self._timelines[index]

    def __iter__(self) -> Iterator[PatientTimeline]:
        return iter(self._timelines)

    def __repr__(self) -> str:
        return f"TimelineSet({self.name!r}, {len(self)} patients, target={self.target!r})"

    @property
    def n_visits(self) -> int:
        """Visits over every timeline."""
        return sum(len(t.visits) for t in self)

    def summary(self) -> dict[str, Any]:
        """Counts for the log and the package's training-data summary."""
        out: dict[str, Any] = {
            "patients": len(self),
            "visits": self.n_visits,
            "excluded": dict(self.excluded),
        }
        if self.survival:
            out["events"] = sum(int(t.outcome.event or 0) for t in self)
        else:
            out["positives"] = sum(int(t.outcome.label or 0) for t in self)
        return out

    def subset(self, patient_ids: Sequence[str]) -> TimelineSet:
        """The timelines of ``patient_ids`` (in this set's order), same variables."""
        keep = set(patient_ids)
        return TimelineSet(
            self.name,
            [t for t in self if t.patient_id in keep],
            self.variables,
            target=self.target,
            time_column=self.time_column,
            excluded=self.excluded,
            survival=self.survival,
        )


def _raw(case: Case, column: str, dataset: Dataset) -> Any:
    if column in case.attributes:
        return case.attributes[column]
    if column in ("label", "class") and isinstance(case.label, int):
        return dataset.label_names.get(case.label, str(case.label))
    return None


def timelines_from_dataset(
    dataset: Dataset,
    *,
    target: str | None = None,
    features: str | Sequence[str] | None = None,
    time_column: str | None = "offset",
    event: str | None = None,
    event_time: str | None = None,
    positive: str | None = None,
    variables: Sequence[ClinicalVariable] | None = None,
) -> TimelineSet:
    """Group a Dataset's Cases by patient into timelines with typed variables and an outcome.

    Parameters
    ----------
    dataset : Dataset
    target : str, optional
        Column of a binary outcome (Y/N, yes/no, 1/0; or ``positive``'s value).  A patient's
        outcome is positive when any of its rows is; rows without a value are counted.
    features : str or sequence of str
        Clinical columns, ``"age,sex:categorical"`` (see :func:`parse_features`).
    time_column : str, optional
        Visit times: day offsets, or dates (DICOM ``StudyDate``) turned into days since the
        patient's first dated visit.  Visits without a time keep their row order, last.
    event, event_time : str, optional
        Time-to-event outcome instead of ``target``: the event indicator column and the column
        of the time (days) to the event or censoring.
    positive : str, optional
        The target's (or event's) value that means 1.
    variables : sequence of ClinicalVariable, optional
        Use these types (a trained model's) instead of inferring them.

    Raises
    ------
    InvalidInputError
        No target, an unknown column, or no patient left with a usable outcome.
    """
    survival = event is not None or event_time is not None
    if survival and (event is None or event_time is None):
        raise InvalidInputError("time-to-event outcome", "needs both --time and --event columns")
    if not survival and not target:
        raise InvalidInputError("target", "no target column given", hint="pass --target COL")
    requested = parse_features(features)
    columns = set().union(*(set(c.attributes) for c in dataset)) if len(dataset) else set()
    for name in [n for n, _ in requested] + [c for c in (target, event, event_time) if c]:
        if name not in columns and name not in ("label", "class"):
            raise InvalidInputError(
                f"column {name!r}",
                f"is not in data set {dataset.name}",
                hint=f"columns are {', '.join(sorted(columns)[:30])}; a manifest's label "
                "column is not among them: name it 'label', or do not pass it as ?label=",
            )
    if variables is None:
        variables = [
            infer_variable(n, [_raw(c, n, dataset) for c in dataset], kind) for n, kind in requested
        ]
    excluded: Counter[str] = Counter()
    by_patient: dict[str, list[tuple[Case, Outcome | None]]] = defaultdict(list)
    for case in dataset:
        if survival:
            assert event is not None and event_time is not None
            e = parse_binary(_raw(case, event, dataset), positive)
            t = _as_float(_raw(case, event_time, dataset))
            out = Outcome(time=t, event=e) if e is not None and t is not None else None
        else:
            assert target is not None
            y = parse_binary(_raw(case, target, dataset), positive)
            out = Outcome(label=y) if y is not None else None
        if out is None:
            excluded["rows_without_target"] += 1
        by_patient[str(case.patient_id)].append((case, out))

    timelines = []
    for pid in sorted(by_patient):
        rows = by_patient[pid]
        outcomes = [o for _, o in rows if o is not None]
        if not outcomes:
            excluded["patients_without_target"] += 1
            continue
        outcome = _patient_outcome(outcomes, survival)
        if outcome is None:
            excluded["patients_with_conflicting_target"] += 1
            continue
        visits = _visits(rows, variables, time_column, dataset)
        timelines.append(PatientTimeline(pid, tuple(visits), outcome))
    if not timelines:
        raise InvalidInputError(
            f"data set {dataset.name}",
            f"no patient has a usable {'event/time' if survival else 'target'} ({dict(excluded)})",
            hint="check the column names and the values meaning yes / no (or pass --positive)",
        )
    return TimelineSet(
        dataset.name,
        timelines,
        variables,
        target=target or str(event),
        time_column=time_column,
        excluded=dict(excluded),
        survival=survival,
    )


def _patient_outcome(outcomes: list[Outcome], survival: bool) -> Outcome | None:
    if not survival:
        return Outcome(label=max(int(o.label or 0) for o in outcomes))
    pairs = {(o.time, o.event) for o in outcomes}
    return outcomes[0] if len(pairs) == 1 else None


def _visits(
    rows: list[tuple[Case, Outcome | None]],
    variables: Sequence[ClinicalVariable],
    time_column: str | None,
    dataset: Dataset,
) -> list[Visit]:
    parsed = []
    for order, (case, _) in enumerate(rows):
        raw = _raw(case, time_column, dataset) if time_column else None
        days, date = parse_days(raw)
        parsed.append((order, case, days, date))
    dates = [d for _, _, _, d in parsed if d is not None]
    first = min(dates) if dates else None
    visits = []
    for order, case, days, date in parsed:
        if days is None and date is not None and first is not None:
            days = float((date - first).days)
        values = {v.name: v.parse(_raw(case, v.name, dataset)) for v in variables}
        visits.append((days is None, days or 0.0, order, case, days, values))
    visits.sort(key=lambda r: (r[0], r[1], r[2]))
    return [Visit(c.case_id, d, vals, case=c) for _, _, _, c, d, vals in visits]
