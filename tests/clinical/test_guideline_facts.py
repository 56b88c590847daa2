"""Guideline facts from findings + context: applied only with every input, else what is missing.

Expected categories are the guidelines' own tables (the rule sets' tests cite them): Lung-RADS
v2022 baseline solid 6 to <8 mm is 3 and 8 to <15 mm is 4A; Fleischner 2017 single solid 6-8 mm
in a high-risk patient is CT at 6-12 months, then CT at 18-24 months (low risk: then consider
CT at 18-24 months); BI-RADS US oval, parallel, circumscribed, hypoechoic, no posterior
features is 3.
"""

from __future__ import annotations

import datetime as dt

import pytest

from medsight.clinical.context import (
    ClinicalCode,
    ClinicalContext,
    FactSource,
    SmokingHistory,
    SmokingStatus,
)
from medsight.clinical.guideline_facts import GuidelineItem, build_suggestions
from medsight.core.codes import (
    DIAMETER,
    LONG_AXIS,
    MILLIMETER,
    PIXELS,
    SHORT_AXIS,
    WIDTH,
    Code,
)
from medsight.core.findings import Finding, Measurement

NODULE = Code("nodule", "99MEDSIGHT", "Lung nodule")
LESION = Code("52988006", "SCT", "Lesion")
SCREEN = {"ct_indication": "screening", "screening_round": "baseline"}
INCIDENTAL = {"ct_indication": "incidental", "known_cancer": "no", "immunocompromised": "no"}
OVAL = {
    "shape": "oval",
    "orientation": "parallel",
    "margin": "circumscribed",
    "echo_pattern": "hypoechoic",
    "posterior_features": "none",
}


def _nodule(*sizes: tuple[Code, float], unit: Code = MILLIMETER, positive=None) -> Finding:
    return Finding(
        NODULE,
        "toy-det",
        "1",
        kind="detection",
        positive=positive,
        measurements=tuple(Measurement(c, v, unit) for c, v in sizes),
    )


def _solid(index: int = 0) -> dict[int, GuidelineItem]:
    return {index: GuidelineItem("lung-nodule", {"type": "solid"}, "toy-det label 'nodule'")}


def _context(status: SmokingStatus, packs: float | None, age: int | None = 64) -> ClinicalContext:
    src = FactSource(location="record.json", resource="Observation/s1")
    smoking = SmokingHistory(
        status=status,
        status_code=ClinicalCode(system="http://snomed.info/sct", code="8517006"),
        pack_years=packs,
        source=src,
    )
    return ClinicalContext(
        patient_id="p1",
        patient_source=FactSource(location="record.json", resource="Patient/p1"),
        reference_date=dt.date(2026, 1, 1),
        age_years=age,
        smoking=smoking,
    )


@pytest.mark.parametrize(("size", "category"), [(7.2, "3"), (9.0, "4A"), (5.9, "2")])
def test_lung_rads_baseline_from_a_declared_solid_nodule(size, category):
    [s] = build_suggestions([_nodule((DIAMETER, size))], _solid(), attributes=SCREEN)
    assert s.applied and s.ruleset == "lung-rads" and s.result.category == category
    assert s.facts["nodules"] == [{"type": "solid", "mean_diameter_mm": size}]
    sources = {u.fact: u.source for u in s.sources}
    assert "toy-det label 'nodule'" in sources["nodules[0].type"]
    assert "finding #1" in sources["nodules[0].mean_diameter_mm"]
    assert sources["exam"] == "--attribute screening_round"
    assert s.findings == [0]


def test_mean_of_long_and_short_axis():
    f = _nodule((LONG_AXIS, 10.0), (SHORT_AXIS, 6.0))  # mean 8.0 mm: 4A at baseline
    [s] = build_suggestions([f], _solid(), attributes=SCREEN)
    assert s.result.category == "4A" and s.facts["nodules"][0]["mean_diameter_mm"] == 8.0


@pytest.mark.parametrize(
    ("finding", "why"),
    [
        (_nodule((DIAMETER, 30.0), unit=PIXELS), "not in mm"),
        (_nodule((WIDTH, 9.0)), "no Diameter nor Long and Short Axis"),
    ],
)
def test_no_size_in_mm_means_not_applied(finding, why):
    [s] = build_suggestions([finding], _solid(), attributes=SCREEN)
    assert not s.applied and s.result is None
    assert any(why in m for m in s.missing)


def test_an_undeclared_type_is_never_guessed():
    items = {0: GuidelineItem("lung-nodule", {}, "toy-det label 'nodule'")}
    [s] = build_suggestions([_nodule((DIAMETER, 9.0))], items, attributes=SCREEN)
    assert not s.applied and any("(type) is not stated" in m for m in s.missing)
    bad = {0: GuidelineItem("lung-nodule", {"type": "calcified"}, "x")}
    [s] = build_suggestions([_nodule((DIAMETER, 9.0))], bad, attributes=SCREEN)
    assert not s.applied and any("type='calcified'" in m for m in s.missing)


def test_part_solid_needs_its_solid_component():
    items = {0: GuidelineItem("lung-nodule", {"type": "part-solid"}, "x")}
    [s] = build_suggestions([_nodule((DIAMETER, 9.0))], items, attributes=SCREEN)
    assert not s.applied and any("solid component" in m for m in s.missing)


def test_unstated_indication_applies_neither_lung_guideline():
    made = build_suggestions([_nodule((DIAMETER, 9.0))], _solid())
    assert [s.ruleset for s in made] == ["lung-rads", "fleischner"]
    assert not any(s.applied for s in made)
    assert all(any("ct_indication" in m for m in s.missing) for s in made)


def test_exam_from_the_prior_comparison():
    stated = {"ct_indication": "screening"}
    [s] = build_suggestions([_nodule((DIAMETER, 9.0))], _solid(), attributes=stated)
    assert not s.applied and any("baseline or follow-up" in m for m in s.missing)
    [s] = build_suggestions(
        [_nodule((DIAMETER, 9.0))], _solid(), attributes=stated, prior_compared=True
    )
    assert s.facts["exam"] == "follow-up"  # ... whose per-nodule status is not known yet
    assert not s.applied and any("status" in m for m in s.missing)
    [s] = build_suggestions(
        [_nodule((DIAMETER, 9.0))], _solid(), attributes=SCREEN, prior_compared=True
    )
    assert not s.applied and any("a prior study was compared" in m for m in s.missing)


def test_fleischner_high_risk_from_a_heavy_smoking_record():
    ctx = _context(SmokingStatus.FORMER, 30.0)
    [s] = build_suggestions(
        [_nodule((DIAMETER, 7.0))], _solid(), clinical=ctx, attributes=INCIDENTAL
    )
    assert s.ruleset == "fleischner" and s.applied
    assert s.result.category == "ct-6-12m-then-18-24m"
    sources = {u.fact: u.source for u in s.sources}
    assert "Observation/s1" in sources["risk"] and "Patient/p1" in sources["age"]
    assert s.facts["age"] == 64 and s.facts["risk"] == "high"


@pytest.mark.parametrize(
    ("status", "packs"),
    [(SmokingStatus.NEVER, None), (SmokingStatus.FORMER, 5.0), (SmokingStatus.CURRENT, None)],
)
def test_fleischner_risk_is_never_inferred_low_or_from_too_little(status, packs):
    ctx = _context(status, packs)
    [s] = build_suggestions(
        [_nodule((DIAMETER, 7.0))], _solid(), clinical=ctx, attributes=INCIDENTAL
    )
    assert not s.applied and any(m.startswith("patient risk") for m in s.missing)
    stated = {**INCIDENTAL, "nodule_risk": "low"}
    [s] = build_suggestions([_nodule((DIAMETER, 7.0))], _solid(), clinical=ctx, attributes=stated)
    assert s.applied and s.result.category == "ct-6-12m-consider-18-24m"  # low risk, 6-8 mm


def test_fleischner_needs_age_and_the_exclusions_stated():
    [s] = build_suggestions(
        [_nodule((DIAMETER, 7.0))],
        _solid(),
        attributes={"ct_indication": "incidental", "nodule_risk": "high"},
    )
    assert not s.applied
    text = " ".join(s.missing)
    assert "age in years" in text and "known_cancer" in text and "immunocompromised" in text
    young = {**INCIDENTAL, "nodule_risk": "high", "age": "30"}
    [s] = build_suggestions([_nodule((DIAMETER, 7.0))], _solid(), attributes=young)
    assert s.applied and s.result.category == "not-applicable"


def test_birads_us_with_declared_descriptors_and_without():
    f = Finding(LESION, "busi", "1", measurements=(Measurement(LONG_AXIS, 12.0, MILLIMETER),))
    items = {0: GuidelineItem("breast-us-lesion", OVAL, "busi label 'lesion'")}
    [s] = build_suggestions([f], items)
    assert s.applied and s.ruleset == "birads-us" and s.result.category == "3"
    assert s.facts["lesions"][0]["largest_diameter_mm"] == 12.0
    [s] = build_suggestions([f], {0: GuidelineItem("breast-us-lesion", {}, "busi")})
    assert not s.applied and s.result is None  # never the rule set's "0" from missing inputs
    assert len(s.missing) == 5 and any("(margin)" in m for m in s.missing)


def test_absent_findings_and_other_findings_give_no_suggestion():
    absent = _nodule((DIAMETER, 9.0), positive=False)
    assert build_suggestions([absent], _solid(), attributes=SCREEN) == []
    assert build_suggestions([_nodule((DIAMETER, 9.0))], {}, attributes=SCREEN) == []


def test_the_text_is_marked_as_a_suggestion_with_its_source():
    [s] = build_suggestions([_nodule((DIAMETER, 9.0))], _solid(), attributes=SCREEN)
    text = s.text()
    assert text.startswith("Guideline suggestion (decision support, not a diagnosis)")
    assert "category 4A" in text and "LR-SOLID-BASE-4A" in text and "Lung-RADS" in text
    assert s.citation["year"] == 2022 or "2022" in s.citation_text()
