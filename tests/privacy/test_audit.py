"""The audit log detects edited, inserted, reordered and removed lines, including the last."""

from __future__ import annotations

import json

import pytest

from medsight.privacy.audit import append_entry, head_path, verify_log
from medsight.privacy.errors import AuditLogError


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "audit" / "deid.jsonl"
    for i in range(4):
        append_entry(
            path,
            command=["medsight", "deid", f"in{i}", f"out{i}"],
            inputs={"path": f"in{i}", "files": 3},
            key_id="6bccb3a78bd7",
            outputs=[{"path": f"{i}.dcm", "sha256": "ab" * 32}],
        )
    return path


def _lines(path):
    return path.read_text().splitlines()


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")


def test_intact_log_verifies(log):
    result = verify_log(log)
    assert result.ok and result.entries == 4
    records = [json.loads(line) for line in _lines(log)]
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert records[1]["prev"] == records[0]["hash"] and records[0]["user"]
    assert json.loads(head_path(log).read_text())["hash"] == result.head == records[-1]["hash"]


def test_edited_line(log):
    lines = _lines(log)
    lines[1] = lines[1].replace('"in1"', '"elsewhere"')
    _write(log, lines)
    assert verify_log(log).problems == ["line 2: hash does not match its content (edited)"]


def test_edited_line_with_recomputed_hash_breaks_the_chain(log):
    from medsight.privacy.audit import _hash

    lines = _lines(log)
    record = json.loads(lines[1])
    record["key_id"] = "000000000000"
    record["hash"] = _hash(record)
    lines[1] = json.dumps(record)
    _write(log, lines)
    problems = verify_log(log).problems
    assert problems and problems[0].startswith("line 3: does not follow")


def test_removed_middle_line(log):
    lines = _lines(log)
    _write(log, lines[:1] + lines[2:])
    problems = verify_log(log).problems
    assert any("line 2: does not follow" in p for p in problems)


def test_inserted_and_reordered_lines(log):
    lines = _lines(log)
    _write(log, [lines[0], lines[2], lines[1], lines[3]])
    assert not verify_log(log).ok
    _write(log, [*lines[:2], lines[1], *lines[2:]])
    assert not verify_log(log).ok


def test_removed_last_line_caught_by_head_file(log):
    _write(log, _lines(log)[:-1])
    (problem,) = verify_log(log).problems
    assert "head file records 4 lines" in problem


def test_missing_head_is_reported_and_missing_log_is_an_error(log, tmp_path):
    head_path(log).unlink()
    assert "removal of the last lines is undetectable" in verify_log(log).problems[0]
    with pytest.raises(AuditLogError, match="does not exist"):
        verify_log(tmp_path / "nope.jsonl")


def test_chain_continues_across_long_and_non_ascii_records(tmp_path):
    """Appends read only the log's tail: records longer than the first read chunk and
    multi-byte characters must not break the chain."""
    log = tmp_path / "audit.jsonl"
    for i in range(30):
        note = ("é" * 3000) if i % 7 == 0 else "x"  # > 4096 bytes in UTF-8 every 7th record
        append_entry(log, command=["t", str(i)], inputs={"note": note}, key_id="k", outputs=[])
    result = verify_log(log)
    assert result.ok and result.entries == 30
    assert json.loads(log.read_text(encoding="utf-8").splitlines()[-1])["seq"] == 30
