"""Liveness and readiness: /api/ready needs the database and a fresh worker heartbeat."""

from __future__ import annotations

import time

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from medsight.service import create_app
from medsight.service.catalog import PackageCatalog
from medsight.service.store import Store
from medsight.service.worker import Worker


def test_ready_with_an_in_process_worker(client):
    resp = client.get("/api/ready")  # no token needed
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ready" and body["checks"] == {"database": "ok", "workers": "ok"}
    assert body["workers"] == 1 and body["queued"] == 0 and body["running"] == 0


def test_not_ready_without_a_worker(settings, ct_bytes):
    from .conftest import login

    with TestClient(create_app(settings.model_copy(update={"run_worker": False}))) as client:
        admin = login(client)
        files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
        assert client.post("/api/studies", files=files, headers=admin).status_code == 201
        resp = client.get("/api/ready")
        assert client.get("/api/health").status_code == 200  # alive, but not ready
    assert resp.status_code == 503
    body = resp.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["workers"].startswith("no worker heartbeat")
    assert (body["workers"], body["queued"]) == (0, 1)


def test_not_ready_when_the_database_is_gone(settings, tmp_path):
    app = create_app(settings.model_copy(update={"run_worker": False}))
    with TestClient(app) as client:
        services = app.state.services
        broken = sa.create_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")  # cannot open
        services.store._sessions = sessionmaker(broken)
        resp = client.get("/api/ready")
    assert resp.status_code == 503
    checks = resp.json()["checks"]
    assert checks["database"].startswith("unreachable") and "missing" not in checks["database"]
    assert checks["workers"].startswith("unknown")


def test_an_idle_worker_keeps_its_heartbeat_fresh(settings):
    cfg = settings.model_copy(update={"job_lease_s": 0.4})
    cfg.ensure_home()
    store = Store(cfg.resolved_database_url())
    worker = Worker(store, cfg, PackageCatalog(cfg.packages))
    worker.start()
    try:
        time.sleep(1.0)  # 2.5 leases with an empty queue
        (row,) = store.live_workers(0.4)
        assert (row.id, row.state, row.job_id) == (worker.id, "idle", "")
    finally:
        worker.stop()
    assert store.live_workers(60) == []  # a stopped worker removes its row
    store.worker_beat("dead", host="h", pid=1)
    time.sleep(0.5)
    assert store.live_workers(0.4) == [] and store.prune_workers(0.4) == 1
    store.engine.dispose()
