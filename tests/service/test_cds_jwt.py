"""CDS Hooks EHR authentication: a JWT signed by the EHR, verified with its configured JWKS.

The token shape is the CDS Hooks 2.0 specification's ("Trusting CDS Clients"): header ``alg``
(ES384 / RS384 required), ``kid``, ``typ`` JWT; claims ``iss`` (the EHR), ``sub`` (its client
id), ``aud`` (the CDS service endpoint called), ``exp`` (at most 5 minutes), ``iat``, ``jti``.
"""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from medsight.service import ServiceSettings

from .conftest import ADMIN_PASSWORD
from .test_cds_hooks import _request

ISS = "https://ehr.example.org"
URL = "http://testserver/cds-services/medsight-patient-view"
EC_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = ec.generate_private_key(ec.SECP384R1())


def _jwk(key, kid: str) -> dict:
    algo = ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) else RSAAlgorithm
    jwk = json.loads(algo.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig"}


@pytest.fixture
def settings(tmp_path) -> ServiceSettings:
    """The EHR at ISS is trusted with two keys (EC 'ec-1', RSA 'rsa-1')."""
    jwks = tmp_path / "ehr-jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(EC_KEY, "ec-1"), _jwk(RSA_KEY, "rsa-1")]}))
    return ServiceSettings(
        home=tmp_path / "home",
        admin_password=ADMIN_PASSWORD,
        run_worker=False,
        cds_jwks={ISS: jwks},
    )


def _token(key=EC_KEY, alg="ES384", kid="ec-1", **claims) -> str:
    now = int(time.time())
    body = {"iss": ISS, "sub": "ehr-client-7", "aud": URL, "iat": now, "exp": now + 120,
            "jti": str(uuid.uuid4()), **claims}  # fmt: skip
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


def _post(client, token: str, url: str = URL):
    return client.post(url, json=_request("patient-view", "PAT-1"),
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip


@pytest.mark.parametrize(
    ("key", "alg", "kid"), [(EC_KEY, "ES384", "ec-1"), (RSA_KEY, "RS384", "rsa-1")]
)
def test_a_signed_ehr_jwt_is_accepted_and_audited(client, key, alg, kid):
    resp = _post(client, _token(key, alg, kid))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"cards": []}
    trail = client.app.state.services.settings.home / "audit" / "service.jsonl"
    (entry,) = [json.loads(x) for x in trail.read_text().splitlines() if '"cds_hook"' in x]
    text = json.dumps(entry)
    assert f"ehr:{ISS}" in text and "ehr-client-7" in text


def test_discovery_with_a_jwt_for_its_url(client):
    resp = client.get("/cds-services", headers={
        "Authorization": f"Bearer {_token(aud='http://testserver/cds-services')}"})  # fmt: skip
    assert resp.status_code == 200 and resp.json()["services"]


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (lambda: _token(aud="http://testserver/cds-services/other"), "Audience"),
        (lambda: _token(iss="https://evil.example"), "not a trusted EHR"),
        (lambda: _token(OTHER_KEY), "Signature verification failed"),
        (lambda: _token(kid="nope"), "no key 'nope'"),
        (lambda: _token(exp=int(time.time()) - 120), "expired"),
        (lambda: _token(exp=int(time.time()) + 3600), "lifetime"),
        (lambda: _token(jti=None), "jti"),
        (lambda: _token(sub=None), "sub"),
        (
            lambda: jwt.encode(
                {"iss": ISS, "aud": URL}, "secret-secret-secret-secret-32b!", algorithm="HS256"
            ),
            "'HS256' is not accepted",
        ),
        (lambda: jwt.encode({"iss": ISS, "aud": URL}, None, algorithm="none"), "'none'"),
    ],
)
def test_a_bad_jwt_is_401_with_its_reason_and_audited(client, token, why):
    resp = _post(client, token())
    assert resp.status_code == 401, resp.text
    assert why in resp.json()["detail"]
    trail = client.app.state.services.settings.home / "audit" / "service.jsonl"
    assert any("cds_jwt_rejected" in line for line in trail.read_text().splitlines())


def test_a_replayed_jti_is_refused(client):
    token = _token()
    assert _post(client, token).status_code == 200
    again = _post(client, token)
    assert again.status_code == 401 and "already used" in again.json()["detail"]


def test_medsight_tokens_still_work_and_jwts_need_configuration(client, admin, tmp_path):
    resp = client.post(URL, json=_request("patient-view", "PAT-1"), headers=admin)
    assert resp.status_code == 200
    from fastapi.testclient import TestClient

    from medsight.service import create_app

    plain = ServiceSettings(home=tmp_path / "h2", admin_password=ADMIN_PASSWORD, run_worker=False)
    with TestClient(create_app(plain)) as other:  # no EHR configured: a JWT is no credential
        assert _post(other, _token()).status_code == 401
