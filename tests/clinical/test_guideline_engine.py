"""The guideline engine: the rule-set format, conditions, fact validation and determinism."""

from __future__ import annotations

import json
import random
from importlib import resources
from pathlib import Path

import pytest
from pydantic import ValidationError

from medsight.clinical.guidelines import (
    Condition,
    FactsError,
    RuleSet,
    evaluate,
    list_rulesets,
    load_ruleset,
    matches,
)
from medsight.core.errors import InvalidInputError

TINY = {
    "name": "tiny",
    "version": "1",
    "title": "A test rule set",
    "citation": {"title": "t", "publisher": "p", "year": 2024, "url": "u", "verified": "no"},
    "scope": "tests",
    "facts": {"mode": {"type": "enum", "values": ["a", "b"], "required": True, "description": "m"}},
    "items": {
        "name": "things",
        "fields": {"size": {"type": "number", "gt": 0, "required": True, "description": "s"}},
    },
    "rounding": {"size": 0},
    "categories": [
        {"id": "low", "label": "Low", "recommendation": "nothing"},
        {"id": "high", "label": "High", "recommendation": "act"},
    ],
    "empty": {"id": "E", "when": {"all": []}, "category": "low"},
    "item_rules": [
        {"id": "R-LOW", "when": {"field": "size", "lt": 10}, "category": "low"},
        {
            "id": "R-HIGH",
            "when": {"all": [{"field": "size", "ge": 10}, {"field": "mode", "eq": "a"}]},
            "category": "high",
        },
    ],
}


def test_shipped_rule_sets_are_cited_and_versioned() -> None:
    sets = list_rulesets()
    assert {(r.name, r.version) for r in sets} == {
        ("lung-rads", "2022"),
        ("fleischner", "2017"),
        ("birads-us", "medsight-subset-1"),
    }
    for rs in sets:
        assert rs.citation.title and rs.citation.publisher and rs.citation.url
        assert rs.citation.year >= 2013 and rs.citation.verified
        assert rs.items is not None and rs.item_rules


def test_rule_set_files_are_package_data_and_valid_json() -> None:
    folder = resources.files("medsight.clinical.guidelines").joinpath("rulesets")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".json"))
    assert names == ["birads_us.json", "fleischner_2017.json", "lung_rads_2022.json"]
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    assert "clinical/guidelines/rulesets/*.json" in pyproject.read_text()
    for name in names:
        RuleSet.model_validate(json.loads(folder.joinpath(name).read_text()))


def test_unknown_rule_set_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInputError, match="lung-rads"):
        load_ruleset("pi-rads")


def test_a_custom_rule_set_evaluates() -> None:
    rs = RuleSet.model_validate(TINY)
    r = evaluate(rs, {"mode": "a", "things": [{"size": 3}, {"size": 9.5}]})
    assert r.category == "high" and r.rules == ["R-LOW", "R-HIGH"]  # 9.5 rounds to 10
    assert r.recommendation == "act" and r.citation["title"] == "t"
    with pytest.raises(FactsError, match=r"things\[0\]: no rule"):  # mode b, size 10: no rule
        evaluate(rs, {"mode": "b", "things": [{"size": 10}]})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"empty": {"id": "E", "when": {"all": []}, "category": "medium"}}, "unknown category"),
        ({"item_rules": [{"id": "E", "when": {"all": []}, "category": "low"}]}, "unique"),
        ({"item_rules": [{"id": "X", "when": {"field": "size"}, "category": "low"}]}, "operator"),
        (
            {
                "item_rules": [
                    {"id": "X", "when": {"field": "s", "lt": 1, "gt": 0}, "category": "low"}
                ]
            },
            "operator",
        ),
        ({"facts": {"m": {"type": "enum", "description": "no values"}}}, "values"),
        ({"sneaky": "extra"}, "Extra inputs"),
    ],
)
def test_bad_rule_sets_are_rejected(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RuleSet.model_validate({**TINY, **change})


@pytest.mark.parametrize(
    ("cond", "scope", "expected"),
    [
        ({"field": "x", "eq": "a"}, {"x": "a"}, True),
        ({"field": "x", "ne": "a"}, {"x": "b"}, True),
        ({"field": "x", "in": ["a", "b"]}, {"x": "b"}, True),
        ({"field": "x", "not_in": ["a", "b"]}, {"x": "b"}, False),
        ({"field": "x", "range": [6, 8]}, {"x": 8}, False),
        ({"field": "x", "range": [None, 8]}, {"x": -100}, True),
        ({"field": "x", "range": [6, None]}, {"x": 6}, True),
        ({"field": "x", "le": 8}, {"x": 8}, True),
        ({"field": "x", "gt": 8}, {"x": 8}, False),
        ({"field": "x", "lt": 8}, {}, False),
        ({"field": "x", "ne": 8}, {"x": None}, False),
        ({"field": "x", "is_null": True}, {"x": None}, True),
        ({"field": "x", "is_null": False}, {}, False),
        ({"not": {"field": "x", "eq": 1}}, {"x": 2}, True),
        ({"any": [{"field": "x", "eq": 1}, {"field": "y", "eq": 2}]}, {"y": 2}, True),
        ({"all": [{"field": "x", "eq": 1}, {"field": "y", "eq": 2}]}, {"y": 2}, False),
        ({"all": []}, {}, True),
        ({"any": []}, {}, False),
    ],
)
def test_conditions(cond: dict, scope: dict, expected: bool) -> None:
    assert matches(Condition.model_validate(cond), scope) is expected


@pytest.mark.parametrize(
    ("facts", "where", "problem"),
    [
        ([1, 2], "facts", "JSON object"),
        ({"things": []}, "mode", "required"),
        ({"mode": "c", "things": []}, "mode", "'a' or 'b'"),
        ({"mode": "a", "things": [{"size": 0}]}, "things[0].size", "greater than 0"),
        ({"mode": "a", "things": [{"size": "big"}]}, "things[0].size", "number"),
        ({"mode": "a", "things": [{"size": 1, "colour": "red"}]}, "things[0].colour", "Extra"),
        ({"mode": "a", "things": {"size": 1}}, "things", "list"),
        ({"mode": "a", "things": [{"size": "5"}]}, "things[0].size", "number"),  # strict JSON
        ({"mode": "a", "things": [{"size": True}]}, "things[0].size", "number"),
    ],
)
def test_bad_facts_name_the_field_and_the_problem(facts: object, where: str, problem: str) -> None:
    with pytest.raises(FactsError) as err:
        evaluate(RuleSet.model_validate(TINY), facts)
    assert err.value.where == where and problem in err.value.problem
    assert isinstance(err.value, InvalidInputError)


def test_evaluation_is_deterministic() -> None:
    rs = load_ruleset("lung-rads")
    nodules = [
        {"type": "solid", "mean_diameter_mm": 7.0, "status": "new"},
        {
            "type": "part-solid",
            "mean_diameter_mm": 9.0,
            "solid_component_mm": 5.0,
            "status": "growing",
        },
        {"type": "ground-glass", "mean_diameter_mm": 31.0, "status": "new"},
    ]
    facts = {"exam": "follow-up", "nodules": nodules}
    first = evaluate(rs, facts).to_json_dict()
    for seed in range(5):
        shuffled = [dict(random.Random(seed).sample(list(n.items()), len(n))) for n in nodules]
        again = evaluate(rs, {"nodules": shuffled, "exam": "follow-up"}).to_json_dict()
        assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
    assert first["category"] == "4B" and first["rules"] == [
        "LR-SOLID-NEW-4A",
        "LR-PS-NEWGROW-4B",
        "LR-GGN-3",
    ]


def test_facts_are_not_mutated_and_rounding_is_half_up() -> None:
    facts = {"exam": "baseline", "nodules": [{"type": "solid", "mean_diameter_mm": 7.95}]}
    before = json.dumps(facts)
    assert evaluate(load_ruleset("lung-rads"), facts).category == "4A"  # 7.95 -> 8.0
    assert json.dumps(facts) == before


def test_the_engine_never_evaluates_strings() -> None:
    import medsight.clinical.guidelines.engine as engine
    import medsight.clinical.guidelines.model as model

    for mod in (engine, model):
        src = Path(mod.__file__).read_text()
        assert "eval(" not in src and "exec(" not in src
