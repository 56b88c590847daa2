"""Login by JSON or form, the ``/ui`` entry address, and where the first admin password is."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medsight.service import ServiceSettings, create_app
from medsight.service.app import ADMIN_PASSWORD_FILE

from .conftest import ADMIN_PASSWORD


def test_login_accepts_json_and_form(client):
    creds = {"username": "admin", "password": ADMIN_PASSWORD}
    for kw in (
        {"json": creds},
        {"data": creds},
        {"files": {k: (None, v) for k, v in creds.items()}},
    ):
        resp = client.post("/api/auth/login", **kw)
        assert resp.status_code == 200, (kw, resp.text)
        token = resp.json()["access_token"]
        me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["username"] == "admin"
    wrong = client.post("/api/auth/login", json={"username": "admin", "password": "nope-nope"})
    assert wrong.status_code == 401


def test_login_rejects_other_types_and_bad_fields(client):
    resp = client.post(
        "/api/auth/login", content=b"admin:pw", headers={"Content-Type": "text/plain"}
    )
    assert resp.status_code == 415
    assert "text/plain" in resp.json()["detail"] and "JSON" in resp.json()["detail"]
    resp = client.post(
        "/api/auth/login", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 422 and "not valid JSON" in resp.json()["detail"]
    resp = client.post("/api/auth/login", json={"username": "admin"})
    assert resp.status_code == 422 and "password" in resp.json()["detail"]
    resp = client.post("/api/auth/login", json=["admin", ADMIN_PASSWORD])
    assert resp.status_code == 422


def test_ui_root_redirects_to_worklist_then_login(client):
    for path in ("/ui", "/ui/"):
        resp = client.get(path, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"] == "/ui/worklist", path
        final = client.get(path)
        assert final.status_code == 200 and str(final.url).endswith("/ui/login")


def test_first_admin_password_file_is_named(tmp_path, monkeypatch):
    import uvicorn

    from medsight.cli.app import app

    home = tmp_path / "home"
    monkeypatch.setenv("MEDSIGHT_HOME", str(home))
    monkeypatch.delenv("MEDSIGHT_SETTINGS", raising=False)
    monkeypatch.delenv("MEDSIGHT_ADMIN_PASSWORD", raising=False)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # print the start-up line only
    runner = CliRunner()
    out = runner.invoke(app, ["serve", "--port", "8123"])
    assert out.exit_code == 0, out.output
    assert "http://127.0.0.1:8123/ui" in out.output
    assert str(home / ADMIN_PASSWORD_FILE) in out.output
    password = (home / ADMIN_PASSWORD_FILE).read_text().strip()
    with TestClient(create_app(ServiceSettings(home=home, run_worker=False))) as client:
        resp = client.post("/api/auth/login", json={"username": "admin", "password": password})
        assert resp.status_code == 200
    helptext = runner.invoke(app, ["serve", "--help"], terminal_width=200).output
    assert ADMIN_PASSWORD_FILE in helptext


def test_a_first_admin_password_outside_the_policy_names_the_setting(tmp_path):
    from pydantic import SecretStr

    from medsight.core.errors import InvalidInputError

    settings = ServiceSettings(
        home=tmp_path / "h", run_worker=False, admin_password=SecretStr("ab")
    )
    with pytest.raises(InvalidInputError, match=r"MEDSIGHT_ADMIN_PASSWORD\): is too short"):
        create_app(settings)
