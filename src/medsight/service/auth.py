"""Users, passwords (scrypt) and bearer tokens (random; only their sha256 is stored).

Examples
--------
>>> from medsight.service.store import Store
>>> store = Store("sqlite://")
>>> create_user(store, "ana", "a long passphrase", Role.RADIOLOGIST)
>>> token = login(store, "ana", "a long passphrase", hours=1)
>>> authenticate(store, token).role.value
'radiologist'
>>> login(store, "ana", "wrong", hours=1)
Traceback (most recent call last):
...
medsight.service.errors.AuthError: wrong username or password
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from medsight.core.errors import InvalidInputError
from medsight.service.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    TooManyAttemptsError,
)
from medsight.service.models import TokenRow, UserRow, now
from medsight.service.settings import Role
from medsight.service.store import Store

__all__ = [
    "LoginThrottle",
    "User",
    "authenticate",
    "create_token",
    "create_user",
    "hash_password",
    "login",
    "require",
    "revoke",
    "verify_password",
]

_N, _R, _P = 2**14, 8, 1


@dataclasses.dataclass(frozen=True)
class User:
    """The authenticated caller of a request."""

    username: str
    role: Role


def hash_password(password: str) -> str:
    """``scrypt$<salt hex>$<hash hex>`` for ``password``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a :func:`hash_password` string (constant time)."""
    try:
        _, salt, digest = stored.split("$")
        mine = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=_N, r=_R, p=_P)
    except ValueError:
        return False
    return hmac.compare_digest(mine.hex(), digest)


def create_user(store: Store, username: str, password: str, role: Role | str) -> None:
    """Add a user; :class:`ConflictError` if the name is taken."""
    if not username or len(username) > 64 or not username.replace("_", "").isalnum():
        raise InvalidInputError("username", "use 1-64 letters, digits or underscores")
    if len(password) < 8:
        raise InvalidInputError("password", "must have at least 8 characters")
    try:
        with store.session() as ses:
            ses.add(
                UserRow(username=username, password_hash=hash_password(password), role=Role(role))
            )
    except IntegrityError as exc:
        raise ConflictError(f"user {username}", "already exists") from exc


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: Store, username: str, *, name: str, hours: float | None) -> str:
    """A new bearer token for ``username`` (``hours=None``: no expiry, e.g. an API token)."""
    token = secrets.token_urlsafe(32)
    with store.session() as ses:
        user = ses.scalars(select(UserRow).where(UserRow.username == username)).first()
        if user is None:
            raise AuthError(f"user {username}", "does not exist")
        expires = None if hours is None else now() + dt.timedelta(hours=hours)
        ses.add(TokenRow(user_id=user.id, token_sha256=_sha(token), name=name, expires=expires))
    return token


class LoginThrottle:
    """Refuses logins for a username after ``limit`` failures within ``window_s`` seconds.

    In memory, per process: it slows down password guessing against one account; a
    deployment facing the internet still needs a rate limit in front (reverse proxy).

    Examples
    --------
    >>> throttle = LoginThrottle(limit=2, window_s=60)
    >>> throttle.failed("ana"); throttle.failed("ana")
    >>> throttle.check("ana")
    Traceback (most recent call last):
    ...
    medsight.service.errors.TooManyAttemptsError: user ana: too many failed logins (wait 60 s)
    """

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, username: str) -> list[float]:
        cutoff = time.monotonic() - self.window_s
        recent = [t for t in self._failures.get(username, []) if t > cutoff]
        self._failures[username] = recent
        return recent

    def check(self, username: str) -> None:
        """Raise :class:`TooManyAttemptsError` while ``username`` is locked out."""
        with self._lock:
            if len(self._recent(username)) >= self.limit:
                raise TooManyAttemptsError(
                    f"user {username}", f"too many failed logins (wait {self.window_s:.0f} s)"
                )

    def failed(self, username: str) -> None:
        """Count one failed login."""
        with self._lock:
            self._recent(username).append(time.monotonic())

    def succeeded(self, username: str) -> None:
        """Forget the failures of ``username``."""
        with self._lock:
            self._failures.pop(username, None)


def login(
    store: Store,
    username: str,
    password: str,
    *,
    hours: float,
    throttle: LoginThrottle | None = None,
) -> str:
    """A session token for a correct username and password; :class:`AuthError` otherwise."""
    if throttle is not None:
        throttle.check(username)
    with store.session() as ses:
        user = ses.scalars(select(UserRow).where(UserRow.username == username)).first()
    if user is None or not verify_password(password, user.password_hash):
        if throttle is not None:
            throttle.failed(username)
        raise AuthError(None, "wrong username or password")
    if throttle is not None:
        throttle.succeeded(username)
    return create_token(store, username, name="login", hours=hours)


def authenticate(store: Store, token: str) -> User:
    """The user a bearer token belongs to; :class:`AuthError` if unknown or expired."""
    with store.session() as ses:
        row = ses.execute(
            select(TokenRow, UserRow)
            .join(UserRow, TokenRow.user_id == UserRow.id)
            .where(TokenRow.token_sha256 == _sha(token))
        ).first()
    if row is None:
        raise AuthError(None, "invalid token (log in again)")
    tok, user = row
    if tok.expires is not None and tok.expires < now():
        raise AuthError(None, "token expired (log in again)")
    return User(user.username, Role(user.role))


def revoke(store: Store, token: str) -> bool:
    """Delete a token (log out); True when it existed."""
    from sqlalchemy import delete

    with store.session() as ses:
        res = ses.execute(delete(TokenRow).where(TokenRow.token_sha256 == _sha(token)))
    return res.rowcount == 1  # type: ignore[attr-defined]


def require(user: User, role: Role) -> User:
    """``user`` if their role is at least ``role``; :class:`ForbiddenError` otherwise."""
    if user.role.rank < role.rank:
        raise ForbiddenError(f"user {user.username}", f"needs the {role} role for this")
    return user
