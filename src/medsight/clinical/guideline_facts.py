"""Guideline facts from an analysis: which rule set applies, on what, and what is missing.

:func:`build_suggestions` turns an analysis' findings, the items its model packages declare
(:class:`GuidelineItem`), the patient's :class:`~medsight.clinical.context.ClinicalContext`
and the caller's attributes into one :class:`GuidelineSuggestion` per relevant rule set.  A
rule set is relevant when at least one present finding is an item it assesses (a lung nodule
for ``lung-rads`` / ``fleischner``, a breast ultrasound lesion for ``birads-us``).  It is
*applied* (:func:`medsight.clinical.guidelines.evaluate`, the one place the rules live) only
when every input it needs is present and unambiguous; otherwise the suggestion says which
input was missing and no category is given.  Nothing is guessed:

* **Sizes** come only from measurements in mm (UCUM ``mm``): a nodule's mean diameter is its
  Diameter, or the mean of its Long and Short Axis; sizes in pixels, or a box's width and
  height, are not a diameter.
* **Descriptors** (nodule attenuation type, BI-RADS lexicon descriptors) come only from the
  model package that declares them for its label (``model.json`` ``extra.guideline_items``,
  see :mod:`medsight.analysis.guidelines`); a package that does not state them gives none.
* **Indication**: Lung-RADS is for lung cancer screening CT, Fleischner for incidental
  nodules; the image cannot tell which, so the caller states ``ct_indication=screening`` or
  ``incidental``.  The Lung-RADS exam is ``follow-up`` when a prior study was compared, else
  it must be stated (``screening_round=baseline|follow-up``).
* **Fleischner risk**: ``nodule_risk=low|high`` when stated, else *high* only when the record
  shows a current or former smoker with at least :data:`HEAVY_SMOKING_PACK_YEARS` pack-years
  (the USPSTF 2021 definition of a heavy smoking history; Fleischner gives no number).  Low risk
  means no smoking *and* no other risk factor, which a record cannot prove: it is never
  inferred.  ``known_cancer`` and ``immunocompromised`` (yes / no) must be stated, as the
  guideline does not apply to such patients.

Every fact keeps its source (which finding, which package declaration, which FHIR resource,
which ``--attribute``).

Examples
--------
>>> from medsight.core.codes import DIAMETER, MILLIMETER, Code
>>> from medsight.core.findings import Finding, FindingKind, Measurement
>>> nodule = Finding(Code("n", "99MEDSIGHT", "Lung nodule"), "toy", "1", kind="detection",
...                  measurements=(Measurement(DIAMETER, 7.2, MILLIMETER),))
>>> items = {0: GuidelineItem("lung-nodule", {"type": "solid"}, "toy 1 label 'nodule'")}
>>> facts = {"ct_indication": "screening", "screening_round": "baseline"}
>>> s = build_suggestions([nodule], items, attributes=facts)[0]
>>> s.ruleset, s.applied, s.result.category, s.result.rules
('lung-rads', True, '3', ['LR-SOLID-BASE-3'])
>>> s = build_suggestions([nodule], items)[0]
>>> s.applied, s.missing[0][:39]
(False, "the CT's indication (lung cancer screen")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medsight.clinical.guidelines import FactsError, GuidelineResult, evaluate, load_ruleset
from medsight.core.codes import DIAMETER, LONG_AXIS, SHORT_AXIS
from medsight.core.findings import Finding

__all__ = [
    "HEAVY_SMOKING_PACK_YEARS",
    "ITEM_KINDS",
    "SUGGESTION_HEADING",
    "FactUse",
    "GuidelineItem",
    "GuidelineSuggestion",
    "build_suggestions",
]

#: The heading every rendering of a suggestion carries.
SUGGESTION_HEADING = "Guideline suggestion (decision support, not a diagnosis)"

#: Pack-years from which a recorded smoking history counts as "heavy" (Fleischner high risk):
#: the USPSTF 2021 lung cancer screening definition (20 pack-years).
HEAVY_SMOKING_PACK_YEARS = 20.0

#: Item kinds a package may declare, and the rule sets that assess them.
ITEM_KINDS: dict[str, tuple[str, ...]] = {
    "lung-nodule": ("lung-rads", "fleischner"),
    "breast-us-lesion": ("birads-us",),
}

#: Item fields that are measured, never declared by a label.
_MEASURED = frozenset({"mean_diameter_mm", "solid_component_mm", "largest_diameter_mm"})
_YES = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


@dataclasses.dataclass(frozen=True)
class GuidelineItem:
    """A finding that a model package declares to be an item a guideline assesses.

    Parameters
    ----------
    kind : str
        One of :data:`ITEM_KINDS` (``lung-nodule``, ``breast-us-lesion``).
    fields : mapping
        Descriptors the package states for the finding's label (e.g. ``{"type": "solid"}``).
    declared_by : str
        Where the declaration comes from, for the report (package and label).
    """

    kind: str
    fields: Mapping[str, Any]
    declared_by: str


class FactUse(BaseModel):
    """One fact given to a rule set, with its value and where it was read."""

    model_config = ConfigDict(frozen=True)

    fact: str  # e.g. "exam", "nodules[0].mean_diameter_mm"
    value: Any
    source: str


class GuidelineSuggestion(BaseModel):
    """What one rule set suggests for the analysis, or why it was not applied.

    ``applied`` with ``result`` (category, recommendation, rules fired) when every input was
    there; otherwise ``missing`` lists what was not.  ``findings`` are the indexes, in the
    analysis' findings, of the items assessed; ``sources`` every fact used and where it came
    from; ``assumptions`` what the rule set's defaults assume and the AI did not assess.
    """

    model_config = ConfigDict(frozen=True)

    ruleset: str
    version: str
    title: str
    citation: dict[str, Any]
    applied: bool
    result: GuidelineResult | None = None
    missing: list[str] = Field(default_factory=list)
    facts: dict[str, Any] = Field(default_factory=dict)
    sources: list[FactUse] = Field(default_factory=list)
    findings: list[int] = Field(default_factory=list)
    assumptions: list[str] = Field(default_factory=list)
    heading: str = SUGGESTION_HEADING

    @property
    def name(self) -> str:
        """Rule set and version, e.g. ``lung-rads 2022``."""
        return f"{self.ruleset} {self.version}"

    def citation_text(self) -> str:
        """The rule set's source in one line (title, publisher, year, DOI or URL)."""
        c = self.citation
        where = f"doi:{c['doi']}" if c.get("doi") else c.get("url", "")
        return f"{c.get('title', '')} ({c.get('publisher', '')}, {c.get('year', '')}) {where}"

    def text(self) -> str:
        """One paragraph: the category and recommendation, or why it was not applied.

        This is what the DICOM SR and the FHIR note carry.
        """
        head = f"{SUGGESTION_HEADING}. {self.title} (medsight rule set {self.name})"
        if self.result is None:
            return f"{head}: not applied; missing: {'; '.join(self.missing)}."
        r = self.result
        notes = "".join(f" {n}" for n in r.notes)
        used = "; ".join(f"{u.fact} = {u.value} ({u.source})" for u in self.sources)
        return (
            f"{head}: category {r.display} ({r.label}). {r.recommendation}{notes} "
            f"Rules fired: {', '.join(r.rules)}. Facts used: {used}. "
            f"Source: {self.citation_text()}. Requires review by a qualified clinician."
        )


def _finding_label(index: int, finding: Finding) -> str:
    return (
        f"finding #{index + 1} ({finding.finding.meaning}, {finding.model_id} "
        f"{finding.model_version})"
    )


def _mean_diameter_mm(finding: Finding) -> tuple[float | None, str]:
    """The mean diameter in mm and how it was obtained, or None and why not."""
    mm = {m.concept: m.value for m in finding.measurements if m.unit.value == "mm"}
    if DIAMETER in mm:
        return mm[DIAMETER], "its Diameter"
    if LONG_AXIS in mm and SHORT_AXIS in mm:
        return (mm[LONG_AXIS] + mm[SHORT_AXIS]) / 2, "mean of its Long and Short Axis"
    if any(m.concept in (DIAMETER, LONG_AXIS, SHORT_AXIS) for m in finding.measurements):
        return None, "its size is not in mm (pixel spacing unknown)"
    return None, "it has no Diameter nor Long and Short Axis in mm"


def _largest_mm(finding: Finding) -> float | None:
    mm = {m.concept: m.value for m in finding.measurements if m.unit.value == "mm"}
    return mm.get(DIAMETER, mm.get(LONG_AXIS))


class _Collect:
    """The facts of one rule set as they are gathered, with their sources and what is missing."""

    def __init__(self, ruleset: str) -> None:
        self.rs = load_ruleset(ruleset)
        self.facts: dict[str, Any] = {}
        self.sources: list[FactUse] = []
        self.missing: list[str] = []
        self.assumptions: list[str] = []
        self.indexes: list[int] = []

    def put(self, where: dict[str, Any], name: str, value: Any, fact: str, source: str) -> None:
        where[name] = value
        self.sources.append(FactUse(fact=fact, value=value, source=source))

    def items(
        self, findings: Sequence[Finding], items: Sequence[tuple[int, GuidelineItem]]
    ) -> list[dict[str, Any]]:
        spec = self.rs.items
        assert spec is not None  # the three item rule sets
        out = []
        for n, (index, item) in enumerate(items):
            finding, facts, refused = findings[index], {}, set()
            label, fact = _finding_label(index, finding), f"{spec.name}[{n}]"
            self.indexes.append(index)
            for key, value in sorted(item.fields.items()):
                field = spec.fields.get(key)
                if field is None or key in _MEASURED:
                    continue  # another rule set's descriptor, or a size (measured only)
                if field.values is not None and value not in field.values:
                    refused.add(key)
                    self.missing.append(
                        f"{label}: {item.declared_by} declares {key}={value!r}, not one of "
                        f"{', '.join(field.values)}"
                    )
                    continue
                self.put(facts, key, value, f"{fact}.{key}", f"{item.declared_by}, {label}")
            out.append(facts)
            if "mean_diameter_mm" in spec.fields:
                size, how = _mean_diameter_mm(finding)
                if size is None:
                    self.missing.append(f"{label}: mean diameter in mm ({how})")
                else:
                    self.put(facts, "mean_diameter_mm", round(size, 3), f"{fact}.mean_diameter_mm",
                             f"{how}, {label}")  # fmt: skip
            elif (largest := _largest_mm(finding)) is not None:
                self.put(facts, "largest_diameter_mm", round(largest, 3),
                         f"{fact}.largest_diameter_mm", label)  # fmt: skip
            required = [k for k, f in spec.fields.items() if f.required and k not in _MEASURED]
            if self.rs.name == "birads-us":  # every lexicon descriptor: a missing one is not 0
                required = [k for k in spec.fields if k not in _MEASURED]
            for key in required:
                if key not in facts and key not in refused:
                    self.missing.append(
                        f"{label}: {spec.fields[key].description} ({key}) is not stated by its "
                        "model package"
                    )
            if facts.get("type") == "part-solid":
                self.missing.append(
                    f"{label}: the solid component of a part-solid nodule in mm "
                    "(solid_component_mm) is not measured"
                )
        return out

    def suggestion(self) -> GuidelineSuggestion:
        base = {
            "ruleset": self.rs.name,
            "version": self.rs.version,
            "title": self.rs.title,
            "citation": self.rs.citation.model_dump(mode="json"),
            "facts": self.facts,
            "sources": self.sources,
            "findings": self.indexes,
            "assumptions": self.assumptions,
        }
        if self.missing:
            return GuidelineSuggestion(applied=False, missing=self.missing, **base)
        try:
            result = evaluate(self.rs, self.facts)
        except FactsError as err:  # an input the rule set refuses: not applied, say why
            return GuidelineSuggestion(applied=False, missing=[str(err)], **base)
        return GuidelineSuggestion(applied=True, result=result, **base)


def _attribute(attributes: Mapping[str, str], key: str) -> str | None:
    value = attributes.get(key)
    return value.strip().lower() if value is not None else None


def _indication(attributes: Mapping[str, str], col: _Collect, wanted: str) -> bool:
    """Whether the stated indication is ``wanted``; a missing or bad one is recorded."""
    got = _attribute(attributes, "ct_indication")
    if got is None:
        col.missing.append(
            "the CT's indication (lung cancer screening: Lung-RADS; incidental nodule: "
            "Fleischner) is not stated (--attribute ct_indication=screening|incidental)"
        )
        return True
    if got not in ("screening", "incidental"):
        col.missing.append(f"--attribute ct_indication={got} is not screening or incidental")
        return True
    return got == wanted


def _lung_rads(
    findings: Sequence[Finding],
    nodules: Sequence[tuple[int, GuidelineItem]],
    attributes: Mapping[str, str],
    prior_compared: bool,
) -> GuidelineSuggestion | None:
    col = _Collect("lung-rads")
    if not _indication(attributes, col, "screening"):
        return None  # an incidental nodule: Fleischner's
    stated = _attribute(attributes, "screening_round")
    if stated is not None and stated not in ("baseline", "follow-up"):
        col.missing.append(f"--attribute screening_round={stated} is not baseline or follow-up")
    elif prior_compared and stated == "baseline":
        col.missing.append(
            "exam: --attribute screening_round=baseline, but a prior study was compared"
        )
    elif prior_compared:
        col.put(col.facts, "exam", "follow-up", "exam", "a prior study was compared (--prior)")
    elif stated is not None:
        col.put(col.facts, "exam", stated, "exam", "--attribute screening_round")
    else:
        col.missing.append(
            "exam: baseline or follow-up screening CT is not known (no prior study compared; "
            "--attribute screening_round=baseline|follow-up)"
        )
    col.facts["nodules"] = col.items(findings, nodules)
    if col.facts.get("exam") == "follow-up":
        col.missing.append(
            "at follow-up each nodule's status (new, growing, stable) is needed; medsight does "
            "not yet match nodules with the prior study's"
        )
    col.assumptions = [
        "category 0 (incomplete exam) and the S modifier (significant non-lung findings) are "
        "not assessed by the AI",
        "benign features (calcification, fat) and suspicious features (4X) only as its model "
        "package declares them",
    ]
    return col.suggestion()


def _fleischner(
    findings: Sequence[Finding],
    nodules: Sequence[tuple[int, GuidelineItem]],
    clinical: Any,
    attributes: Mapping[str, str],
) -> GuidelineSuggestion | None:
    col = _Collect("fleischner")
    if not _indication(attributes, col, "incidental"):
        return None  # a screening CT: Lung-RADS'
    risk = _attribute(attributes, "nodule_risk")
    smoking = getattr(clinical, "smoking", None)
    if risk is not None:
        if risk in ("low", "high"):
            col.put(col.facts, "risk", risk, "risk", "--attribute nodule_risk")
        else:
            col.missing.append(f"--attribute nodule_risk={risk} is not low or high")
    elif (
        smoking is not None
        and smoking.status.value in ("current", "former")
        and smoking.pack_years is not None
        and smoking.pack_years >= HEAVY_SMOKING_PACK_YEARS
    ):
        source = smoking.pack_years_source or smoking.source
        col.put(col.facts, "risk", "high", "risk",
                f"{smoking.status.value} smoker, {smoking.pack_years:g} pack-years (>= "
                f"{HEAVY_SMOKING_PACK_YEARS:g}: heavy smoking), {source}")  # fmt: skip
    else:
        seen = (
            f"the record shows a {smoking.status.value} smoker"
            + (f" with {smoking.pack_years:g} pack-years" if smoking.pack_years is not None else "")
            if smoking is not None
            else "the record states no smoking history"
        )
        col.missing.append(
            f"patient risk (low or high): {seen}, which does not establish it; low risk also "
            "needs the absence of other risk factors (--attribute nodule_risk=low|high)"
        )
    age = getattr(clinical, "age_years", None)
    if age is not None:
        col.put(col.facts, "age", int(age), "age", str(clinical.patient_source))
    elif (stated_age := attributes.get("age", "").strip()).isdigit():
        col.put(col.facts, "age", int(stated_age), "age", "--attribute age")
    else:
        col.missing.append("age in years (the guideline does not apply below 35)")
    for key, what in (
        ("known_cancer", "a known primary cancer"),
        ("immunocompromised", "immunosuppression"),
    ):
        got = _attribute(attributes, key)
        if got in _YES:
            col.put(col.facts, key, _YES[got], key, f"--attribute {key}")
        else:
            col.missing.append(
                f"whether the patient has {what} (the guideline does not apply then; "
                f"--attribute {key}=yes|no)"
            )
    col.facts["nodules"] = col.items(findings, nodules)
    return col.suggestion()


def _birads_us(
    findings: Sequence[Finding], lesions: Sequence[tuple[int, GuidelineItem]]
) -> GuidelineSuggestion:
    col = _Collect("birads-us")
    col.facts["lesions"] = col.items(findings, lesions)
    col.assumptions = [
        "lesion descriptors only as its model package declares them; calcifications, "
        "associated features and change over time are not assessed"
    ]
    return col.suggestion()


def build_suggestions(
    findings: Sequence[Finding],
    items: Mapping[int, GuidelineItem],
    *,
    clinical: Any = None,
    attributes: Mapping[str, str] | None = None,
    prior_compared: bool = False,
) -> list[GuidelineSuggestion]:
    """The suggestion of every rule set that one of the findings is an item of.

    Parameters
    ----------
    findings : sequence of Finding
        The analysis' findings (indexes in ``items`` and in the suggestions refer to it).
    items : mapping of int to GuidelineItem
        The findings that are guideline items, by index (absent ones are skipped).
    clinical : ClinicalContext, optional
        The patient's record (age, smoking).
    attributes : mapping, optional
        What the caller states (``ct_indication``, ``screening_round``, ``nodule_risk``,
        ``known_cancer``, ``immunocompromised``, ``age``).
    prior_compared : bool
        A prior study of the patient was compared (the exam is a follow-up).

    Examples
    --------
    See the module documentation.
    """
    attributes = attributes or {}
    chosen = sorted((i, it) for i, it in items.items() if findings[i].present)
    by_kind: dict[str, list[tuple[int, GuidelineItem]]] = {}
    for index, item in chosen:
        by_kind.setdefault(item.kind, []).append((index, item))
    out: list[GuidelineSuggestion] = []
    nodules = by_kind.get("lung-nodule", [])
    if nodules:
        for made in (
            _lung_rads(findings, nodules, attributes, prior_compared),
            _fleischner(findings, nodules, clinical, attributes),
        ):
            if made is not None:
                out.append(made)
    if by_kind.get("breast-us-lesion"):
        out.append(_birads_us(findings, by_kind["breast-us-lesion"]))
    return out
