"""The REST API end to end in-process: upload, job states, dedup, report, auth, audit."""

from __future__ import annotations

import io
import zipfile

from medsight.privacy.audit import verify_log

from .conftest import add_user, login, wait_job


def _upload(client, headers, files, **params):
    return client.post("/api/studies", files=files, params=params, headers=headers)


def test_upload_analyse_report_and_no_second_analysis(client, admin, ct_bytes, settings):
    resp = _upload(client, admin, [("files", ("ct.dcm", ct_bytes, "application/dicom"))])
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["stored"] == 1 and body["skipped"] == [] and len(body["jobs"]) == 1
    job = wait_job(client, admin, body["jobs"][0]["id"])
    assert job["state"] == "done" and job["error"] == "" and job["attempts"] == 1
    assert job["started"] <= job["finished"]
    report = client.get(f"/api/jobs/{job['id']}/report", headers=admin).json()
    assert report["findings"][0]["model_id"] == "tiny-ct"
    assert job["suspicion"] == report["findings"][0]["probability"]
    html = client.get(f"/api/jobs/{job['id']}/files/report.html", headers=admin)
    assert html.status_code == 200 and "tiny-ct@0.0.1" in html.text
    # the same study again (as a zip this time): the finished job is returned, not re-run
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("study/ct.dcm", ct_bytes)
    again = _upload(client, admin, [("files", ("s.zip", buf.getvalue(), "application/zip"))])
    assert again.status_code == 201
    assert again.json()["jobs"][0] == {**again.json()["jobs"][0], "id": job["id"], "existing": True}
    uid = body["studies"][0]
    assert len(client.get(f"/api/studies/{uid}", headers=admin).json()["jobs"]) == 1
    assert sum(1 for _ in (settings.home / "results").iterdir()) == 1


def test_failed_job_keeps_its_error_and_is_listed(client, admin, pydicom_file):
    from medsight.service.worker import study_dir

    files = [("files", ("mr.dcm", pydicom_file("MR_small.dcm").read_bytes(), "application/dicom"))]
    body = client.post("/api/studies", files=files, headers=admin).json()
    uid = body["studies"][0]
    settings = client.app.state.services.settings
    job = wait_job(client, admin, body["jobs"][0]["id"])
    assert job["state"] == "done"
    # the stored files vanish (a broken disk): the next analysis fails with the reason
    for f in study_dir(settings, uid).rglob("*.dcm"):
        f.write_bytes(b"garbage")
    store = client.app.state.services.store
    again, new = store.submit(uid, job["packages"], "another-digest")
    assert new
    failed = wait_job(client, admin, again.id)
    assert failed["state"] == "failed" and "no readable image" in failed["error"]
    assert failed["error"].startswith(f"study {uid}")  # the study, no server paths
    listed = client.get("/api/jobs?state=failed", headers=admin).json()
    assert [j["id"] for j in listed] == [again.id]
    assert client.get("/api/jobs?state=nonsense", headers=admin).status_code == 422


def test_unknown_package_is_a_clear_400(client, admin, ct_bytes):
    resp = _upload(
        client, admin, [("files", ("ct.dcm", ct_bytes, "application/dicom"))], packages="nope@1"
    )
    assert resp.status_code == 400 and "unknown package id 'nope@1'" in resp.json()["detail"]


def test_every_endpoint_but_health_needs_auth(client):
    assert client.get("/api/health").status_code == 200
    paths = [
        p
        for p, item in client.get("/openapi.json").json()["paths"].items()
        if p not in ("/api/health", "/api/ready") and "get" in item and "{" not in p
    ]
    assert "/api/worklist" in paths
    for path in paths:
        assert client.get(path).status_code == 401, path
    for path in ("/api/studies/1.2.3", "/api/jobs/abc", "/api/jobs/abc/report"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/api/studies", files=[("files", ("a", b"x"))]).status_code == 401


def test_roles(client, admin, ct_bytes):
    viewer = add_user(client, admin, "val", "viewer")
    rad = add_user(client, admin, "rita", "radiologist")
    files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
    assert _upload(client, viewer, files).status_code == 403
    assert "radiologist role" in _upload(client, viewer, files).json()["detail"]
    assert (
        client.post(
            "/api/users", json={"username": "x", "password": "12345678"}, headers=rad
        ).status_code
        == 403
    )
    job_id = _upload(client, rad, files).json()["jobs"][0]["id"]
    wait_job(client, viewer, job_id)
    assert client.get(f"/api/jobs/{job_id}/report", headers=viewer).status_code == 200
    put = f"/api/jobs/{job_id}/findings/0/feedback"
    assert client.put(put, json={"verdict": "confirm"}, headers=viewer).status_code == 403
    assert client.put(put, json={"verdict": "confirm"}, headers=rad).status_code == 200
    # an admin-made API token works like a login token
    tok = client.post("/api/tokens", json={"username": "val"}, headers=admin).json()
    me = client.get("/api/me", headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert me.json() == {"username": "val", "role": "viewer"}


def test_bad_login(client):
    resp = client.post("/api/auth/login", data={"username": "admin", "password": "nope"})
    assert resp.status_code == 401 and resp.json()["detail"] == "wrong username or password"


def test_audit_records_each_access(client, admin, ct_bytes, settings):
    body = _upload(client, admin, [("files", ("ct.dcm", ct_bytes, "application/dicom"))]).json()
    uid, job_id = body["studies"][0], body["jobs"][0]["id"]
    wait_job(client, admin, job_id)
    client.get(f"/api/studies/{uid}", headers=admin)
    client.get(f"/api/jobs/{job_id}/report", headers=admin)
    log = settings.home / "audit" / "service.jsonl"
    assert verify_log(log).ok
    import json

    records = [json.loads(line) for line in log.read_text().splitlines()]
    actions = [(r["actor"], r["action"], r["inputs"].get("study")) for r in records]
    assert ("admin", "upload_study", uid) in actions
    assert ("admin", "view_study", uid) in actions
    assert ("admin", "view_result", uid) in actions
    assert ("admin", "login", None) in actions


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/studies" in spec["paths"] and "/api/worklist" in spec["paths"]
    assert login(client)  # the bootstrap admin exists


def test_first_start_makes_an_admin_with_a_private_password_file(tmp_path, tiny_package):
    import stat

    from fastapi.testclient import TestClient

    from medsight.service import ServiceSettings, create_app

    cfg = ServiceSettings(home=tmp_path / "home", packages=[tiny_package.path], run_worker=False)
    with TestClient(create_app(cfg)) as client:
        file = cfg.home / "initial-admin-password"
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert stat.S_IMODE(cfg.home.stat().st_mode) == 0o700
        headers = login(client, "admin", file.read_text().strip())
        verified = client.get("/api/audit/verify", headers=headers).json()
        assert verified["ok"] and verified["entries"] >= 2  # the login and this check
    with TestClient(create_app(cfg)) as client:  # a second start keeps the same admin
        assert login(client, "admin", file.read_text().strip())


def test_packages_lists_each_models_task_family(client, admin):
    listed = client.get("/api/packages", headers=admin).json()
    assert listed and {p["family"] for p in listed} <= {"classification", "segmentation"}
    assert all(p["family"] == "classification" for p in listed if p["task"] == "binary")
