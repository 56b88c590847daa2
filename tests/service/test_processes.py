"""``medsight serve --workers 2`` as a real process: kill -9 of the service and its workers
mid-job (PostgreSQL), and of one worker only (SQLite); every job ends done exactly once."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pydicom
import pytest
import sqlalchemy as sa
from pydicom.uid import generate_uid

from medsight.privacy.audit import verify_log

from .conftest import ADMIN_PASSWORD
from .pacs_servers import free_port, stop_process
from .pg_fixture import fresh_database, postgres_url  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


class Serve:
    """One ``medsight serve --workers N`` subprocess on a settings file."""

    def __init__(self, settings_file: Path, log: Path, workers: int, stall_s: float) -> None:
        self.port = free_port()
        env = dict(os.environ, MEDSIGHT_TEST_STALL_S=str(stall_s), PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        cmd = [sys.executable, "-m", "medsight.cli.app", "serve", "--settings", str(settings_file)]
        cmd += ["--port", str(self.port), "--workers", str(workers), "--log-level", "warning"]
        cmd += ["--analyse", "slow_analyse:analyse"]
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.tail()
            try:
                resp = httpx.get(f"{self.url}/api/ready", timeout=5)
                if resp.status_code == 200 and resp.json()["workers"] >= 2:
                    return resp.json()
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve was not ready in {timeout} s:\n{self.tail()}")

    def children(self) -> list[int]:
        pids: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            pids += [int(p) for p in task.read_text().split()]
        return pids

    def login(self) -> dict:
        form = {"username": "admin", "password": ADMIN_PASSWORD}
        resp = httpx.post(f"{self.url}/api/auth/login", data=form, timeout=10)
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie waiting for its (new) parent counts as dead


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _studies(ct: Path, n: int) -> list[bytes]:
    """``n`` different one-instance CT studies (new study, series and instance UIDs)."""
    out = []
    for _ in range(n):
        ds = pydicom.dcmread(ct)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buf = io.BytesIO()
        ds.save_as(buf)
        out.append(buf.getvalue())
    return out


def _upload(serve: Serve, headers: dict, blobs: list[bytes]) -> list[str]:
    ids = []
    for blob in blobs:
        files = [("files", ("ct.dcm", blob, "application/dicom"))]
        resp = httpx.post(f"{serve.url}/api/studies", files=files, headers=headers, timeout=30)
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["jobs"][0]["id"])
    return ids


def _settings_file(tmp_path: Path, settings, database_url: str | None) -> Path:
    values = {
        "home": str(settings.home),
        "packages": [str(p) for p in settings.packages],
        "admin_password": ADMIN_PASSWORD,
        "job_lease_s": 5.0,  # short, yet a loaded 2-core machine renews it in time
        "worker_poll_s": 0.1,
    }
    if database_url:
        values["database_url"] = database_url
    file = tmp_path / "settings.json"
    file.write_text(json.dumps(values))
    return file


def _stalled(home: Path) -> dict[str, int]:
    """Study UID -> PID of the worker stalled on it."""
    marks = home / "stalls"
    if not marks.is_dir():
        return {}
    marked = [p for p in marks.iterdir() if p.name != "release"]
    return {p.name: int(p.read_text() or 0) for p in marked if p.read_text()}


def _wait_done(serve: Serve, headers: dict, job_ids: list[str], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = [
            httpx.get(f"{serve.url}/api/jobs/{j}", headers=headers, timeout=10).json()
            for j in job_ids
        ]
        if all(j["state"] in ("done", "failed") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, f"jobs not done in {timeout} s: {jobs}\n{serve.tail()}"
        time.sleep(0.2)


def _requeued(home: Path) -> list[str]:
    lines = (home / "audit" / "service.jsonl").read_text().splitlines()
    return sorted(
        r["inputs"]["job"] for r in map(json.loads, lines) if r.get("action") == "requeue_job"
    )


def _check_results(home: Path, jobs: list[dict], requeued: set[str], store_url: str) -> None:
    assert [j["state"] for j in jobs] == ["done"] * len(jobs), jobs
    assert {j["id"]: j["attempts"] for j in jobs} == {
        j["id"]: 2 if j["id"] in requeued else 1 for j in jobs
    }
    results = home / "results"
    assert sorted(p.name for p in results.iterdir()) == sorted(j["id"] for j in jobs)  # no partial
    for job in jobs:
        assert (results / job["id"] / "report.json").is_file()
        assert not (results / job["id"] / "half-written.txt").exists()
    engine = sa.create_engine(store_url)
    with engine.connect() as conn:  # one row per job: nothing duplicated
        assert conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar() == len(jobs)
    engine.dispose()
    assert _requeued(home) == sorted(requeued)
    assert verify_log(home / "audit" / "service.jsonl").ok  # several writer processes, one chain


def test_kill_9_of_serve_and_its_workers_loses_and_doubles_nothing(
    tmp_path,
    settings,
    postgres_url,  # noqa: F811
    pydicom_file,
):
    url = fresh_database(postgres_url)
    file = _settings_file(tmp_path, settings, url)
    serve = Serve(file, tmp_path / "serve.log", workers=2, stall_s=600)
    try:
        serve.wait_ready()
        headers = serve.login()
        job_ids = _upload(serve, headers, _studies(pydicom_file("CT_small.dcm"), 3))
        _wait(lambda: len(_stalled(settings.home)) == 2, 60, "two workers never stalled")
        workers = serve.children()
        assert len(workers) == 2 and set(_stalled(settings.home).values()) == set(workers)
        for pid in [serve.proc.pid, *workers]:
            os.kill(pid, signal.SIGKILL)
        serve.proc.wait(10)
        _wait(lambda: all(map(_gone, workers)), 10, "worker processes outlived kill -9")
    finally:
        stop_process(serve.proc, signal.SIGKILL)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, state, attempts FROM jobs")).all()
    engine.dispose()
    running = {r.id for r in rows if r.state == "running"}
    assert len(running) == 2 and {r.state for r in rows if r.id not in running} == {"queued"}

    again = Serve(file, tmp_path / "serve.log", workers=2, stall_s=0)
    try:
        again.wait_ready()
        jobs = _wait_done(again, again.login(), job_ids, 180)
        children = again.children()
    finally:
        stop_process(again.proc, signal.SIGTERM, timeout=40)
    assert again.proc.returncode in (0, -signal.SIGTERM), again.tail()  # uvicorn re-raises it
    _wait(lambda: all(map(_gone, children)), 10, "workers outlived a stopped serve")
    _check_results(settings.home, jobs, running, url)


def test_kill_9_of_one_worker_process(tmp_path, settings, pydicom_file):
    file = _settings_file(tmp_path, settings, None)
    serve = Serve(file, tmp_path / "serve.log", workers=2, stall_s=600)
    try:
        serve.wait_ready()
        headers = serve.login()
        job_ids = _upload(serve, headers, _studies(pydicom_file("CT_small.dcm"), 2))
        _wait(lambda: len(_stalled(settings.home)) == 2, 60, "two workers never stalled")
        first = serve.children()
        victim = _stalled(settings.home)[sorted(_stalled(settings.home))[0]]
        assert victim in first
        os.kill(victim, signal.SIGKILL)
        (settings.home / "stalls" / "release").touch()  # the other worker may go on
        jobs = _wait_done(serve, headers, job_ids, 180)
        _wait(lambda: len(serve.children()) == 2, 20, "the pool did not replace the worker")
        assert victim not in serve.children()
        ready = httpx.get(f"{serve.url}/api/ready", timeout=5)
    finally:
        stop_process(serve.proc, signal.SIGTERM, timeout=40)
    assert ready.status_code == 200, ready.text
    store_url = f"sqlite:///{settings.home / 'medsight.db'}"
    killed = {j["id"] for j in jobs if j["attempts"] == 2}
    assert len(killed) == 1
    _check_results(settings.home, jobs, killed, store_url)
