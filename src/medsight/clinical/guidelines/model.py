"""The rule-set format: typed, validated, read from JSON data files (never code).

A rule set is one JSON file under ``rulesets/`` with:

* ``name``, ``version``, ``title`` and a ``citation`` (title, publisher, year, url/doi as text);
* ``facts``: the top-level facts it reads (:class:`FieldSpec` by name) and, when it assesses a
  list of findings, ``items`` (the list field, e.g. ``nodules``) with the fields of one item;
* ``rounding``: item fields rounded half-up to so many decimals before any rule reads them
  (Lung-RADS reports mean diameters to one decimal; Fleischner to the whole millimetre);
* ``requires``: fields an item must have when a condition holds (a part-solid nodule needs its
  solid component), and ``checks`` it must pass;
* ``categories``: every category, *lowest to highest*, with its recommendation; the overall
  category of several findings is the highest of theirs in this order;
* ``exam_rules`` (first match wins and decides the whole result, e.g. "incomplete"),
  ``empty`` (the result when there are no items), ``item_rules`` (first match wins, per item),
  ``item_modifiers`` (applied in order after an item is categorised, may read ``category``),
  and ``flags`` (suffixes such as Lung-RADS "S" added when a condition on the facts holds).

A :class:`Condition` is structured data: ``{"all": [...]}``, ``{"any": [...]}``,
``{"not": {...}}`` or a comparison ``{"field": NAME, OP: VALUE}`` with OP one of ``eq ne lt le gt
ge in not_in range is_null``; ``range`` is half-open ``[low, high)`` (either end may be null),
the way the guidelines write "≥6 to <8 mm".  A comparison on a missing field is false (only
``is_null`` tests for it).  In item rules a name is looked up in the item, then in the
top-level facts; ``item_count`` is the number of items and ``category`` (in modifiers) the
item's category so far.

Examples
--------
>>> c = Condition.model_validate({"field": "mean_diameter_mm", "range": [6, 8]})
>>> c.op, c.value
('range', [6.0, 8.0])
>>> Condition.model_validate({"field": "x", "eq": 1, "lt": 2})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for Condition
...
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Category",
    "Check",
    "Citation",
    "Condition",
    "FieldSpec",
    "FieldType",
    "Flag",
    "ItemsSpec",
    "Requirement",
    "Rule",
    "RuleSet",
]

_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "range", "is_null")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FieldType(StrEnum):
    """The type of one fact."""

    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    ENUM = "enum"
    STRING = "string"


class FieldSpec(_Frozen):
    """One fact: its type, whether it is required, its allowed values or bounds, its meaning."""

    type: FieldType
    description: str
    required: bool = False
    default: Any = None
    values: tuple[str, ...] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    @model_validator(mode="after")
    def _enum_has_values(self) -> FieldSpec:
        if (self.type is FieldType.ENUM) != (self.values is not None):
            raise ValueError("'values' is required for enum fields and only for them")
        return self


class Condition(_Frozen):
    """A structured condition (see the module docstring); no strings are ever evaluated."""

    all: tuple[Condition, ...] | None = None
    any: tuple[Condition, ...] | None = None
    not_: Condition | None = Field(None, alias="not")
    field: str | None = None
    eq: Any = None
    ne: Any = None
    lt: float | None = None
    le: float | None = None
    gt: float | None = None
    ge: float | None = None
    in_: tuple[Any, ...] | None = Field(None, alias="in")
    not_in: tuple[Any, ...] | None = None
    range: tuple[float | None, float | None] | None = None
    is_null: bool | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        logic = [k for k in ("all", "any", "not_") if getattr(self, k) is not None]
        ops = [k for k in _OPS if k in self._set_ops()]
        if (logic and (ops or self.field is not None)) or len(logic) > 1:
            raise ValueError("a condition is one of all / any / not / a field comparison")
        if not logic and (self.field is None or len(ops) != 1):
            raise ValueError("a comparison needs 'field' and exactly one operator")
        return self

    def _set_ops(self) -> set[str]:
        names = {"in_": "in", "not_": "not"}
        return {names.get(k, k) for k in self.model_fields_set}

    @property
    def op(self) -> str | None:
        """The comparison operator, or None for all / any / not."""
        return next((k for k in _OPS if k in self._set_ops()), None)

    @property
    def value(self) -> Any:
        """The comparison's operand (a list for ``in``, ``not_in`` and ``range``)."""
        op = self.op
        if op is None:
            return None
        raw = getattr(self, {"in": "in_"}.get(op, op))
        return list(raw) if isinstance(raw, tuple) else raw


class Rule(_Frozen):
    """A rule: when its condition holds, the item (or exam) gets ``category``."""

    id: str
    when: Condition
    category: str
    text: str = ""


class Requirement(_Frozen):
    """Fields an item must carry when ``when`` holds."""

    when: Condition
    fields: tuple[str, ...]
    reason: str


class Check(_Frozen):
    """A consistency check on an item: ``field`` must be <= ``le_field`` when both are given."""

    field: str
    le_field: str
    reason: str


class Flag(_Frozen):
    """A suffix added to the category (e.g. Lung-RADS "S") when ``when`` holds on the facts."""

    id: str
    when: Condition
    suffix: str
    recommendation: str


class Category(_Frozen):
    """One category and what it recommends."""

    id: str
    label: str
    recommendation: str


class Citation(_Frozen):
    """Where a rule set comes from; ``verified`` says what was checked and what was not."""

    title: str
    publisher: str
    year: int
    url: str
    doi: str | None = None
    verified: str


class ItemsSpec(_Frozen):
    """The list of findings a rule set assesses one by one (e.g. ``nodules``)."""

    name: str
    min_items: int = 0
    fields: dict[str, FieldSpec]


class RuleSet(_Frozen):
    """A versioned, cited guideline as data; see the module docstring for every part."""

    name: str
    version: str
    title: str
    citation: Citation
    scope: str
    facts: dict[str, FieldSpec] = {}
    items: ItemsSpec | None = None
    rounding: dict[str, int] = {}
    requires: tuple[Requirement, ...] = ()
    checks: tuple[Check, ...] = ()
    categories: tuple[Category, ...]
    exam_rules: tuple[Rule, ...] = ()
    empty: Rule | None = None
    item_rules: tuple[Rule, ...] = ()
    item_modifiers: tuple[Rule, ...] = ()
    flags: tuple[Flag, ...] = ()

    @model_validator(mode="after")
    def _categories_known(self) -> RuleSet:
        known = {c.id for c in self.categories}
        rules = [*self.exam_rules, *self.item_rules, *self.item_modifiers]
        rules += [self.empty] if self.empty else []
        for rule in rules:
            if rule.category not in known:
                raise ValueError(f"rule {rule.id!r}: unknown category {rule.category!r}")
        ids = [r.id for r in rules]
        if len(ids) != len(set(ids)):
            raise ValueError("rule ids must be unique")
        return self

    def category(self, category_id: str) -> Category:
        """The :class:`Category` with this id."""
        return next(c for c in self.categories if c.id == category_id)

    def rank(self, category_id: str) -> int:
        """The position of a category in the lowest-to-highest order."""
        return [c.id for c in self.categories].index(category_id)
