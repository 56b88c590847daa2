"""Alembic migrations of the store: a fresh database, the schema before migrations (with rows),
an older one missing columns, and a database newer than the code; SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from medsight.core.errors import InvalidInputError
from medsight.service.migrations import BASELINE, current_revision, head_revision
from medsight.service.models import Base
from medsight.service.store import Store

from .pg_fixture import fresh_database, postgres_url  # noqa: F401 (a fixture)

# The tables exactly as medsight created them (``create_all``) before migrations existed,
# written out here so that a change to the models cannot change this test's starting point.
PREVIOUS_SCHEMA = """
CREATE TABLE studies (
    uid VARCHAR(64) NOT NULL, patient_id VARCHAR(64) NOT NULL, modalities VARCHAR(64) NOT NULL,
    description VARCHAR(256) NOT NULL, body_part VARCHAR(64) NOT NULL,
    urgency VARCHAR(16) NOT NULL, source VARCHAR(16) NOT NULL, n_files INTEGER NOT NULL,
    received {ts} NOT NULL, PRIMARY KEY (uid));
CREATE TABLE users (
    id {serial}, username VARCHAR(64) NOT NULL, password_hash VARCHAR(256) NOT NULL,
    role VARCHAR(16) NOT NULL, created {ts} NOT NULL, PRIMARY KEY (id), UNIQUE (username));
CREATE TABLE jobs (
    id VARCHAR(32) NOT NULL, study_uid VARCHAR(64) NOT NULL, packages_key TEXT NOT NULL,
    content_digest VARCHAR(64) NOT NULL, state VARCHAR(16) NOT NULL, error TEXT NOT NULL,
    attempts INTEGER NOT NULL, created {ts} NOT NULL, started {ts},
    finished {ts}, flagged BOOLEAN NOT NULL, suspicion {float} NOT NULL,
    flag_urgency VARCHAR(16) NOT NULL, flag_reason TEXT NOT NULL,
    unknown_significance BOOLEAN NOT NULL, impression TEXT NOT NULL, delivery TEXT NOT NULL,
    worker VARCHAR(128) NOT NULL, heartbeat {ts}, PRIMARY KEY (id),
    UNIQUE (study_uid, packages_key, content_digest),
    FOREIGN KEY(study_uid) REFERENCES studies (uid));
CREATE INDEX ix_jobs_state ON jobs (state);
CREATE TABLE tokens (
    id {serial}, user_id INTEGER NOT NULL, token_sha256 VARCHAR(64) NOT NULL,
    name VARCHAR(64) NOT NULL, created {ts} NOT NULL, expires {ts},
    PRIMARY KEY (id), FOREIGN KEY(user_id) REFERENCES users (id), UNIQUE (token_sha256));
CREATE TABLE feedback (
    id {serial}, job_id VARCHAR(32) NOT NULL, finding_index INTEGER NOT NULL,
    finding_code VARCHAR(128) NOT NULL, model_id VARCHAR(128) NOT NULL, ai_positive BOOLEAN,
    verdict VARCHAR(16) NOT NULL, comment TEXT NOT NULL, username VARCHAR(64) NOT NULL,
    time {ts} NOT NULL, PRIMARY KEY (id), UNIQUE (job_id, finding_index, username),
    FOREIGN KEY(job_id) REFERENCES jobs (id));
"""
T0 = dt.datetime(2026, 11, 30, 8, 0, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


def _execute_script(url: str, script: str) -> None:
    engine = sa.create_engine(url)
    pg = engine.dialect.name == "postgresql"
    script = script.format(
        serial="SERIAL NOT NULL" if pg else "INTEGER NOT NULL",
        float="DOUBLE PRECISION" if pg else "DOUBLE",
        ts="TIMESTAMP" if pg else "DATETIME",
    )
    with engine.begin() as conn:
        for statement in filter(str.strip, script.split(";")):
            conn.execute(sa.text(statement))
    engine.dispose()


def _insert_rows(url: str, jobs_columns: str = "full") -> None:
    engine = sa.create_engine(url)
    job = {
        "id": "j1",
        "study_uid": "1.2.3",
        "packages_key": "m@1",
        "content_digest": "d",
        "state": "done",
        "error": "",
        "attempts": 1,
        "created": T0,
        "flagged": True,
        "suspicion": 0.75,
    }
    if jobs_columns == "full":
        job |= {
            "flag_urgency": "urgent",
            "flag_reason": "nodule",
            "unknown_significance": False,
            "impression": "one finding",
            "delivery": "",
            "worker": "",
        }
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (username, password_hash, role, created) "
                "VALUES ('ana', 'h', 'radiologist', :t)"
            ),
            {"t": T0},
        )
        conn.execute(
            sa.text(
                "INSERT INTO studies (uid, patient_id, modalities, description, body_part, "
                "urgency, source, n_files, received) "
                "VALUES ('1.2.3', 'P1', 'CT', 'chest', 'CHEST', 'routine', 'upload', 2, :t)"
            ),
            {"t": T0},
        )
        names = ", ".join(job)
        conn.execute(
            sa.text(f"INSERT INTO jobs ({names}) VALUES ({', '.join(':' + k for k in job)})"), job
        )
    engine.dispose()


def _schema_diff(store: Store) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def _revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return current_revision(conn)


def test_a_fresh_database_is_migrated_to_the_models(url):
    store = Store(url)
    assert _revision(store) == head_revision() != BASELINE
    assert _schema_diff(store) == []  # the revisions build exactly what the models declare
    assert Store(url).migration == f"at {head_revision()}"  # a second start does nothing
    store.engine.dispose()


def test_the_previous_schema_is_adopted_with_its_rows(url):
    _execute_script(url, PREVIOUS_SCHEMA)
    _insert_rows(url)
    store = Store(url)
    assert store.migration.startswith("adopted an unversioned database (added nothing)")
    assert _revision(store) == head_revision()
    assert _schema_diff(store) == []
    job = store.get_job("j1")
    assert (job.state, job.impression, job.flag_urgency, job.suspicion) == (
        "done",
        "one finding",
        "urgent",
        0.75,
    )
    assert store.get_study("1.2.3").patient_id == "P1"
    store.set_feedback("j1", 0, "c", "confirm", "ana", "")  # the old rows work with new code
    store.worker_beat("w1", host="h", pid=1)  # and the new table exists
    assert [w.id for w in store.live_workers(60)] == ["w1"]
    store.engine.dispose()


def test_an_older_schema_gets_its_missing_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    newer_columns = (
        "flag_urgency VARCHAR(16) NOT NULL, flag_reason TEXT NOT NULL,\n    unknown_significance "
        "BOOLEAN NOT NULL, impression TEXT NOT NULL, delivery TEXT NOT NULL,\n    worker "
        "VARCHAR(128) NOT NULL, heartbeat {ts}, "
    )
    older = PREVIOUS_SCHEMA.replace(newer_columns, "")
    assert "heartbeat" not in older
    _execute_script(url, older)
    _insert_rows(url, jobs_columns="older")
    store = Store(url)
    assert "jobs.flag_urgency" in store.migration and "jobs.heartbeat" in store.migration
    job = store.get_job("j1")
    assert (job.state, job.suspicion, job.impression, job.worker, job.heartbeat) == (
        "done",
        0.75,
        "",
        "",
        None,
    )
    assert _revision(store) == head_revision()
    store.engine.dispose()


def test_a_database_newer_than_the_code_is_refused(url):
    Store(url).engine.dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    with pytest.raises(InvalidInputError, match=r"9999_from_the_future.*newer medsight"):
        Store(url)


def test_concurrent_starts_migrate_once(postgres_url):  # noqa: F811
    url = fresh_database(postgres_url)
    stores: list[Store] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(Store(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(stores) == 3
    assert sorted(s.migration.startswith("upgraded") for s in stores) == [False, False, True]
    for s in stores:
        s.engine.dispose()
