"""CDS Hooks 2.0: discovery, patient-view and order-select cards from stored AI findings.

Request and response shapes follow the CDS Hooks 2.0 specification (cds-hooks.hl7.org):
discovery ``{"services": [{"hook", "id", "title", "description", "prefetch"}]}``; a request
with ``hook``, ``hookInstance``, ``context`` (``patientId``; order-select also ``selections``
and ``draftOrders``); a response ``{"cards": [...]}`` whose cards have ``summary`` (< 140
characters), ``indicator`` (info | warning | critical), ``source.label`` and optional
``uuid``, ``detail`` (markdown) and ``links`` (``label``, ``url``, ``type`` absolute | smart).
"""

from __future__ import annotations

import json
import uuid

import pytest

from medsight.core.codes import VOLUME, Code
from medsight.core.findings import Finding, FindingKind, Measurement
from medsight.reporting.report import ModelRun, Report
from medsight.service import ServiceSettings
from medsight.service.worker import result_dir

from .conftest import ADMIN_PASSWORD

MALIGNANT = Code("363346000", "SCT", "Malignant neoplastic disease")
BENIGN = Code("3898006", "SCT", "Neoplasm, benign")
PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
ML = Code("mL", "UCUM", "milliliter")


@pytest.fixture
def settings(tmp_path) -> ServiceSettings:
    """No worker: the tests store finished jobs themselves (overrides conftest's settings)."""
    return ServiceSettings(home=tmp_path / "home", admin_password=ADMIN_PASSWORD, run_worker=False)


def _finding(code: Code, p: float, positive: bool, significance=None, urgency=None, **kw):
    return Finding(
        code,
        kw.pop("model_id", "breast-cls"),
        "1.2",
        kind=FindingKind.CLASSIFICATION,
        probability=p,
        positive=positive,
        significance=significance,
        urgency=urgency,
        **kw,
    )


def _store(client, uid: str, patient: str, findings: list[Finding], runs=None, state="done"):
    """A study of ``patient`` whose latest job finished with ``findings`` in its report."""
    services = client.app.state.services
    store = services.store
    store.upsert_study(uid, patient_id=patient, modalities="US", description="Breast US <b>")
    job, _ = store.submit(uid, ["breast-cls@1.2"], uid)
    store.claim("w")
    models = runs if runs is not None else [ModelRun(model_id="breast-cls", task="c", status="ran")]
    report = Report(input=uid, findings=findings, models=models)
    out = result_dir(services.settings, job.id)
    out.mkdir(parents=True)
    (out / "report.json").write_text(json.dumps(report.model_dump(mode="json")))
    if state == "done":
        store.finish(job.id)
    return job.id


def _request(hook: str, patient: str, **context) -> dict:
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example/fhir",
        "context": {"userId": "Practitioner/1", "patientId": patient, **context},
    }


def _check_card_shape(card: dict) -> None:
    assert set(card) <= {
        "uuid",
        "summary",
        "detail",
        "indicator",
        "source",
        "suggestions",
        "selectionBehavior",
        "overrideReasons",
        "links",
    }
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"] == "medsight"
    uuid.UUID(card["uuid"])
    for link in card["links"]:
        assert set(link) >= {"label", "url", "type"} and link["type"] in ("absolute", "smart")


def test_discovery_shape(client, admin):
    body = client.get("/cds-services", headers=admin).json()
    assert set(body) == {"services"}
    by_id = {s["id"]: s for s in body["services"]}
    assert by_id["medsight-patient-view"]["hook"] == "patient-view"
    assert by_id["medsight-order-select"]["hook"] == "order-select"
    for service in body["services"]:
        assert {"hook", "id", "title", "description", "prefetch"} <= set(service)
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        assert all(isinstance(v, str) for v in service["prefetch"].values())


def test_patient_view_cards_for_stored_findings(client, admin):
    measured = _finding(
        MALIGNANT,
        0.93,
        True,
        "actionable",
        "stat",
        measurements=(Measurement(VOLUME, 2.5, ML),),
        reliability="calibrated on 500 cases",
    )
    _store(client, "1.2.1", "PAT-1", [measured, _finding(PNEUMONIA, 0.2, False, "actionable")])
    # a newer study: an urgent finding, a benign one, and a finding of a withheld run
    _store(
        client,
        "1.2.2",
        "PAT-1",
        [
            _finding(PNEUMONIA, 0.81, True, "actionable", "urgent"),
            _finding(BENIGN, 0.7, True, "benign"),
            _finding(MALIGNANT, 0.99, True, "actionable", "stat", model_id="ood-model"),
        ],
        runs=[
            ModelRun(model_id="breast-cls", task="c", status="ran"),
            ModelRun(model_id="ood-model", task="c", status="withheld", reason="unlike training"),
        ],
    )
    _store(client, "1.2.3", "PAT-2", [_finding(MALIGNANT, 0.9, True, "actionable")])
    _store(client, "1.2.4", "PAT-1", [_finding(MALIGNANT, 0.9, True, "actionable")], state="run")

    resp = client.post(
        "/cds-services/medsight-patient-view", json=_request("patient-view", "PAT-1"), headers=admin
    )
    assert resp.status_code == 200, resp.text
    cards = resp.json()["cards"]
    for card in cards:
        _check_card_shape(card)
    # newest study first; the negative finding, the withheld run, the running job and the
    # other patient give no card
    assert [(c["summary"], c["indicator"]) for c in cards] == [
        ("AI (preliminary): Pneumonia (probability 0.81, urgent)", "warning"),
        ("AI (preliminary): Neoplasm, benign (probability 0.70)", "info"),
        ("AI (preliminary): Malignant neoplastic disease (probability 0.93, stat)", "critical"),
    ]
    stat = cards[2]
    assert stat["detail"].startswith("**Preliminary AI suggestion")
    assert "requires review by a qualified clinician" in stat["detail"]
    assert "Volume: 2.5 mL" in stat["detail"] and "calibrated on 500 cases" in stat["detail"]
    assert "Breast US \\<b\\>" in stat["detail"]  # DICOM text escaped in markdown
    assert "- Probability 0.93 (" in stat["detail"]  # the shared formatter, not "0.93" bare
    assert stat["source"]["topic"]["code"] == "breast-cls@1.2"
    assert stat["links"] == [
        {
            "label": "Open the study in the medsight viewer",
            "url": "http://testserver/ui/studies/1.2.1",
            "type": "absolute",
        }
    ]
    again = client.post(
        "/cds-services/medsight-patient-view", json=_request("patient-view", "PAT-1"), headers=admin
    )
    assert [c["uuid"] for c in again.json()["cards"]] == [c["uuid"] for c in cards]  # stable


def test_unknown_patient_gets_no_cards(client, admin):
    _store(client, "1.2.1", "PAT-1", [_finding(MALIGNANT, 0.9, True, "actionable")])
    resp = client.post(
        "/cds-services/medsight-patient-view",
        json=_request("patient-view", "nobody"),
        headers=admin,
    )
    assert resp.status_code == 200 and resp.json() == {"cards": []}
    trail = client.app.state.services.settings.home / "audit" / "service.jsonl"
    (entry,) = [json.loads(x) for x in trail.read_text().splitlines() if "cds_hook" in x]
    assert "nobody" in json.dumps(entry) and "medsight-patient-view" in json.dumps(entry)


def test_order_select(client, admin):
    _store(client, "1.2.1", "PAT-1", [_finding(MALIGNANT, 0.9, True, "actionable")])
    draft = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "ServiceRequest",
                    "id": "sr1",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": "Patient/PAT-1"},
                }
            }
        ],
    }
    body = _request("order-select", "PAT-1", selections=["ServiceRequest/sr1"], draftOrders=draft)
    resp = client.post("/cds-services/medsight-order-select", json=body, headers=admin)
    assert resp.status_code == 200, resp.text
    (card,) = resp.json()["cards"]
    _check_card_shape(card)
    assert card["indicator"] == "warning"  # actionable without a stated urgency: urgent
    no_orders = _request("order-select", "PAT-1")
    resp = client.post("/cds-services/medsight-order-select", json=no_orders, headers=admin)
    assert resp.status_code == 400 and "draftOrders" in resp.json()["detail"]


def test_unauthenticated_is_401(client):
    assert client.get("/cds-services").status_code == 401
    resp = client.post("/cds-services/medsight-patient-view", json=_request("patient-view", "P"))
    assert resp.status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert client.get("/cds-services", headers=bad).status_code == 401


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"{not json", "body is not JSON"),
        (json.dumps({"hook": "patient-view", "context": {"patientId": "P"}}), "hookInstance"),
        (json.dumps({"hook": "patient-view", "hookInstance": "x", "context": {}}), "patientId"),
        (json.dumps(_request("order-select", "P")), "this service answers 'patient-view'"),
        (json.dumps({**_request("patient-view", "P"), "fhirServer": "ftp://x"}), "fhirServer"),
    ],
)
def test_malformed_request_is_400(client, admin, body, text):
    resp = client.post(
        "/cds-services/medsight-patient-view",
        content=body,
        headers={**admin, "Content-Type": "application/json"},
    )
    assert resp.status_code == 400, resp.text
    assert text in resp.json()["detail"]
    assert "CDS Hooks request to medsight-patient-view" in resp.json()["detail"]


def test_unknown_service_is_404(client, admin):
    resp = client.post("/cds-services/nope", json=_request("patient-view", "P"), headers=admin)
    assert resp.status_code == 404 and "medsight-patient-view" in resp.json()["detail"]
