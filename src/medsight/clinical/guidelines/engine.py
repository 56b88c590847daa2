"""Evaluate a :class:`~medsight.clinical.guidelines.model.RuleSet` over facts, deterministically.

The steps, in order:

1. **Validate** the facts against the rule set's typed fields (a pydantic model built from the
   rule set): a bad fact raises :class:`FactsError` naming the field (``nodules[0].type``) and
   what is wrong.  Then ``requires`` and ``checks`` are applied to each item.
2. **Round** the item fields the rule set names (half-up, as the guidelines write sizes).
3. **Exam rules**: the first that matches decides the whole result (e.g. "incomplete").
4. **Items**: no items gives the ``empty`` rule's category; otherwise each item gets the
   category of the first item rule that matches, then each matching modifier in order.
5. **Overall**: the highest item category in the rule set's order; the recommendation is that
   category's; ``flags`` add suffixes (Lung-RADS "S").

Nothing is random, nothing depends on dict order or the clock: the same facts give the same
:class:`GuidelineResult`.

Examples
--------
>>> rs = load_ruleset("lung-rads")
>>> r = evaluate(rs, {"exam": "baseline", "nodules": [
...     {"type": "solid", "mean_diameter_mm": 6.0}, {"type": "solid", "mean_diameter_mm": 3.2}]})
>>> r.category, r.rules, [i.category for i in r.items]
('3', ['LR-SOLID-BASE-3', 'LR-SOLID-BASE-2'], ['3', '2'])
>>> try:
...     evaluate(rs, {"exam": "baseline", "nodules": [{"type": "solid", "mean_diameter_mm": -1}]})
... except FactsError as err:
...     print(err)
nodules[0].mean_diameter_mm: Input should be greater than 0
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from medsight.clinical.guidelines.model import (
    Condition,
    FieldSpec,
    FieldType,
    Flag,
    Rule,
    RuleSet,
)
from medsight.core.errors import InvalidInputError

__all__ = [
    "FactsError",
    "GuidelineResult",
    "ItemResult",
    "evaluate",
    "list_rulesets",
    "load_ruleset",
    "matches",
]

_MISSING = object()


class FactsError(InvalidInputError):
    """The facts given to a guideline are missing a field or hold a value it cannot use."""


class ItemResult(BaseModel):
    """The category of one finding (nodule, lesion) and the rules that decided it."""

    model_config = ConfigDict(frozen=True)

    index: int
    category: str
    rules: list[str]


class GuidelineResult(BaseModel):
    """What a rule set concluded: overall category, recommendation, rules fired, per item.

    ``category`` is the overall (highest) category, ``display`` the category with its flag
    suffixes (Lung-RADS "2S"), ``notes`` the flags' recommendations, ``items`` the per-finding
    categories in input order, ``rules`` every rule id that fired, in order, without repeats.
    """

    model_config = ConfigDict(frozen=True)

    ruleset: str
    version: str
    title: str
    citation: dict[str, Any]
    category: str
    label: str
    recommendation: str
    rules: list[str]
    items: list[ItemResult] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
    display: str
    notes: list[str] = Field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        """A plain dict for JSON output (the CLI prints this)."""
        return self.model_dump(mode="json")


# --- loading -------------------------------------------------------------------------------


def _ruleset_files() -> dict[str, Any]:
    folder = resources.files("medsight.clinical.guidelines").joinpath("rulesets")
    return {p.name: p for p in folder.iterdir() if p.name.endswith(".json")}


@cache
def _all_rulesets() -> dict[str, RuleSet]:
    found: dict[str, RuleSet] = {}
    for fname, path in sorted(_ruleset_files().items()):
        try:
            rs = RuleSet.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, ValidationError) as err:  # a packaging bug, never user input
            raise InvalidInputError(f"rulesets/{fname}", f"invalid rule set: {err}") from err
        found[rs.name] = rs
    return found


def list_rulesets() -> list[RuleSet]:
    """Every shipped rule set, sorted by name.

    Examples
    --------
    >>> [r.name for r in list_rulesets()]
    ['birads-us', 'fleischner', 'lung-rads']
    """
    return [rs for _, rs in sorted(_all_rulesets().items())]


def load_ruleset(name: str) -> RuleSet:
    """The shipped rule set called ``name``; an unknown name lists the known ones.

    Examples
    --------
    >>> load_ruleset("fleischner").version
    '2017'
    """
    sets = _all_rulesets()
    if name not in sets:
        raise InvalidInputError(name, "unknown guideline", hint=f"one of {', '.join(sorted(sets))}")
    return sets[name]


# --- validation ----------------------------------------------------------------------------


def _annotation(spec: FieldSpec) -> Any:
    kind: Any = {
        FieldType.NUMBER: float,
        FieldType.INTEGER: int,
        FieldType.BOOLEAN: bool,
        FieldType.STRING: str,
    }.get(spec.type)
    if spec.type is FieldType.ENUM:
        kind = Literal[tuple(spec.values or ())]
    return kind if spec.required else kind | None


def _field(spec: FieldSpec) -> Any:
    bounds = {k: getattr(spec, k) for k in ("ge", "gt", "le") if getattr(spec, k) is not None}
    default = ... if spec.required else spec.default
    return (_annotation(spec), Field(default, description=spec.description, **bounds))


_MODELS: dict[str, type[BaseModel]] = {}


def _facts_model(rs: RuleSet) -> type[BaseModel]:
    """The pydantic model of ``rs``'s facts, built once per distinct rule set."""
    key = rs.model_dump_json(by_alias=True, exclude_unset=True)
    if key not in _MODELS:
        _MODELS[key] = _build_facts_model(rs)
    return _MODELS[key]


def _build_facts_model(rs: RuleSet) -> type[BaseModel]:
    # strict: JSON types as they are ("5" is not a number, 1 is not true); ints pass as floats
    config = ConfigDict(extra="forbid", strict=True)
    fields: dict[str, Any] = {k: _field(v) for k, v in sorted(rs.facts.items())}
    if rs.items is not None:
        item = create_model(  # type: ignore[call-overload]
            "Item", __config__=config, **{k: _field(v) for k, v in sorted(rs.items.fields.items())}
        )
        fields[rs.items.name] = (list[item], Field(..., min_length=rs.items.min_items))
    return create_model("Facts", __config__=config, **fields)  # type: ignore[call-overload]


def _where(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "facts"


def _validate(rs: RuleSet, facts: Any) -> dict[str, Any]:
    if not isinstance(facts, dict):
        raise FactsError("facts", "must be a JSON object")
    try:
        data = _facts_model(rs).model_validate(facts).model_dump()
    except ValidationError as err:
        first = err.errors()[0]
        raise FactsError(_where(first["loc"]), first["msg"]) from None
    if rs.items is None:
        return data
    for i, item in enumerate(data[rs.items.name]):
        where = f"{rs.items.name}[{i}]"
        for req in rs.requires:
            if matches(req.when, _scope(item, data, len(data[rs.items.name]))):
                for name in req.fields:
                    if item.get(name) is None:
                        raise FactsError(f"{where}.{name}", f"is required ({req.reason})")
        for chk in rs.checks:
            a, b = item.get(chk.field), item.get(chk.le_field)
            if a is not None and b is not None and a > b:
                raise FactsError(f"{where}.{chk.field}", f"{a} > {chk.le_field} {b} ({chk.reason})")
    return data


# --- conditions ----------------------------------------------------------------------------


def _scope(item: dict[str, Any] | None, facts: dict[str, Any], count: int) -> dict[str, Any]:
    scope = {k: v for k, v in facts.items() if not isinstance(v, list)}
    scope["item_count"] = count
    scope.update(item or {})
    return scope


def matches(cond: Condition, scope: dict[str, Any]) -> bool:
    """Whether a structured condition holds for the named values in ``scope``.

    Examples
    --------
    >>> c = Condition.model_validate({"all": [{"field": "type", "eq": "solid"},
    ...                                        {"field": "size", "range": [6, 8]}]})
    >>> [matches(c, {"type": "solid", "size": s}) for s in (5.9, 6.0, 7.9, 8.0)]
    [False, True, True, False]
    >>> matches(Condition.model_validate({"field": "size", "lt": 4}), {})  # missing: false
    False
    """
    if cond.all is not None:
        return all(matches(c, scope) for c in cond.all)
    if cond.any is not None:
        return any(matches(c, scope) for c in cond.any)
    if cond.not_ is not None:
        return not matches(cond.not_, scope)
    got = scope.get(cond.field or "", _MISSING)
    op, want = cond.op, cond.value
    if op == "is_null":
        return (got is _MISSING or got is None) == want
    if got is _MISSING or got is None:
        return False
    if op == "eq":
        return bool(got == want)
    if op == "ne":
        return bool(got != want)
    if op == "in":
        return got in want
    if op == "not_in":
        return got not in want
    if op == "range":
        low, high = want
        return (low is None or got >= low) and (high is None or got < high)
    return bool({"lt": got < want, "le": got <= want, "gt": got > want, "ge": got >= want}[op])


# --- evaluation ----------------------------------------------------------------------------


def _round(value: Any, decimals: int) -> Any:
    if not isinstance(value, float):
        return value
    step = Decimal(1).scaleb(-decimals)
    return float(Decimal(repr(value)).quantize(step, rounding=ROUND_HALF_UP))


def _first(rules: tuple[Rule, ...], scope: dict[str, Any]) -> Rule | None:
    return next((r for r in rules if matches(r.when, scope)), None)


def _result(
    rs: RuleSet,
    category: str,
    rules: list[str],
    items: list[ItemResult] | None = None,
    flags: list[Flag] | None = None,
) -> GuidelineResult:
    cat, flags = rs.category(category), flags or []
    cite = rs.citation.model_dump(mode="json")
    return GuidelineResult(
        ruleset=rs.name,
        version=rs.version,
        title=rs.title,
        citation=cite,
        category=category,
        label=cat.label,
        recommendation=cat.recommendation,
        rules=rules + [f.id for f in flags],
        items=items or [],
        flags=[f.suffix for f in flags],
        display=category + "".join(f.suffix for f in flags),
        notes=[f.recommendation for f in flags],
    )


def evaluate(rs: RuleSet, facts: Any) -> GuidelineResult:
    """Apply ``rs`` to ``facts`` (a dict as read from JSON); see the module docstring.

    Raises
    ------
    FactsError
        A fact is missing or invalid; the message names the field.
    """
    data = _validate(rs, facts)
    items_name = rs.items.name if rs.items else None
    items = data.get(items_name, []) if items_name else []
    exam = _first(rs.exam_rules, _scope(None, data, len(items)))
    if exam is not None:
        return _result(rs, exam.category, [exam.id], flags=_flags(rs, data))
    if items_name is None or not items:
        if rs.empty is None:
            raise FactsError(items_name or "facts", "no findings to assess")
        return _result(rs, rs.empty.category, [rs.empty.id], flags=_flags(rs, data))
    results: list[ItemResult] = []
    for i, raw in enumerate(items):
        item = {k: _round(v, rs.rounding[k]) if k in rs.rounding else v for k, v in raw.items()}
        scope = _scope(item, data, len(items))
        rule = _first(rs.item_rules, scope)
        if rule is None:
            raise FactsError(f"{items_name}[{i}]", "no rule of the guideline applies to it")
        category, fired = rule.category, [rule.id]
        for mod in rs.item_modifiers:
            if matches(mod.when, {**scope, "category": category}):
                category = mod.category
                fired.append(mod.id)
        results.append(ItemResult(index=i, category=category, rules=fired))
    top = max(results, key=lambda r: (rs.rank(r.category), -r.index))
    fired_all = [rid for r in results for rid in r.rules]
    rules = list(dict.fromkeys(fired_all))
    return _result(rs, top.category, rules, items=results, flags=_flags(rs, data))


def _flags(rs: RuleSet, data: dict[str, Any]) -> list[Flag]:
    return [f for f in rs.flags if matches(f.when, _scope(None, data, 0))]
