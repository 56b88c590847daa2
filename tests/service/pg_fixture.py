"""A module-scoped throw-away PostgreSQL cluster and fresh databases in it (for tests here)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from .pacs_servers import free_port
from .pg_server import pg_bin, run_postgres


@pytest.fixture(scope="module")
def postgres_url():
    bindir = pg_bin()
    if bindir is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("PostgreSQL is missing (scripts/system-deps.sh installs postgresql)")
        pytest.skip("PostgreSQL not installed")
    pytest.importorskip("psycopg")
    workdir = Path(tempfile.mkdtemp(prefix="medsight-pg-"))
    workdir.chmod(0o711)  # let the postgres user reach its data folder (names are random)
    try:
        with run_postgres(bindir, workdir, free_port()) as url:
            yield url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def fresh_database(url: str) -> str:
    """Create an empty database on the cluster of ``url``; return its URL."""
    import sqlalchemy

    name = f"t{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"
