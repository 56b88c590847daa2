"""``analyze`` applies the guidelines whose inputs its findings provide.

Which findings are guideline items is said by their model package, never guessed from a name:

* ``model.json`` ``extra.guideline_items`` maps a label name to its item kind and the
  descriptors the label implies, e.g. ``{"solid-nodule": {"item": "lung-nodule", "type":
  "solid"}}`` (kinds: :data:`~medsight.clinical.guideline_facts.ITEM_KINDS`; fields: the
  rule set's item fields, sizes excepted, which are measured);
* a breast ultrasound lesion is also recognised from its codes: a Lesion or Mass finding of a
  package whose intended body part is BREAST, made on a US series.  Without declared lexicon
  descriptors BI-RADS is then *not applied* and the report says which descriptors are missing.

The facts, their sources and the evaluation are :mod:`medsight.clinical.guideline_facts`'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medsight.analysis.output import label_code
from medsight.clinical.guideline_facts import (
    ITEM_KINDS,
    GuidelineItem,
    GuidelineSuggestion,
    build_suggestions,
)
from medsight.core.codes import LESION, MASS
from medsight.core.findings import Finding
from medsight.models.package import ModelPackage

__all__ = ["DECLARATION", "declared_items", "for_series", "suggest"]

#: The ``model.json`` ``extra`` key of a package's guideline item declarations.
DECLARATION = "guideline_items"


def _declarations(package: ModelPackage) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """``(code scheme, code value) -> declaration`` of the package's labels, and problems."""
    spec = package.spec
    raw = spec.extra.get(DECLARATION) or {}
    problems: list[str] = []
    if not isinstance(raw, dict):
        return {}, [f"{package.id}: extra.{DECLARATION} is not an object; ignored"]
    labels = {lab.name: lab for lab in spec.labels}
    out = {}
    for name, decl in sorted(raw.items()):
        where = f"{package.id}: extra.{DECLARATION}.{name}"
        if name not in labels:
            problems.append(f"{where}: no such label; ignored")
        elif not isinstance(decl, dict) or decl.get("item") not in ITEM_KINDS:
            problems.append(f"{where}: 'item' must be one of {', '.join(ITEM_KINDS)}; ignored")
        else:
            code = label_code(labels[name], package)
            out[(code.scheme, code.value)] = dict(decl)
    return out, problems


def declared_items(
    findings: Sequence[Finding], ran: Mapping[str, tuple[ModelPackage, str]]
) -> tuple[dict[int, GuidelineItem], list[str]]:
    """The findings that are guideline items, by index, and declaration problems.

    ``ran`` maps a model id (``spec.name``) to its package and the modality of the series it
    ran on.
    """
    items: dict[int, GuidelineItem] = {}
    problems: list[str] = []
    tables: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for model_id, (package, _modality) in ran.items():
        tables[model_id], found = _declarations(package)
        problems += found
    for index, finding in enumerate(findings):
        if finding.model_id not in ran:
            continue
        package, modality = ran[finding.model_id]
        code = finding.finding
        decl = tables[finding.model_id].get((code.scheme, code.value))
        if decl is not None:
            fields = {k: v for k, v in decl.items() if k != "item"}
            label = finding.note.split(" #")[0] if finding.note else code.meaning
            how = f"model.json of {package.id} (label {label!r})"
            items[index] = GuidelineItem(str(decl["item"]), fields, how)
        elif (
            code in (LESION, MASS)
            and "BREAST" in [b.upper() for b in package.spec.input.body_parts]
            and modality == "US"
        ):
            how = f"{package.id} (breast lesion on ultrasound)"
            items[index] = GuidelineItem("breast-us-lesion", {}, how)
    return items, problems


def suggest(
    findings: Sequence[Finding],
    ran: Mapping[str, tuple[ModelPackage, str]],
    *,
    clinical: Any = None,
    attributes: Mapping[str, str] | None = None,
    prior_compared: bool = False,
) -> tuple[list[GuidelineSuggestion], list[str]]:
    """The guideline suggestions of an analysis and the report warnings its declarations
    raise (see :func:`medsight.clinical.guideline_facts.build_suggestions`)."""
    items, problems = declared_items(findings, ran)
    made = build_suggestions(
        findings, items, clinical=clinical, attributes=attributes, prior_compared=prior_compared
    )
    return made, problems


def for_series(
    suggestions: Sequence[GuidelineSuggestion],
    findings: Sequence[Finding],
    series_findings: Sequence[Finding],
) -> list[GuidelineSuggestion]:
    """The suggestions derived from at least one of ``series_findings`` (for that series' SR)."""
    return [
        s
        for s in suggestions
        if any(0 <= i < len(findings) and findings[i] in series_findings for i in s.findings)
    ]
