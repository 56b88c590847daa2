"""The same service on PostgreSQL (by URL): jobs, dedup, two workers, feedback, worklist."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medsight.service import create_app
from medsight.service.store import Store

from .conftest import login, wait_job
from .pacs_servers import free_port
from .pg_server import pg_bin, run_postgres

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres_url():
    bindir = pg_bin()
    if bindir is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("PostgreSQL is missing (scripts/system-deps.sh installs postgresql)")
        pytest.skip("PostgreSQL not installed")
    pytest.importorskip("psycopg")
    workdir = Path(tempfile.mkdtemp(prefix="medsight-pg-"))  # 0700, under the shared /tmp
    workdir.chmod(0o711)  # let the postgres user reach its data folder (names are random)
    try:
        with run_postgres(bindir, workdir, free_port()) as url:
            yield url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_service_on_postgres(settings, postgres_url, ct_bytes):
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


def test_concurrent_claims_on_postgres(postgres_url):
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
