"""Patient timelines: grouping, time order, typed variables, rows without the target."""

from __future__ import annotations

import pytest

from medsight.core import Case, InvalidInputError
from medsight.data import Dataset, load_dataset
from medsight.data.timeline import (
    VariableKind,
    infer_variable,
    parse_binary,
    parse_days,
    parse_features,
    timelines_from_dataset,
)


@pytest.fixture(scope="module")
def covid(shared_data):
    return load_dataset(f"csv:{shared_data / 'covid_cxr' / 'metadata.csv'}?patient=patientid")


def test_covid_survival_timelines(covid):
    ts = timelines_from_dataset(
        covid, target="survival", positive="N", features="age,sex,view", time_column="offset"
    )
    # 605 image rows of 360 patients; 243 rows (115 patients) state survival Y/N (one says '?')
    assert len(covid) == 605
    assert len(ts) == 115 and ts.n_visits == 243
    assert ts.excluded == {"rows_without_target": 362, "patients_without_target": 245}
    assert sum(t.outcome.label for t in ts) == 21  # deaths (survival = N)
    kinds = {v.name: v.kind for v in ts.variables}
    assert kinds == {
        "age": VariableKind.NUMERIC,
        "sex": VariableKind.CATEGORICAL,
        "view": VariableKind.CATEGORICAL,
    }
    for t in ts:  # visits in time order; patients are not split across timelines
        times = [v.time_days for v in t.visits if v.time_days is not None]
        assert times == sorted(times)
        assert {v.case.patient_id for v in t.visits} == {t.patient_id}
    several = [t for t in ts if len(t.visits) > 1]
    assert len(several) == 66
    ages = [v.values["age"] for t in ts for v in t.visits]
    assert None in ages and all(a is None or isinstance(a, float) for a in ages)  # kept missing


def test_covid_icu_odd_values_are_missing(covid):
    ts = timelines_from_dataset(covid, target="went_icu", features="age")
    # "Would have been stated" (16 rows) and "?" are not yes / no: left out and counted
    assert ts.n_visits == 289 and len(ts) == 133
    assert ts.excluded["rows_without_target"] == 605 - 289


def _cases():
    rows = [
        ("a", "p1", "20200105", "61", "F", "Y"),
        ("b", "p1", "20200101", "61", "F", None),
        ("c", "p1", "20200110", "61", "F", "Y"),
        ("d", "p2", "20200301", None, "M", "N"),
        ("e", "p3", "20200301", "40", None, "?"),
    ]
    return Dataset(
        "toy",
        [
            Case(cid, patient_id=pid, attributes={"StudyDate": d, "age": age, "sex": sex, "icu": y})
            for cid, pid, d, age, sex, y in rows
        ],
    )


def test_dates_become_days_and_rows_without_target_stay_as_visits():
    ts = timelines_from_dataset(_cases(), target="icu", features="age,sex", time_column="StudyDate")
    p1 = ts[0]
    assert [v.case_id for v in p1.visits] == ["b", "a", "c"]  # ordered by date, not by row
    assert [v.time_days for v in p1.visits] == [0.0, 4.0, 9.0]
    assert p1.gaps() == [0.0, 4.0, 5.0]
    assert [t.patient_id for t in ts] == ["p1", "p2"]
    assert ts.excluded == {"rows_without_target": 2, "patients_without_target": 1}
    assert ts[1].visits[0].values == {"age": None, "sex": "M"}


def test_forced_types_and_bad_specs():
    ts = timelines_from_dataset(
        _cases(), target="icu", features="age:categorical", time_column=None
    )
    assert ts.variables[0].kind is VariableKind.CATEGORICAL
    assert ts.variables[0].categories == ("40", "61")
    with pytest.raises(InvalidInputError, match="not a variable kind"):
        parse_features("age:integer")
    with pytest.raises(InvalidInputError, match="'weight'"):
        timelines_from_dataset(_cases(), target="icu", features="weight")
    with pytest.raises(InvalidInputError, match="no target"):
        timelines_from_dataset(_cases(), features="age")
    with pytest.raises(InvalidInputError, match="no patient has a usable"):
        timelines_from_dataset(_cases(), target="sex")  # F / M are not yes / no


def test_time_to_event_outcome():
    cases = [
        Case(
            f"c{i}",
            patient_id=f"p{i}",
            attributes={"days": str(10 + i), "died": "1" if i % 2 else "0", "age": "50"},
        )
        for i in range(4)
    ] + [Case("x", patient_id="px", attributes={"days": None, "died": "1"})]
    ts = timelines_from_dataset(
        Dataset("s", cases), event="died", event_time="days", features="age", time_column=None
    )
    assert ts.survival and len(ts) == 4
    assert [(t.outcome.time, t.outcome.event) for t in ts] == [(10, 0), (11, 1), (12, 0), (13, 1)]
    assert ts.excluded["rows_without_target"] == 1
    with pytest.raises(InvalidInputError, match="both"):
        timelines_from_dataset(Dataset("s", cases), event="died")


def test_parsers():
    assert parse_binary("Yes") == 1 and parse_binary("0") == 0 and parse_binary("maybe") is None
    assert parse_days("-4") == (-4.0, None) and parse_days("January 22, 2020")[1].day == 22
    assert infer_variable("flag", ["Y", "N", None]).kind is VariableKind.BINARY
    assert infer_variable("x", ["1.5", "abc"]).kind is VariableKind.CATEGORICAL
