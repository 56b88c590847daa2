"""The FHIR Bundle is POSTed to a configured endpoint (a local stub that validates it)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from medsight.service import create_app

from .conftest import login, wait_job


def _run(settings, ct_bytes):
    with TestClient(create_app(settings)) as client:
        admin = login(client)
        files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
        body = client.post("/api/studies", files=files, headers=admin).json()
        return client, admin, wait_job(client, admin, body["jobs"][0]["id"])


def test_bundle_is_posted_and_valid(settings, ct_bytes, fhir_stub):
    cfg = settings.model_copy(update={"fhir_url": fhir_stub.url})
    _client, _admin, job = _run(cfg, ct_bytes)
    assert job["state"] == "done" and job["delivery"] == "FHIR: posted (/fhir/Bundle/1)"
    (got,) = fhir_stub.received
    assert got["path"] == "/fhir/Bundle" and got["content_type"] == "application/fhir+json"
    assert got["valid"], got.get("error")
    kinds = [e["resource"]["resourceType"] for e in got["bundle"]["entry"]]
    assert "DiagnosticReport" in kinds and "Observation" in kinds


def test_a_refusing_fhir_server_does_not_fail_the_analysis(settings, ct_bytes, fhir_stub):
    fhir_stub.fail_with = 503
    cfg = settings.model_copy(update={"fhir_url": fhir_stub.url})
    with TestClient(create_app(cfg)) as client:
        admin = login(client)
        files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
        body = client.post("/api/studies", files=files, headers=admin).json()
        job = wait_job(client, admin, body["jobs"][0]["id"])
        assert job["state"] == "done"
        assert job["delivery"].startswith("FHIR failed: ") and "answered 503" in job["delivery"]
        fhir_stub.fail_with = None  # the server is back: deliver again on request
        again = client.post(f"/api/pacs/deliver/{job['id']}", headers=admin).json()
        assert again["delivery"] == "FHIR: posted (/fhir/Bundle/2)"
    assert len(fhir_stub.received) == 2 and all(r["valid"] for r in fhir_stub.received)
