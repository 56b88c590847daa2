"""Users, passwords (scrypt) and bearer tokens (random; only their sha256 is stored).

Accounts are managed here, for the API (``/api/users``) and the CLI (``medsight user``) alike:
create, list, change a role, change a password (:data:`PASSWORD_POLICY`), disable and enable.
A disabled account keeps its row (the audit trail names it) but its password hash is prefixed
with ``!`` (a locked account, as in ``shadow(5)``): no password can match it, and disabling
deletes its tokens, so its sessions stop at once. The last active admin can be neither
disabled nor demoted, so the service always keeps someone who can manage it.

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
from sqlalchemy.orm import Session

from medsight.core.errors import InvalidInputError
from medsight.service.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    TooManyAttemptsError,
)
from medsight.service.models import TokenRow, UserRow, now
from medsight.service.settings import Role
from medsight.service.store import Store

__all__ = [
    "PASSWORD_POLICY",
    "LoginThrottle",
    "User",
    "UserInfo",
    "authenticate",
    "check_password",
    "create_token",
    "create_user",
    "hash_password",
    "list_users",
    "login",
    "require",
    "revoke",
    "set_active",
    "set_password",
    "set_role",
    "verify_password",
]

#: What :func:`check_password` asks of a new password (shown to whoever picks one).
PASSWORD_POLICY = "at least 10 characters with at least 5 different ones, not the username"
_LOCKED = "!"

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
        scheme, salt, digest = stored.split("$")
        if scheme != "scrypt":  # e.g. "!scrypt": a disabled account matches no password
            return False
        mine = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=_N, r=_R, p=_P)
    except ValueError:
        return False
    return hmac.compare_digest(mine.hex(), digest)


@dataclasses.dataclass(frozen=True)
class UserInfo:
    """One account as an admin sees it (never its password hash)."""

    username: str
    role: Role
    active: bool
    created: dt.datetime
    sessions: int  # tokens that are still valid (login sessions and API tokens)


def check_password(password: str, username: str) -> None:
    """Refuse a new password that breaks :data:`PASSWORD_POLICY`.

    Examples
    --------
    >>> check_password("correct horse", "ana")
    >>> check_password("short", "ana")
    Traceback (most recent call last):
    ...
    medsight.core.errors.InvalidInputError: password: is too short (5 characters) ...
    """
    problem = None
    if len(password) < 10:
        problem = f"is too short ({len(password)} characters)"
    elif len(password) > 256:
        problem = "is too long (more than 256 characters)"
    elif len(set(password)) < 5:
        problem = f"has only {len(set(password))} different characters"
    elif password.lower() == username.lower():
        problem = "is the username"
    if problem:
        raise InvalidInputError("password", problem, hint=f"use {PASSWORD_POLICY}")


def create_user(store: Store, username: str, password: str, role: Role | str) -> None:
    """Add a user; :class:`ConflictError` if the name is taken."""
    if not username or len(username) > 64 or not username.replace("_", "").isalnum():
        raise InvalidInputError("username", "use 1-64 letters, digits or underscores")
    check_password(password, username)
    try:
        with store.session() as ses:
            ses.add(
                UserRow(username=username, password_hash=hash_password(password), role=Role(role))
            )
    except IntegrityError as exc:
        raise ConflictError(f"user {username}", "already exists") from exc


def _user_row(ses: Session, username: str) -> UserRow:
    row = ses.scalars(select(UserRow).where(UserRow.username == username)).first()
    if row is None:
        raise NotFoundError(f"user {username}", "does not exist")
    return row


def _is_active(row: UserRow) -> bool:
    return not row.password_hash.startswith(_LOCKED)


def _other_active_admins(ses: Session, username: str) -> int:
    rows = ses.scalars(
        select(UserRow).where(UserRow.role == Role.ADMIN.value, UserRow.username != username)
    )
    return sum(_is_active(r) for r in rows)


def list_users(store: Store) -> list[UserInfo]:
    """Every account, by name, with its role, whether it is active and its valid tokens."""
    from sqlalchemy import func, or_

    with store.session() as ses:
        counts = dict(
            ses.execute(
                select(TokenRow.user_id, func.count())
                .where(or_(TokenRow.expires.is_(None), TokenRow.expires > now()))
                .group_by(TokenRow.user_id)
            ).all()
        )
        rows = ses.scalars(select(UserRow).order_by(UserRow.username)).all()
        return [
            UserInfo(r.username, Role(r.role), _is_active(r), r.created, counts.get(r.id, 0))
            for r in rows
        ]


def set_role(store: Store, username: str, role: Role | str) -> None:
    """Change the role of ``username``; the last active admin cannot be demoted."""
    role = Role(role)
    with store.session() as ses:
        row = _user_row(ses, username)
        if (
            row.role == Role.ADMIN.value
            and role != Role.ADMIN
            and _is_active(row)
            and not _other_active_admins(ses, username)
        ):
            raise ConflictError(
                f"user {username}",
                "is the last active admin and cannot lose the admin role",
                hint="give another user the admin role first",
            )
        row.role = role.value


def set_active(store: Store, username: str, active: bool) -> None:
    """Disable (tokens deleted: sessions stop) or enable ``username``; never the last admin."""
    from sqlalchemy import delete

    with store.session() as ses:
        row = _user_row(ses, username)
        if active == _is_active(row):
            return
        if active:
            row.password_hash = row.password_hash.removeprefix(_LOCKED)
            return
        if row.role == Role.ADMIN.value and not _other_active_admins(ses, username):
            raise ConflictError(
                f"user {username}",
                "is the last active admin and cannot be disabled",
                hint="give another user the admin role first",
            )
        row.password_hash = _LOCKED + row.password_hash
        ses.execute(delete(TokenRow).where(TokenRow.user_id == row.id))


def set_password(
    store: Store,
    username: str,
    new: str,
    *,
    old: str | None = None,
    keep_token: str | None = None,
) -> None:
    """Give ``username`` the password ``new`` (:data:`PASSWORD_POLICY`).

    With ``old`` (a user changing their own password) it must be the current one. The user's
    login sessions end, except the one of ``keep_token`` (the request that made the change);
    API tokens stay. A disabled account stays disabled.
    """
    from sqlalchemy import delete

    check_password(new, username)
    with store.session() as ses:
        row = _user_row(ses, username)
        active = _is_active(row)
        if old is not None and (not active or not verify_password(old, row.password_hash)):
            raise InvalidInputError("old_password", "is not the current password")
        row.password_hash = hash_password(new) if active else _LOCKED + hash_password(new)
        stale = delete(TokenRow).where(TokenRow.user_id == row.id, TokenRow.name == "login")
        if keep_token:
            stale = stale.where(TokenRow.token_sha256 != _sha(keep_token))
        ses.execute(stale)


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
    locked = user is not None and not _is_active(user)
    stored = user.password_hash.removeprefix(_LOCKED) if user is not None else ""
    if user is None or not verify_password(password, stored):
        if throttle is not None:
            throttle.failed(username)
        raise AuthError(None, "wrong username or password")
    if locked:  # only someone who knows the password learns that the account is disabled
        raise AuthError(f"user {username}", "is disabled (ask an admin)")
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
    if not _is_active(user):
        raise AuthError(f"user {user.username}", "is disabled (ask an admin)")
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
