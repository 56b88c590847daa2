"""The same service on PostgreSQL (by URL): jobs, dedup, two workers, feedback, worklist."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from medsight.service import create_app
from medsight.service.store import Store

from .conftest import login, wait_job
from .pg_fixture import postgres_url  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration


def test_service_on_postgres(settings, postgres_url, ct_bytes):  # noqa: F811
    cfg = settings.model_copy(update={"database_url": postgres_url})
    with TestClient(create_app(cfg)) as client:
        admin = login(client)
        files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
        body = client.post("/api/studies", files=files, headers=admin).json()
        job = wait_job(client, admin, body["jobs"][0]["id"])
        assert job["state"] == "done"
        again = client.post("/api/studies", files=files, headers=admin).json()
        assert again["jobs"][0]["id"] == job["id"] and again["jobs"][0]["existing"]
        url = f"/api/jobs/{job['id']}/findings/0/feedback"
        assert client.put(url, json={"verdict": "reject"}, headers=admin).status_code == 200
        items = client.get("/api/worklist?status=reviewed", headers=admin).json()
        assert [i["job_id"] for i in items] == [job["id"]]


def test_concurrent_claims_on_postgres(postgres_url):  # noqa: F811
    """Eight threads claim from one queue: every job is taken exactly once."""
    store = Store(postgres_url)
    for i in range(40):
        store.upsert_study(f"9.9.{i}")
        store.submit(f"9.9.{i}", ["m@1"], "d")
    taken: list[str] = []
    lock = threading.Lock()

    def claim_all(name: str) -> None:
        while (job := store.claim(name)) is not None:
            with lock:
                taken.append(job.id)

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(taken) == 40 and len(set(taken)) == 40
    store.engine.dispose()
