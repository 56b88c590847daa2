"""medsight batch on a ``ray start --head`` cluster advertised on 127.0.0.1, started and
stopped here (by its own process session only: no ``ray stop``, which would stop every Ray
of this user)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from medsight.batch import discover_tasks

if os.environ.get("CI") == "true":  # CI installs the scale extra: a missing ray is a failure
    import ray
else:
    ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _loopback_only(isolated_network):
    """Every Ray test needs the loopback-only network (see tests/batch/conftest.py)."""


HERE = Path(__file__).parent
RAY = Path(sys.executable).with_name("ray")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid):
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def _env():
    """Ray's token authentication for the head and the drivers alike (Ray reads
    RAY_AUTH_MODE when it is imported, so the drivers run as their own processes)."""
    env = dict(os.environ, RAY_AUTH_MODE="token")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    return env


@pytest.fixture
def ray_cluster(isolated_network):
    if not RAY.exists():
        pytest.skip("the ray command is not installed")
    assert not ray.is_initialized()
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="msr", dir="/tmp")  # short: Ray's socket paths are long
    env = _env()
    # token mode needs a token: made once in ~/.ray/auth_token if none (Ray's own command)
    subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, capture_output=True)
    cmd = [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
           "--include-dashboard=false", "--num-cpus=2", "--disable-usage-stats",
           f"--temp-dir={temp}"]  # fmt: skip
    log = Path(temp) / "ray_start.log"
    with log.open("wb") as sink:
        head = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=sink, stderr=sink)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while "block forever" not in log.read_text(errors="replace"):  # --block: all started
            if head.poll() is not None:
                pytest.fail(f"ray start failed: {log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the Ray head did not come up in 90 s")
            time.sleep(0.5)
        yield address, env
    finally:
        head.send_signal(signal.SIGTERM)  # --block: stops the processes it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        time.sleep(1)
        for pid in _session_pids(head.pid):  # anything of that cluster still running
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


CRASH = """
import json, sys
from medsight.batch import discover_tasks, run_batch
archive, out, log, address = sys.argv[1:5]
tasks = discover_tasks(archive)
options = {"log": log, "crash": [tasks[2].folder]}
result = run_batch("faulty_ops:crash_once", tasks, out, options=options, engine="ray",
                   address=address)
print(json.dumps({r.folder: [r.status, r.attempts] for r in result.results}))
"""


def test_ray_start_cluster_runs_batch_with_a_killed_worker(ray_cluster, archive, tmp_path):
    address, env = ray_cluster
    out = tmp_path / "qc"
    cli = [sys.executable, "-m", "medsight.cli.app", "batch", "qc", str(archive), "--out"]
    done = subprocess.run(
        [*cli, str(out), "--engine", "ray", "--address", address],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "4 done" in done.stdout
    tasks = discover_tasks(archive)
    log = tmp_path / "attempts.log"
    run = subprocess.run(
        [sys.executable, "-c", CRASH, str(archive), str(tmp_path / "o2"), str(log), address],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert all(status == "done" for status, _ in outcome.values())
    assert outcome[tasks[2].folder][1] == 2  # killed once, redone
    assert (tmp_path / f"{tasks[2].folder}.crashed").exists()
    assert (tmp_path / "o2" / tasks[2].folder / "part2.txt").is_file()
