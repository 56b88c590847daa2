"""User accounts: list, role, password change, disable (sessions stop), the last admin kept,
the password policy, the audit trail, and the ``medsight user`` CLI on a stopped service."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medsight.cli.app import app as cli_app
from medsight.service import create_app

from .conftest import ADMIN_PASSWORD, add_user, login


def _audit_actions(settings) -> list[tuple[str, str, dict]]:
    lines = (settings.home / "audit" / "service.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        entry = json.loads(line)
        extra = entry.get("extra", entry)
        out.append((extra.get("actor"), extra.get("action"), entry.get("inputs", {})))
    return out


def test_admin_lists_users_and_changes_a_role(client, admin, settings):
    rad = add_user(client, admin, "rita", "radiologist")
    resp = client.get("/api/users", headers=admin)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "10 characters" in body["password_policy"]
    users = {u["username"]: u for u in body["users"]}
    assert users["admin"]["role"] == "admin" and users["admin"]["active"]
    assert users["rita"]["role"] == "radiologist" and users["rita"]["sessions"] == 1
    assert "password_hash" not in users["rita"]
    assert client.get("/api/users", headers=rad).status_code == 403

    resp = client.patch("/api/users/rita", json={"role": "viewer"}, headers=admin)
    assert resp.status_code == 200 and resp.json()["role"] == "viewer"
    assert client.get("/api/me", headers=rad).json()["role"] == "viewer"
    # a non-admin can neither change roles nor look at another account
    assert client.patch("/api/users/rita", json={"role": "admin"}, headers=rad).status_code == 403
    assert client.patch("/api/users/admin", json={}, headers=rad).status_code == 403
    assert ("admin", "change_role", {"username": "rita", "new_role": "viewer"}) in [
        (a, act, {k: v for k, v in inp.items() if k in ("username", "new_role")})
        for a, act, inp in _audit_actions(settings)
    ]


def test_user_changes_own_password_with_the_old_one(client, admin, settings):
    rita = add_user(client, admin, "rita", "radiologist")
    other_session = login(client, "rita", "rita-password")
    wrong = client.patch(
        "/api/users/rita",
        json={"password": "a brand new one", "old_password": "not it at all"},
        headers=rita,
    )
    assert wrong.status_code == 400 and "old_password" in wrong.json()["detail"]
    missing = client.patch("/api/users/rita", json={"password": "a brand new one"}, headers=rita)
    assert missing.status_code == 400 and "old_password" in missing.json()["detail"]
    weak = client.patch(
        "/api/users/rita", json={"password": "short", "old_password": "rita-password"}, headers=rita
    )
    assert weak.status_code == 400
    assert "too short" in weak.json()["detail"] and "10 characters" in weak.json()["detail"]

    ok = client.patch(
        "/api/users/rita",
        json={"password": "a brand new one", "old_password": "rita-password"},
        headers=rita,
    )
    assert ok.status_code == 200, ok.text
    assert client.get("/api/me", headers=rita).status_code == 200  # this session stays
    assert client.get("/api/me", headers=other_session).status_code == 401  # others end
    assert (
        client.post(
            "/api/auth/login", data={"username": "rita", "password": "rita-password"}
        ).status_code
        == 401
    )
    login(client, "rita", "a brand new one")
    # the first admin's password can be changed too
    resp = client.patch(
        "/api/users/admin",
        json={"password": "the admin's own phrase", "old_password": ADMIN_PASSWORD},
        headers=admin,
    )
    assert resp.status_code == 200, resp.text
    login(client, "admin", "the admin's own phrase")
    actions = [(a, act) for a, act, _ in _audit_actions(settings)]
    assert ("rita", "change_password") in actions and ("admin", "change_password") in actions


def test_disabled_user_sessions_stop_and_login_is_refused(client, admin, settings):
    vera = add_user(client, admin, "vera", "viewer")
    assert client.get("/api/me", headers=vera).status_code == 200
    resp = client.delete("/api/users/vera", headers=admin)
    assert resp.status_code == 200 and resp.json() == {"username": "vera", "active": False}
    assert client.get("/api/me", headers=vera).status_code == 401
    refused = client.post("/api/auth/login", data={"username": "vera", "password": "vera-password"})
    assert refused.status_code == 401 and "disabled" in refused.json()["detail"]
    # a wrong password does not tell that the account exists or is disabled
    wrong = client.post("/api/auth/login", data={"username": "vera", "password": "vera-wrong-1"})
    assert "disabled" not in wrong.json()["detail"]
    users = {u["username"]: u for u in client.get("/api/users", headers=admin).json()["users"]}
    assert users["vera"]["active"] is False and users["vera"]["sessions"] == 0

    assert client.patch("/api/users/vera", json={"active": True}, headers=admin).status_code == 200
    login(client, "vera", "vera-password")
    actions = [(a, act) for a, act, _ in _audit_actions(settings)]
    assert ("admin", "disable_user") in actions and ("admin", "enable_user") in actions


def test_the_last_active_admin_is_kept(client, admin):
    for change in ({"active": False}, {"role": "radiologist"}):
        resp = client.patch("/api/users/admin", json=change, headers=admin)
        assert resp.status_code == 409 and "last active admin" in resp.json()["detail"]
    assert client.delete("/api/users/admin", headers=admin).status_code == 409
    second = add_user(client, admin, "ada", "admin")
    # a disabled second admin does not count
    assert client.delete("/api/users/ada", headers=admin).status_code == 200
    assert client.delete("/api/users/admin", headers=admin).status_code == 409
    assert client.patch("/api/users/ada", json={"active": True}, headers=admin).status_code == 200
    second = login(client, "ada", "ada-password")
    assert client.delete("/api/users/admin", headers=second).status_code == 200
    assert client.get("/api/me", headers=admin).status_code == 401
    nobody = client.patch("/api/users/nobody", json={"active": False}, headers=second)
    assert nobody.status_code == 404


def test_password_policy_on_create(client, admin):
    for password, problem in (
        ("short", "too short"),
        ("aaaaabbbbbaaaa", "different characters"),
        ("Mary_Ann_Smith", "is the username"),
    ):
        resp = client.post(
            "/api/users",
            json={"username": "mary_ann_smith", "password": password, "role": "viewer"},
            headers=admin,
        )
        assert resp.status_code == 400 and problem in resp.json()["detail"], resp.text


def test_cli_manages_users_of_a_stopped_service(settings):
    with TestClient(create_app(settings)):
        pass  # the first start made the store and user admin; the service is stopped now
    run = CliRunner().invoke
    home = str(settings.home)
    out = run(
        cli_app,
        ["user", "add", "rita", "--role", "radiologist", "--home", home, "--password-stdin"],
        input="rita's long phrase\n",
    )
    assert out.exit_code == 0, out.output
    weak = run(cli_app, ["user", "add", "bob", "--home", home, "--password-stdin"], input="x\n")
    assert weak.exit_code != 0
    out = run(
        cli_app,
        ["user", "passwd", "admin", "--home", home, "--password-stdin"],
        input="changed by the shell\n",
    )
    assert out.exit_code == 0, out.output
    assert run(cli_app, ["user", "disable", "rita", "--home", home]).exit_code == 0
    assert run(cli_app, ["user", "disable", "admin", "--home", home]).exit_code != 0  # last admin
    listing = run(cli_app, ["user", "list", "--home", home])
    assert listing.exit_code == 0, listing.output
    rows = {line.split()[0]: line.split()[1:3] for line in listing.output.splitlines()[1:]}
    assert rows == {"admin": ["admin", "active"], "rita": ["radiologist", "disabled"]}
    missing = run(cli_app, ["user", "list", "--home", str(settings.home / "nope")])
    assert missing.exit_code != 0

    with TestClient(create_app(settings)) as client:
        old = client.post("/api/auth/login", data={"username": "admin", "password": ADMIN_PASSWORD})
        assert old.status_code == 401
        login(client, "admin", "changed by the shell")
        rita = client.post(
            "/api/auth/login", data={"username": "rita", "password": "rita's long phrase"}
        )
        assert rita.status_code == 401 and "disabled" in rita.json()["detail"]
    actions = [(a, act) for a, act, _ in _audit_actions(settings)]
    cli_actions = {act for a, act in actions if a.startswith("cli:")}
    assert cli_actions == {"create_user", "change_password", "disable_user"}
