"""Fleischner Society 2017: every row of the table, with the whole-millimetre boundaries.

Reference: MacMahon H et al., Radiology 2017;284(1):228-243 (doi:10.1148/radiol.2017161659),
table as reproduced by radiopaedia.org and radiology.ae; sizes are the mean of long and short
axes rounded to the nearest millimetre, so "<6 mm" is 5 mm or less and "6-8 mm" is 6 to 8 mm.
"""

from __future__ import annotations

import pytest

from medsight.clinical.guidelines import FactsError, evaluate, load_ruleset

RS = load_ruleset("fleischner")


def _run(risk: str, *nodules: tuple[str, float], **facts: object) -> str:
    items = [{"type": t, "mean_diameter_mm": d} for t, d in nodules]
    return evaluate(RS, {"risk": risk, "nodules": items, **facts}).category


SOLID_SINGLE = [  # (size mm, risk, recommendation)
    (4.0, "low", "no-follow-up"),
    (5.4, "low", "no-follow-up"),  # rounds to 5: "<6 mm"
    (5.5, "low", "ct-6-12m-consider-18-24m"),  # rounds to 6: "6-8 mm"
    (4.0, "high", "optional-ct-12m"),
    (6.0, "low", "ct-6-12m-consider-18-24m"),
    (8.0, "low", "ct-6-12m-consider-18-24m"),
    (8.4, "low", "ct-6-12m-consider-18-24m"),  # rounds to 8
    (6.0, "high", "ct-6-12m-then-18-24m"),
    (8.0, "high", "ct-6-12m-then-18-24m"),
    (8.5, "low", "ct-3m-pet-or-biopsy"),  # rounds to 9: ">8 mm"
    (9.0, "low", "ct-3m-pet-or-biopsy"),
    (9.0, "high", "ct-3m-pet-or-biopsy"),
    (25.0, "high", "ct-3m-pet-or-biopsy"),
]


@pytest.mark.parametrize(("size", "risk", "expected"), SOLID_SINGLE)
def test_single_solid(size: float, risk: str, expected: str) -> None:
    assert _run(risk, ("solid", size)) == expected


SOLID_MULTIPLE = [  # the largest (most suspicious) nodule decides
    (5.0, "low", "no-follow-up"),
    (5.0, "high", "optional-ct-12m"),
    (6.0, "low", "ct-3-6m-consider-18-24m"),
    (8.0, "low", "ct-3-6m-consider-18-24m"),
    (6.0, "high", "ct-3-6m-then-18-24m"),
    (8.0, "high", "ct-3-6m-then-18-24m"),
    (9.0, "low", "ct-3-6m-consider-18-24m"),
    (9.0, "high", "ct-3-6m-then-18-24m"),
]


@pytest.mark.parametrize(("size", "risk", "expected"), SOLID_MULTIPLE)
def test_multiple_solid(size: float, risk: str, expected: str) -> None:
    assert _run(risk, ("solid", 3.0), ("solid", size)) == expected


SUBSOLID_SINGLE = [
    ("ground-glass", 5.0, "no-follow-up"),
    ("ground-glass", 6.0, "ct-6-12m-then-every-2y"),
    ("ground-glass", 20.0, "ct-6-12m-then-every-2y"),
    ("part-solid", 5.0, "no-follow-up"),
    ("part-solid", 6.0, "ct-3-6m-then-annual-5y"),
    ("part-solid", 15.0, "ct-3-6m-then-annual-5y"),
]


@pytest.mark.parametrize("risk", ["low", "high"])
@pytest.mark.parametrize(("kind", "size", "expected"), SUBSOLID_SINGLE)
def test_single_subsolid(kind: str, size: float, expected: str, risk: str) -> None:
    assert _run(risk, (kind, size)) == expected


SUBSOLID_MULTIPLE = [
    ("ground-glass", 5.0, "ct-3-6m-consider-2-4y"),
    ("part-solid", 5.0, "ct-3-6m-consider-2-4y"),
    ("ground-glass", 6.0, "ct-3-6m-most-suspicious"),
    ("part-solid", 6.0, "ct-3-6m-most-suspicious"),
]


@pytest.mark.parametrize(("kind", "size", "expected"), SUBSOLID_MULTIPLE)
def test_multiple_subsolid(kind: str, size: float, expected: str) -> None:
    assert _run("low", ("ground-glass", 4.0), (kind, size)) == expected


def test_mixed_nodules_take_the_highest_recommendation() -> None:
    r = evaluate(
        RS,
        {
            "risk": "low",
            "nodules": [
                {"type": "solid", "mean_diameter_mm": 4.0},
                {"type": "part-solid", "mean_diameter_mm": 7.0, "solid_component_mm": 3.0},
            ],
        },
    )
    assert [i.category for i in r.items] == ["no-follow-up", "ct-3-6m-most-suspicious"]
    assert r.category == "ct-3-6m-most-suspicious"
    assert r.rules == ["F-SOLID-N-LT6-LOW", "F-SUBSOLID-N-GE6"]


@pytest.mark.parametrize(
    "facts",
    [{"age": 34}, {"known_cancer": True}, {"immunocompromised": True}, {"screening": True}],
)
def test_outside_scope_is_not_applicable(facts: dict) -> None:
    assert _run("high", ("solid", 12.0), **facts) == "not-applicable"


def test_age_35_is_in_scope() -> None:
    assert _run("high", ("solid", 12.0), age=35) == "ct-3m-pet-or-biopsy"


@pytest.mark.parametrize(
    ("facts", "field"),
    [
        ({"nodules": [{"type": "solid", "mean_diameter_mm": 5}]}, "risk"),
        ({"risk": "medium", "nodules": [{"type": "solid", "mean_diameter_mm": 5}]}, "risk"),
        ({"risk": "low", "nodules": []}, "nodules"),
        ({"risk": "low", "nodules": [{"type": "solid"}]}, "nodules[0].mean_diameter_mm"),
    ],
)
def test_bad_facts_name_the_field(facts: dict, field: str) -> None:
    with pytest.raises(FactsError) as err:
        evaluate(RS, facts)
    assert err.value.where == field
