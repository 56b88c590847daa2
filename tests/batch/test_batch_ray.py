"""medsight batch on Ray: a local instance (``ray.init``) on 127.0.0.1, with the same
semantics as the local engine, including a Ray worker that kills its own process mid-study."""

import os
from pathlib import Path

import pytest

from medsight.batch import discover_tasks, run_batch
from medsight.batch.runner import DONE

if os.environ.get("CI") == "true":  # CI installs the scale extra: a missing ray is a failure
    import ray
else:
    ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _loopback_only(isolated_network):
    """Every Ray test needs the loopback-only network (see tests/batch/conftest.py)."""


HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def ray_local(isolated_network):
    assert not ray.is_initialized()
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(
        address="local",
        include_dashboard=False,
        num_cpus=2,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"PYTHONPATH": path}},  # workers import faulty_ops
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


def _attempts(log, folder):
    words = Path(log).read_text().split()
    return sum(1 for w in words[::2] if w == folder)


def test_ray_qc_and_rerun_skips(ray_local, archive, tmp_path):
    out = tmp_path / "out"
    tasks = discover_tasks(archive)
    first = run_batch("qc", tasks, out, engine="ray")
    assert first.counts() == {"done": 4, "skipped": 0, "failed": 0}
    assert all((out / t.folder / "qc.json").is_file() for t in tasks)
    assert ray.is_initialized()  # a connection it did not make is left open
    second = run_batch("qc", tasks, out, engine="ray")
    assert second.counts() == {"done": 0, "skipped": 4, "failed": 0}


def test_ray_worker_killing_itself_mid_study_is_redone(ray_local, archive, tmp_path):
    out = tmp_path / "out"
    tasks = discover_tasks(archive)
    log = tmp_path / "attempts.log"
    options = {"log": str(log), "crash": [tasks[1].folder]}
    result = run_batch("faulty_ops:crash_once", tasks, out, options=options, engine="ray")
    assert result.counts() == {"done": 4, "skipped": 0, "failed": 0}
    assert _attempts(log, tasks[1].folder) == 2
    assert (tmp_path / f"{tasks[1].folder}.crashed").exists()  # it really was killed once
    assert (out / tasks[1].folder / "part2.txt").is_file() and (out / tasks[1].folder / DONE)
    assert not list((out / ".batch" / "staging").iterdir())


def test_ray_failure_retried_then_listed(ray_local, archive, tmp_path):
    out = tmp_path / "out"
    tasks = discover_tasks(archive)
    log = tmp_path / "attempts.log"
    options = {"log": str(log), "fail": [tasks[0].folder]}
    result = run_batch("faulty_ops:fail", tasks, out, options=options, engine="ray", retries=1)
    (failed,) = result.failed
    assert failed.attempts == 2 and "boom" in failed.error
    assert _attempts(log, tasks[0].folder) == 2
    assert not (out / tasks[0].folder).exists()
    bad = run_batch("faulty_ops:bad_input", tasks, tmp_path / "o2", options=options, engine="ray")
    assert [r.attempts for r in bad.failed] == [1]  # bad input: not retried
