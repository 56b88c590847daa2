"""CDS Hooks guideline cards: the stored analyses' applied guideline suggestions as cards.

Card shape per the CDS Hooks 2.0 specification (cds-hooks.hl7.org, "Card Attributes"):
``summary`` a string under 140 characters, ``indicator`` one of info | warning | critical,
``source`` an object with a required ``label`` (and optional ``url``, ``topic`` Coding),
``uuid`` optional, ``detail`` optional GitHub-flavoured markdown, ``links`` with ``label``,
``url`` and ``type`` absolute | smart.
"""

from __future__ import annotations

import uuid

from medsight.clinical.guideline_facts import GuidelineItem, build_suggestions
from medsight.core.codes import DIAMETER, MILLIMETER, Code
from medsight.core.findings import Finding, FindingKind, Measurement

from .test_cds_hooks import _request, _store, settings  # noqa: F401  (settings: a fixture)

NODULE = Code("nodule", "99MEDSIGHT", "Lung nodule")
CARD_KEYS = {"uuid", "summary", "detail", "indicator", "source", "suggestions",
             "selectionBehavior", "overrideReasons", "links"}  # fmt: skip


def _nodule(size: float) -> Finding:
    return Finding(
        NODULE,
        "breast-cls",  # the model id _store records as having run
        "1.2",
        kind=FindingKind.DETECTION,
        positive=True,
        probability=0.8,
        measurements=(Measurement(DIAMETER, size, MILLIMETER),),
    )


def _suggestions(findings, **attributes):
    items = {i: GuidelineItem("lung-nodule", {"type": "solid"}, "label 'nodule'")
             for i in range(len(findings))}  # fmt: skip
    return build_suggestions(findings, items, attributes=attributes)


def _store_with_guidelines(client, uid, patient, findings, suggestions):
    """Store a finished analysis whose report.json carries ``suggestions``."""
    import json

    from medsight.reporting.report import ModelRun, Report
    from medsight.service.worker import result_dir

    job = _store(client, uid, patient, findings)
    path = result_dir(client.app.state.services.settings, job) / "report.json"
    report = Report(
        input=uid,
        findings=findings,
        models=[ModelRun(model_id="breast-cls", task="detection", status="ran")],
        guidelines=suggestions,
    )
    path.write_text(json.dumps(report.model_dump(mode="json")))


def _check_shape(card: dict) -> None:
    assert set(card) <= CARD_KEYS
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert isinstance(card["source"]["label"], str) and card["source"]["label"]
    assert set(card["source"]) <= {"label", "url", "icon", "topic"}
    uuid.UUID(card["uuid"])
    for link in card["links"]:
        assert set(link) >= {"label", "url", "type"} and link["type"] in ("absolute", "smart")


def _call(client, admin, hook="patient-view", **context):
    service = f"medsight-{hook}"
    resp = client.post(f"/cds-services/{service}", json=_request(hook, "PAT-1", **context),
                       headers=admin)  # fmt: skip
    assert resp.status_code == 200, resp.text
    return resp.json()["cards"]


def test_patient_view_gives_a_card_per_applied_guideline(client, admin):
    screen = {"ct_indication": "screening", "screening_round": "baseline"}
    findings = [_nodule(9.0), _nodule(4.0)]
    _store_with_guidelines(client, "1.3.1", "PAT-1", findings, _suggestions(findings, **screen))
    cards = _call(client, admin)
    for card in cards:
        _check_shape(card)
    finding_cards = [c for c in cards if c["source"]["label"] == "medsight"]
    guideline = [c for c in cards if c["source"]["label"] != "medsight"]
    assert len(finding_cards) == 2 and len(guideline) == 1
    (card,) = guideline
    assert card["summary"] == "Guideline suggestion (not a diagnosis): lung-rads 4A, Suspicious"
    assert card["indicator"] == "warning"
    label = card["source"]["label"]
    assert "Lung-RADS" in label and "American College of Radiology" in label
    assert card["source"]["url"].startswith("https://")
    assert card["source"]["topic"]["code"] == "lung-rads@2022"
    detail = card["detail"]
    assert detail.startswith("**Guideline suggestion (decision support, not a diagnosis)")
    assert "LR-SOLID-BASE-4A" in detail and "LR-SOLID-BASE-2" in detail  # both rules fired
    assert "nodules\\[0\\].mean\\_diameter\\_mm = 9.0" in detail  # facts, markdown-escaped
    assert "requires review by a qualified clinician" in detail
    again = _call(client, admin)
    assert [c["uuid"] for c in again] == [c["uuid"] for c in cards]  # stable


def test_info_indicator_and_order_select(client, admin):
    incidental = {"ct_indication": "incidental", "known_cancer": "no",
                  "immunocompromised": "no", "nodule_risk": "low", "age": "60"}  # fmt: skip
    findings = [_nodule(5.0)]
    made = _suggestions(findings, **incidental)
    assert made[0].result.category == "no-follow-up"
    _store_with_guidelines(client, "1.3.2", "PAT-1", findings, made)
    draft = {"resourceType": "Bundle", "type": "collection", "entry": []}
    cards = _call(client, admin, "order-select", selections=[], draftOrders=draft)
    (card,) = [c for c in cards if c["source"]["label"] != "medsight"]
    _check_shape(card)
    assert card["indicator"] == "info" and "fleischner no-follow-up" in card["summary"]


def test_a_guideline_not_applied_gives_no_card(client, admin):
    findings = [_nodule(9.0)]
    made = _suggestions(findings)  # indication not stated: neither lung guideline applied
    assert made and not any(s.applied for s in made)
    _store_with_guidelines(client, "1.3.3", "PAT-1", findings, made)
    cards = _call(client, admin)
    assert [c["source"]["label"] for c in cards] == ["medsight"]
