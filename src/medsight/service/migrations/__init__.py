"""Schema migrations of the service store (Alembic), run by the store when it starts.

:func:`upgrade` brings a database to the newest revision this medsight knows (``head``):

- an empty database gets every revision, from ``0001_baseline``;
- a database made before migrations existed (the service tables, no ``alembic_version``) is
  first given any baseline column it lacks (older medsight versions added columns one by one)
  and stamped ``0001_baseline``, then upgraded, so its rows are kept;
- a database at a revision this code does not know (made by a newer medsight) is refused with
  :class:`~medsight.core.errors.InvalidInputError` instead of being run on a schema it cannot
  read.

Concurrent starts (a service and its worker processes) are serialised: on PostgreSQL by a
transaction-level advisory lock, on a SQLite file by an exclusive lock on a file next to it.
New revisions go in ``versions/`` (``alembic revision`` with ``script_location`` pointing here
writes one from ``script.py.mako``); each must keep :mod:`medsight.service.models` and the
migrated schema equal, which ``tests/service/test_migrations.py`` checks.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, inspect, literal, text
from sqlalchemy.engine import Engine

from medsight.core.errors import InvalidInputError

__all__ = ["BASELINE", "current_revision", "head_revision", "upgrade"]

BASELINE = "0001_baseline"
_HERE = Path(__file__).parent
_LEGACY_TABLES = ("users", "tokens", "studies", "jobs", "feedback")
_PG_LOCK_KEY = 0x6D656473  # "meds": the advisory lock that serialises migrations


def _config(connection: Connection | None = None) -> object:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision this code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()  # type: ignore[arg-type]
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The database's revision (None: not under migrations)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _fill_baseline_columns(conn: Connection) -> list[str]:
    """Add the baseline columns an unversioned database lacks, each with its model default."""
    from medsight.service.models import Base

    added = []
    inspector = inspect(conn)
    for name in _LEGACY_TABLES:
        table = Base.metadata.tables[name]
        if not inspector.has_table(name):
            table.create(conn)
            added.append(name)
            continue
        present = {c["name"] for c in inspector.get_columns(name)}
        for col in table.columns:
            if col.name in present:
                continue
            default = col.default.arg if col.default is not None and col.default.is_scalar else None
            ddl = f"ALTER TABLE {name} ADD COLUMN {col.name} {col.type.compile(conn.dialect)}"
            if default is not None:
                value = literal(default, col.type).compile(
                    dialect=conn.dialect, compile_kwargs={"literal_binds": True}
                )
                ddl += f" DEFAULT {value}" + ("" if col.nullable else " NOT NULL")
            conn.execute(text(ddl))
            added.append(f"{name}.{col.name}")
    return added


def upgrade(engine: Engine) -> str:
    """Bring the store at ``engine`` to :func:`head_revision`; returns what it did.

    Raises
    ------
    InvalidInputError
        The database is at a revision this medsight does not know (a newer version made it).
    """
    from alembic import command
    from alembic.script import ScriptDirectory

    head = head_revision()
    with _file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        current = current_revision(conn)
        if current == head:
            return f"at {head}"
        cfg = _config(conn)
        script = ScriptDirectory.from_config(cfg)  # type: ignore[arg-type]
        known = {rev.revision for rev in script.walk_revisions()}
        if current is not None and current not in known:
            where = engine.url.render_as_string(hide_password=True)
            raise InvalidInputError(
                f"database {where}",
                f"is at schema revision {current!r}, which this medsight does not know "
                f"(its newest is {head!r}): a newer medsight made it",
                hint="run the medsight version that made this database, or upgrade medsight",
            )
        did = ""
        if current is None and inspect(conn).has_table("jobs"):
            added = _fill_baseline_columns(conn)
            command.stamp(cfg, BASELINE)  # type: ignore[arg-type]
            did = f"adopted an unversioned database (added {added or 'nothing'}); "
            current = BASELINE
        command.upgrade(cfg, "head")  # type: ignore[arg-type]
        return f"{did}upgraded {current or 'an empty database'} to {head}"
