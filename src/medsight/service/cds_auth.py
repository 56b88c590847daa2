"""CDS Hooks 2.0 authentication of an EHR: the JWT it signs, verified against its public keys.

The CDS Hooks specification ("Trusting CDS Clients") has the EHR send ``Authorization: Bearer
<JWT>`` signed with its private key; the CDS service verifies it with the EHR's public keys
(a JWK Set) that it was configured with.  :func:`verify_ehr_jwt` checks, in order:

* the header's ``alg`` is an asymmetric signature algorithm (:data:`ALGORITHMS`; the
  specification requires ES384 and RS384); ``none`` and shared-secret HMAC are refused;
* the unverified ``iss`` is a trusted issuer (``ServiceSettings.cds_jwks``: issuer -> JWKS
  file); keys are never fetched from a URL the token names (``jku`` is ignored);
* the key is the JWKS entry with the header's ``kid`` (a JWKS of one key needs none);
* the signature, ``aud`` equal to the service endpoint called, ``iss``, ``exp`` (with
  :data:`LEEWAY_S` of clock skew), and the required claims ``iss sub aud exp iat jti``;
* ``exp`` at most :data:`MAX_LIFETIME_S` after ``iat`` (the specification: five minutes), and
  ``jti`` not seen before from that issuer while the token is valid (:class:`ReplayGuard`).

Any failure is an :class:`~medsight.service.errors.AuthError` (401) naming the check.  The
route accepts these JWTs alongside medsight's own bearer tokens and audits the caller as
``ehr:<iss>`` (:mod:`medsight.service.routes.cds_hooks`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsight.service.errors import AuthError

__all__ = ["ALGORITHMS", "LEEWAY_S", "MAX_LIFETIME_S", "EhrClient", "ReplayGuard", "verify_ehr_jwt"]

#: Accepted signature algorithms (asymmetric only).
ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS384", "PS256")
#: Clock skew allowed on ``exp`` / ``iat``, in seconds.
LEEWAY_S = 30
#: The longest accepted token lifetime (``exp - iat``), in seconds.
MAX_LIFETIME_S = 300

_WHERE = "CDS Hooks JWT"


@dataclasses.dataclass(frozen=True)
class EhrClient:
    """An EHR whose JWT was verified: its issuer, subject (client id) and token id."""

    issuer: str
    subject: str
    jti: str


class ReplayGuard:
    """The ``(iss, jti)`` pairs seen, each kept until its token expires (thread-safe)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def check(self, issuer: str, jti: str, exp: float) -> None:
        """Record the token; :class:`AuthError` when it was seen before."""
        now = time.time()
        with self._lock:
            self._seen = {k: e for k, e in self._seen.items() if e + LEEWAY_S >= now}
            if (issuer, jti) in self._seen:
                raise AuthError(_WHERE, f"token jti {jti!r} of {issuer} was already used")
            self._seen[(issuer, jti)] = exp


def _key(jwks_file: Path, kid: str | None, alg: str) -> Any:
    """The JWKS entry for ``kid`` as a key for ``alg`` (a JWK's own ``alg``, if any, wins)."""
    import jwt

    try:
        data = json.loads(Path(jwks_file).read_text(encoding="utf-8"))
        entries = [k for k in data["keys"] if isinstance(k, dict)]
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a configuration problem
        raise AuthError(_WHERE, f"the issuer's JWKS {jwks_file} is unreadable ({exc})") from None
    if kid is None:
        if len(entries) != 1:
            raise AuthError(_WHERE, "the token has no kid and the issuer has several keys")
        chosen = entries[0]
    else:
        found = [k for k in entries if k.get("kid") == kid]
        if not found:
            raise AuthError(_WHERE, f"no key {kid!r} in the issuer's JWKS")
        chosen = found[0]
    try:
        return jwt.PyJWK(chosen, algorithm=chosen.get("alg") or alg)
    except jwt.PyJWTError as exc:
        raise AuthError(_WHERE, f"key {kid!r} of the issuer's JWKS is unusable ({exc})") from None


def verify_ehr_jwt(
    token: str,
    *,
    audience: str,
    issuers: Mapping[str, Path],
    replay: ReplayGuard | None = None,
) -> EhrClient:
    """Verify an EHR's CDS Hooks JWT (see the module documentation).

    Parameters
    ----------
    token : str
        The compact JWT from ``Authorization: Bearer``.
    audience : str
        The URL of the CDS Hooks endpoint called (the ``aud`` the token must carry).
    issuers : mapping of str to Path
        Trusted issuers and the JWKS file of each.
    replay : ReplayGuard, optional
        Refuses a ``jti`` used before (default: no replay check).

    Raises
    ------
    AuthError
        Any check failed; the message names it.
    """
    import jwt

    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError(_WHERE, f"not a JWT ({exc})") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise AuthError(
            _WHERE, f"algorithm {alg!r} is not accepted (one of {', '.join(ALGORITHMS)})"
        )
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or issuer not in issuers:
        raise AuthError(_WHERE, f"issuer {issuer!r} is not a trusted EHR")
    key = _key(issuers[issuer], header.get("kid"), alg)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_S,
            options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(_WHERE, f"rejected: {exc}") from None
    if float(claims["exp"]) - float(claims["iat"]) > MAX_LIFETIME_S:
        raise AuthError(_WHERE, f"lifetime exp - iat over {MAX_LIFETIME_S} s")
    if float(claims["iat"]) > time.time() + LEEWAY_S:
        raise AuthError(_WHERE, "issued in the future (iat)")
    if replay is not None:
        replay.check(issuer, str(claims["jti"]), float(claims["exp"]))
    return EhrClient(issuer=issuer, subject=str(claims["sub"]), jti=str(claims["jti"]))
