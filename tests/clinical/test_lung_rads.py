"""Lung-RADS v2022: every row of the assessment table, with its size boundaries.

Reference values: the ACR Lung-RADS assessment categories (v1.1 table as published on NCBI
Bookshelf NBK568579, appendix A table 2; size thresholds unchanged in v2022) and the v2022
stepped management of stable category 3 and 4A nodules (Christensen et al., Chest 2024).
"""

from __future__ import annotations

import pytest

from medsight.clinical.guidelines import FactsError, evaluate, load_ruleset

RS = load_ruleset("lung-rads")


def _one(exam: str, **nodule: object) -> tuple[str, list[str]]:
    r = evaluate(RS, {"exam": exam, "nodules": [nodule]})
    return r.category, r.rules


# (mean diameter mm, category): <6 -> 2; 6 to <8 -> 3; 8 to <15 -> 4A; >=15 -> 4B
SOLID_BASELINE = [
    (1.0, "2"),
    (5.9, "2"),
    (5.94, "2"),  # rounds to 5.9
    (5.95, "3"),  # rounds half-up to 6.0
    (6.0, "3"),
    (7.9, "3"),
    (8.0, "4A"),
    (14.9, "4A"),
    (15.0, "4B"),
    (40.0, "4B"),
]


@pytest.mark.parametrize(("size", "category"), SOLID_BASELINE)
def test_solid_baseline(size: float, category: str) -> None:
    assert _one("baseline", type="solid", mean_diameter_mm=size)[0] == category


SOLID_FOLLOW_UP = [  # new <4 -> 2; new 4 to <6 -> 3; new 6 to <8 -> 4A; new >=8 -> 4B
    ("new", 3.9, "2"),
    ("new", 4.0, "3"),
    ("new", 5.9, "3"),
    ("new", 6.0, "4A"),
    ("new", 7.9, "4A"),
    ("new", 8.0, "4B"),
    ("growing", 3.0, "4A"),  # growing <8 -> 4A
    ("growing", 7.9, "4A"),
    ("growing", 8.0, "4B"),  # growing >=8 -> 4B
    ("stable", 7.0, "2"),
    ("stable", 20.0, "2"),
]


@pytest.mark.parametrize(("status", "size", "category"), SOLID_FOLLOW_UP)
def test_solid_follow_up(status: str, size: float, category: str) -> None:
    assert _one("follow-up", type="solid", mean_diameter_mm=size, status=status)[0] == category


PART_SOLID_BASELINE = [  # (total, solid component, category)
    (5.9, 3.0, "2"),  # <6 total at baseline -> 2
    (6.0, 0.0, "3"),  # >=6 total with solid <6 -> 3
    (10.0, 5.9, "3"),
    (10.0, 6.0, "4A"),  # solid 6 to <8 -> 4A
    (10.0, 7.9, "4A"),
    (10.0, 8.0, "4B"),  # solid >=8 -> 4B
    (20.0, 12.0, "4B"),
]


@pytest.mark.parametrize(("total", "solid", "category"), PART_SOLID_BASELINE)
def test_part_solid_baseline(total: float, solid: float, category: str) -> None:
    got = _one("baseline", type="part-solid", mean_diameter_mm=total, solid_component_mm=solid)
    assert got[0] == category


PART_SOLID_FOLLOW_UP = [
    ("new", 5.9, 2.0, "3"),  # new <6 total -> 3
    ("new", 6.0, 3.9, "4A"),  # new solid component <4 -> 4A
    ("growing", 5.0, 3.9, "4A"),  # growing solid component <4 -> 4A
    ("new", 8.0, 4.0, "4B"),  # new or growing solid component >=4 -> 4B
    ("growing", 12.0, 6.0, "4B"),
    ("stable", 12.0, 6.0, "2"),
]


@pytest.mark.parametrize(("status", "total", "solid", "category"), PART_SOLID_FOLLOW_UP)
def test_part_solid_follow_up(status: str, total: float, solid: float, category: str) -> None:
    nodule = {"type": "part-solid", "mean_diameter_mm": total, "solid_component_mm": solid}
    assert _one("follow-up", status=status, **nodule)[0] == category


GROUND_GLASS = [  # <30 -> 2 (baseline, new, growing); >=30 baseline or new -> 3; >=30 stable -> 2
    ("baseline", None, 29.9, "2"),
    ("baseline", None, 30.0, "3"),
    ("follow-up", "new", 29.9, "2"),
    ("follow-up", "new", 30.0, "3"),
    ("follow-up", "growing", 20.0, "2"),
    ("follow-up", "growing", 35.0, "2"),  # "unchanged or slowly growing" -> 2
    ("follow-up", "stable", 45.0, "2"),
]


@pytest.mark.parametrize(("exam", "status", "size", "category"), GROUND_GLASS)
def test_ground_glass(exam: str, status: str | None, size: float, category: str) -> None:
    assert _one(exam, type="ground-glass", mean_diameter_mm=size, status=status)[0] == category


def test_category_1_without_nodules_or_with_benign_features() -> None:
    assert evaluate(RS, {"exam": "baseline", "nodules": []}).category == "1"
    got = _one("baseline", type="solid", mean_diameter_mm=9.0, benign_features=True)
    assert got == ("1", ["LR-1-BENIGN"])


def test_category_0_incomplete_overrides_the_nodules() -> None:
    facts = {
        "exam": "baseline",
        "incomplete": True,
        "nodules": [{"type": "solid", "mean_diameter_mm": 20}],
    }
    r = evaluate(RS, facts)
    assert (r.category, r.rules, r.items) == ("0", ["LR-0-INCOMPLETE"], [])


@pytest.mark.parametrize(
    ("prior", "category", "rule"),
    [("4A", "3", "LR-STABLE-FROM-4A"), ("3", "2", "LR-STABLE-2"), (None, "2", "LR-STABLE-2")],
)
def test_stepped_management_of_stable_nodules(prior: str | None, category: str, rule: str) -> None:
    got = _one(
        "follow-up", type="solid", mean_diameter_mm=9.0, status="stable", prior_category=prior
    )
    assert got == (category, [rule])


@pytest.mark.parametrize(("size", "base"), [(7.0, "3"), (9.0, "4A"), (16.0, "4B")])
def test_4x_upgrades_category_3_and_4_with_suspicious_features(size: float, base: str) -> None:
    r = evaluate(
        RS,
        {
            "exam": "baseline",
            "nodules": [{"type": "solid", "mean_diameter_mm": size, "suspicious_features": True}],
        },
    )
    assert r.category == "4X" and r.items[0].rules[-1] == "LR-4X"
    assert _one("baseline", type="solid", mean_diameter_mm=size)[0] == base


def test_4x_does_not_apply_to_category_2() -> None:
    assert _one("baseline", type="solid", mean_diameter_mm=4.0, suspicious_features=True)[0] == "2"


def test_s_modifier_is_a_flag_on_any_category() -> None:
    r = evaluate(
        RS,
        {
            "exam": "baseline",
            "significant_other_findings": True,
            "nodules": [{"type": "solid", "mean_diameter_mm": 4.0}],
        },
    )
    assert (r.category, r.display, r.flags) == ("2", "2S", ["S"])
    assert "LR-S" in r.rules and r.notes and r.notes[0].startswith("S:")


def test_overall_is_the_most_suspicious_nodule() -> None:
    r = evaluate(
        RS,
        {
            "exam": "follow-up",
            "nodules": [
                {"type": "solid", "mean_diameter_mm": 5.0, "status": "stable"},
                {"type": "solid", "mean_diameter_mm": 9.0, "status": "new"},
                {"type": "ground-glass", "mean_diameter_mm": 12.0, "status": "new"},
            ],
        },
    )
    assert r.category == "4B" and [i.category for i in r.items] == ["2", "4B", "2"]
    assert r.recommendation.startswith("Diagnostic chest CT")


@pytest.mark.parametrize(
    ("facts", "field"),
    [
        (
            {"exam": "follow-up", "nodules": [{"type": "solid", "mean_diameter_mm": 5}]},
            "nodules[0].status",
        ),
        (
            {"exam": "baseline", "nodules": [{"type": "part-solid", "mean_diameter_mm": 8}]},
            "nodules[0].solid_component_mm",
        ),
        (
            {
                "exam": "baseline",
                "nodules": [{"type": "part-solid", "mean_diameter_mm": 8, "solid_component_mm": 9}],
            },
            "nodules[0].solid_component_mm",
        ),
        ({"exam": "annual", "nodules": []}, "exam"),
        (
            {"exam": "baseline", "nodules": [{"type": "cavity", "mean_diameter_mm": 5}]},
            "nodules[0].type",
        ),
    ],
)
def test_bad_facts_name_the_field(facts: dict, field: str) -> None:
    with pytest.raises(FactsError) as err:
        evaluate(RS, facts)
    assert err.value.where == field
