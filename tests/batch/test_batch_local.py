"""medsight batch on the local engine: one task per study, idempotent, retried, kill-safe."""

import json
from pathlib import Path

import pytest

from medsight.batch import discover_tasks, run_batch
from medsight.batch.runner import DONE, SUMMARY
from medsight.cli.app import main

HERE = Path(__file__).parent


def _log(tmp_path):
    return tmp_path / "attempts.log"


def _attempts(tmp_path):
    lines = _log(tmp_path).read_text().split() if _log(tmp_path).exists() else []
    counts = {}
    for folder in lines[::2]:
        counts[folder] = counts.get(folder, 0) + 1
    return counts


def test_discover_tasks_one_per_study_with_stable_ids(archive):
    tasks = discover_tasks(archive)
    assert len(tasks) == 4
    again = discover_tasks(archive)
    assert [t.id for t in tasks] == [t.id for t in again]
    assert [t.folder for t in tasks] == [t.folder for t in again]
    two = next(t for t in tasks if len(t.files) == 2)  # study A shares its folder with B
    assert two.path is None
    with two.input_path() as path:
        found = sorted(p.name for p in path.rglob("*") if p.is_file())
    assert found == ["a1.dcm", "a2.dcm"]  # only its own files, never B's
    own = next(t for t in tasks if t.files == ("own/c.dcm",))
    assert own.path == "own"
    assert {t.kind for t in tasks} == {"dicom", "file"}


def test_qc_writes_one_folder_per_study_and_rerun_skips(archive, tmp_path):
    out = tmp_path / "out"
    tasks = discover_tasks(archive)
    first = run_batch("qc", tasks, out, workers=2)
    assert first.counts() == {"done": 4, "skipped": 0, "failed": 0}
    for t in tasks:
        report = json.loads((out / t.folder / "qc.json").read_text())
        assert report["series"] and (out / t.folder / DONE).is_file()
    stamp = (out / tasks[0].folder / "qc.json").stat().st_mtime_ns
    second = run_batch("qc", tasks, out, workers=2)
    assert second.counts() == {"done": 0, "skipped": 4, "failed": 0}
    assert (out / tasks[0].folder / "qc.json").stat().st_mtime_ns == stamp  # not rewritten
    (out / tasks[1].folder / DONE).unlink()  # as if it had died before its marker
    (out / tasks[1].folder / "half_written.tmp").write_text("x")
    third = run_batch("qc", tasks, out, workers=2)
    assert third.counts() == {"done": 1, "skipped": 3, "failed": 0}
    assert not (out / tasks[1].folder / "half_written.tmp").exists()  # redone from scratch
    assert not list((out / ".batch" / "staging").iterdir())


def test_failing_study_is_retried_then_listed_and_retried_on_rerun(archive, tmp_path):
    out = tmp_path / "out"
    tasks = discover_tasks(archive)
    bad = tasks[2].folder
    options = {"log": str(_log(tmp_path)), "fail": [bad]}
    result = run_batch("faulty_ops:fail", tasks, out, options=options, retries=2)
    assert result.counts() == {"done": 3, "skipped": 0, "failed": 1}
    (failed,) = result.failed
    assert failed.folder == bad and failed.attempts == 3 and "boom" in failed.error
    assert _attempts(tmp_path)[bad] == 3
    assert not (out / bad).exists()  # nothing of the failed study is published
    summary = json.loads((out / SUMMARY).read_text())
    listed = [s for s in summary["studies"] if s["status"] == "failed"]
    assert [s["folder"] for s in listed] == [bad] and "boom" in listed[0]["error"]
    again = run_batch("faulty_ops:fail", tasks, out, options=options, retries=0)
    assert again.counts() == {"done": 0, "skipped": 3, "failed": 1}
    assert _attempts(tmp_path)[bad] == 4  # the failed one was tried again, the others not
    assert all(n == 1 for f, n in _attempts(tmp_path).items() if f != bad)


def test_bad_input_is_not_retried(archive, tmp_path):
    tasks = discover_tasks(archive)
    options = {"log": str(_log(tmp_path)), "fail": [tasks[0].folder]}
    result = run_batch("faulty_ops:bad_input", tasks, tmp_path / "out", options=options)
    assert [r.attempts for r in result.failed] == [1]
    assert "not an image" in result.failed[0].error


def test_worker_killed_mid_study_is_redone_and_never_marked_half_done(archive, tmp_path):
    out = tmp_path / "out"
    tasks = discover_tasks(archive)
    crash = [tasks[0].folder, tasks[3].folder]
    options = {"log": str(_log(tmp_path)), "crash": crash}
    result = run_batch("faulty_ops:crash_once", tasks, out, options=options, retries=1)
    assert result.counts() == {"done": 4, "skipped": 0, "failed": 0}
    for t in tasks:
        assert (out / t.folder / "part2.txt").read_text() == "second half"  # complete
        assert (out / t.folder / DONE).is_file()
    assert {r.folder: r.attempts for r in result.results} == {
        t.folder: 2 if t.folder in crash else 1 for t in tasks
    }
    pids = _log(tmp_path).read_text().split()
    killed = [pids[i + 1] for i in range(0, len(pids), 2) if pids[i] == crash[0]]
    assert len(set(killed)) == 2  # the retry ran in a new process
    assert not list((out / ".batch" / "staging").iterdir())  # the killed attempt's half output


def test_worker_killed_with_no_retry_is_listed_not_done(archive, tmp_path):
    out = tmp_path / "out"
    tasks = discover_tasks(archive)
    options = {"log": str(_log(tmp_path)), "crash": [tasks[1].folder]}
    result = run_batch("faulty_ops:crash_once", tasks, out, options=options, retries=0)
    (failed,) = result.failed
    assert failed.folder == tasks[1].folder and "worker process died" in failed.error
    assert not (out / tasks[1].folder).exists()
    rerun = run_batch("faulty_ops:crash_once", tasks, out, options=options, retries=0)
    assert rerun.counts() == {"done": 1, "skipped": 3, "failed": 0}  # the marker: no 2nd crash


def test_cli_batch_qc_and_deid_summary_and_exit_codes(archive, tmp_path, capsys):
    out = tmp_path / "qc"
    assert main(["batch", "qc", str(archive), "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "4 done" in shown and "study_" in shown
    assert main(["batch", "qc", str(archive), "--out", str(out)]) == 0
    assert "4 skipped" in capsys.readouterr().out
    deid_out = tmp_path / "deid"
    key = tmp_path / "key.json"
    args = ["batch", "deid", str(archive), "--out", str(deid_out), "--key-file", str(key)]
    assert main(args) == 0
    tasks = discover_tasks(archive)
    text = " ".join(p.read_bytes().decode("latin-1") for p in deid_out.rglob("*") if p.is_file())
    for t in tasks:  # no original Study UID and no patient in the de-identified output
        assert t.id not in text and t.folder not in text
    assert "Doe^PA" not in text and "PA" not in {p.name for p in deid_out.rglob("*")}
    assert main([*args[:3], str(tmp_path / "missing"), *args[4:]]) == 2


def test_unknown_operation_and_address_on_local_are_refused(archive, tmp_path):
    from medsight.core.errors import InvalidInputError

    tasks = discover_tasks(archive)
    with pytest.raises(InvalidInputError, match="unknown operation"):
        run_batch("segment", tasks, tmp_path / "out")
    with pytest.raises(InvalidInputError, match="only the ray engine"):
        run_batch("qc", tasks, tmp_path / "out", address="127.0.0.1:6379")


def test_cli_exit_code_is_one_when_a_study_failed(archive, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "no_such_package"
    args = ["batch", "analyze", str(archive), "--out", str(out), "--model", str(missing)]
    assert main([*args, "--retries", "0"]) == 1
    shown = capsys.readouterr().out
    assert "4 failed" in shown and "no_such_package" in shown
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["counts"]["failed"] == 4


def test_a_second_concurrent_run_on_the_same_out_is_refused(archive, tmp_path):
    import fcntl

    from medsight.core.errors import InvalidInputError

    out = tmp_path / "out"
    (out / ".batch").mkdir(parents=True)
    with (out / ".batch" / "lock").open("w") as held:  # as a running batch holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(InvalidInputError, match="another batch run"):
            run_batch("qc", discover_tasks(archive), out)
    assert run_batch("qc", discover_tasks(archive), out).counts()["done"] == 4
