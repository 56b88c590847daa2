"""``medsight user add|passwd|list|disable|enable``: the service's accounts, from a shell.

Works on the service's store directly (the home folder's SQLite, or the settings'
``database_url``), with or without ``medsight serve`` running, so an administrator can change
the first admin password, recover a locked-out admin, or script the accounts of a deployment.
The same rules as ``/api/users`` apply (:mod:`medsight.service.auth`: the password policy,
never disabling or demoting the last active admin; disabling ends the user's sessions), and
every change is written to the service's audit trail with the actor ``cli:<login name>``.

Passwords are asked twice on the terminal (hidden), or read from one line of standard input
with ``--password-stdin`` for scripts; never from the command line, where ``ps`` shows them.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

user_app = typer.Typer(
    name="user",
    help="Manage the service's user accounts (works while the service runs or not).",
    no_args_is_help=True,
)

_Home = Annotated[
    Path | None,
    typer.Option("--home", help="The service's home folder (default: the settings' home)."),
]
_Settings = Annotated[
    Path | None,
    typer.Option("--settings", help="TOML/JSON settings file (default $MEDSIGHT_SETTINGS)."),
]
_Stdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from one line of standard input."),
]


def _open(home: Path | None, settings_file: Path | None) -> tuple[Any, Any]:
    """The store and audit trail of the service at ``home`` / ``settings_file``."""
    from medsight.core.errors import InvalidInputError
    from medsight.service import load_settings
    from medsight.service.audit import AuditTrail
    from medsight.service.store import Store

    settings = load_settings(settings_file)
    if home is not None:
        if not home.is_dir():
            raise InvalidInputError(
                f"--home {home}", "is not a folder", hint="give the home of `medsight serve`"
            )
        settings = settings.model_copy(update={"home": home})
    if settings.database_url is None and not (settings.home / "medsight.db").is_file():
        raise InvalidInputError(
            f"home {settings.home}",
            "holds no service store (medsight.db)",
            hint="start `medsight serve` once with this home, or pass the right --home",
        )
    store = Store(settings.resolved_database_url())
    return store, AuditTrail(settings.home / "audit" / "service.jsonl")


def _audit(trail: Any, action: str, **what: object) -> None:
    trail.record(f"cli:{getpass.getuser()}", "", action, **what)


def _password(from_stdin: bool) -> str:
    from medsight.service.auth import PASSWORD_POLICY

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(
        typer.prompt(f"New password ({PASSWORD_POLICY})", hide_input=True, confirmation_prompt=True)
    )


@user_app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="1-64 letters, digits or underscores.")],
    role: Annotated[
        str, typer.Option(help="viewer, radiologist or admin.", case_sensitive=False)
    ] = "viewer",
    home: _Home = None,
    settings_file: _Settings = None,
    password_stdin: _Stdin = False,
) -> None:
    """Create a user with a role."""
    from medsight.core.errors import InvalidInputError
    from medsight.service.auth import create_user
    from medsight.service.settings import Role

    try:
        chosen = Role(role.lower())
    except ValueError as exc:
        raise InvalidInputError(
            "--role", f"{role!r} is not a role", hint="use viewer, radiologist or admin"
        ) from exc
    store, trail = _open(home, settings_file)
    create_user(store, username, _password(password_stdin), chosen)
    _audit(trail, "create_user", username=username, new_role=chosen.value)
    typer.echo(f"created user {username} ({chosen.value})")


@user_app.command("passwd")
def passwd(
    username: Annotated[str, typer.Argument(help="Whose password to set.")],
    home: _Home = None,
    settings_file: _Settings = None,
    password_stdin: _Stdin = False,
) -> None:
    """Set a user's password (ends their login sessions; API tokens stay)."""
    from medsight.service.auth import set_password

    store, trail = _open(home, settings_file)
    set_password(store, username, _password(password_stdin))
    _audit(trail, "change_password", username=username, by_admin=True)
    typer.echo(f"password of {username} changed")


@user_app.command("list")
def list_(home: _Home = None, settings_file: _Settings = None) -> None:
    """List the users: name, role, active or disabled, valid tokens, created."""
    from medsight.service.auth import list_users

    store, _ = _open(home, settings_file)
    users = list_users(store)
    width = max([len(u.username) for u in users] + [8])
    typer.echo(f"{'username':<{width}}  {'role':<11}  {'state':<8}  tokens  created")
    for u in users:
        state = "active" if u.active else "disabled"
        created = u.created.strftime("%Y-%m-%d %H:%M")
        typer.echo(
            f"{u.username:<{width}}  {u.role.value:<11}  {state:<8}  {u.sessions:>6}  {created}"
        )


@user_app.command("disable")
def disable(
    username: Annotated[str, typer.Argument(help="Who to disable.")],
    home: _Home = None,
    settings_file: _Settings = None,
) -> None:
    """Disable a user: no login, their sessions and tokens stop (never the last admin)."""
    _set_active(username, False, home, settings_file)


@user_app.command("enable")
def enable(
    username: Annotated[str, typer.Argument(help="Who to enable again.")],
    home: _Home = None,
    settings_file: _Settings = None,
) -> None:
    """Enable a disabled user again (with the password they had)."""
    _set_active(username, True, home, settings_file)


def _set_active(username: str, active: bool, home: Path | None, settings_file: Path | None) -> None:
    from medsight.service.auth import set_active

    store, trail = _open(home, settings_file)
    set_active(store, username, active)
    verb = "enable" if active else "disable"
    _audit(trail, f"{verb}_user", username=username)
    typer.echo(f"{verb}d user {username}")


def register(app: typer.Typer) -> None:
    """Add the ``user`` command group to ``app``."""
    app.add_typer(user_app, name="user")
