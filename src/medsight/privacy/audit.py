"""An append-only, hash-chained audit log (JSON lines) of de-identification runs.

Each line records who ran what (user, host, command line), on which inputs (path, file count and
a digest over the input files), with which key (its key id, never the key), and which files came
out (relative path and sha256).  Every line carries the hash of the line before it (``prev``)
and its own hash (``hash``, a sha256 over the line's other fields in canonical JSON), so editing,
inserting, reordering or deleting a line breaks the chain.

Deleting the *last* lines leaves a valid shorter chain; to catch that, every append also writes a
head file beside the log (``<log>.head``: line count and last hash), and :func:`verify_log`
compares the two.  The limit, honestly: someone who can rewrite both the log and its head file
can forge a consistent history.  Against that, copy the head hash that ``medsight audit verify``
prints to a place they cannot write (a ticket, a signed e-mail, a WORM store).

Examples
--------
>>> import tempfile, pathlib
>>> log = pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl"
>>> _ = append_entry(log, command=["medsight", "deid"], inputs={"path": "in"}, key_id="abc",
...                  outputs=[{"path": "a.dcm", "sha256": "00"}])
>>> verify_log(log).ok
True
>>> text = log.read_text().replace('"a.dcm"', '"b.dcm"')
>>> _ = log.write_text(text)
>>> verify_log(log).problems
['line 1: hash does not match its content (edited)']
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from medsight.privacy.errors import AuditLogError

__all__ = ["AuditVerification", "append_entry", "digest_files", "verify_log"]

_GENESIS = "0" * 64


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def head_path(log: Path) -> Path:
    """The head file beside ``log``."""
    return log.with_name(log.name + ".head")


def digest_files(files: list[tuple[str, str]]) -> str:
    """One sha256 over ``(relative path, sha256)`` pairs, order-independent."""
    text = "\n".join(f"{p}\t{h}" for p, h in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def _read_lines(log: Path) -> list[str]:
    try:
        return log.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AuditLogError(log, f"cannot read audit log ({exc.strerror})") from exc


def _last_line(fh: BinaryIO) -> bytes | None:
    """The last non-empty line of an open binary file, reading only its end.

    Appends stay O(1) as the log grows (the service appends one record per request).
    """
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    chunk = 4096
    while end:
        start = max(0, end - chunk)
        fh.seek(start)
        lines = [line for line in fh.read(end - start).splitlines() if line.strip()]
        if start == 0 or len(lines) >= 2:  # the last line is complete
            return lines[-1] if lines else None
        chunk *= 4
    return None


def append_entry(
    log: str | os.PathLike[str],
    *,
    command: list[str],
    inputs: dict[str, Any],
    key_id: str,
    outputs: list[dict[str, str]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append one record to ``log`` (created if missing) and update its head file.

    Returns the record written, with its ``seq``, ``prev`` and ``hash``.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            prev, seq = _GENESIS, 1
            tail = _last_line(fh)
            if tail is not None:
                last = json.loads(tail)
                prev, seq = last["hash"], int(last["seq"]) + 1
            record: dict[str, Any] = {
                "seq": seq,
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "user": getpass.getuser(),
                "host": socket.gethostname(),
                "command": list(command),
                "inputs": inputs,
                "key_id": key_id,
                "outputs": outputs,
                **(extra or {}),
                "prev": prev,
            }
            record["hash"] = _hash(record)
            fh.write(_canonical(record) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
            head = head_path(log)
            tmp = head.with_name(f".{head.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"count": seq, "hash": record["hash"]}) + "\n")
            os.replace(tmp, head)
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise AuditLogError(log, f"cannot append to audit log ({exc})") from exc
    return record


@dataclass
class AuditVerification:
    """The result of :func:`verify_log`."""

    entries: int = 0
    head: str = _GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the chain and the head file agree."""
        return not self.problems


def verify_log(log: str | os.PathLike[str]) -> AuditVerification:
    """Check every line's hash, the chain of ``prev`` hashes, the sequence and the head file."""
    log = Path(log)
    if not log.exists():
        raise AuditLogError(log, "audit log does not exist")
    result = AuditVerification()
    prev, expected_seq = _GENESIS, 1
    for number, line in enumerate(_read_lines(log), start=1):
        try:
            record = json.loads(line)
            stored, seq = record["hash"], int(record["seq"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            result.problems.append(f"line {number}: not a valid audit record")
            continue
        if _hash(record) != stored:
            result.problems.append(f"line {number}: hash does not match its content (edited)")
        if record.get("prev") != prev:
            result.problems.append(
                f"line {number}: does not follow the line before it (a line was removed, "
                "inserted or reordered)"
            )
        if seq != expected_seq:
            result.problems.append(f"line {number}: sequence number {seq}, expected {expected_seq}")
        prev, expected_seq = stored, seq + 1
        result.entries += 1
    result.head = prev
    head = head_path(log)
    if not head.exists():
        result.problems.append(f"{head.name} is missing: removal of the last lines is undetectable")
        return result
    try:
        saved = json.loads(head.read_text(encoding="utf-8"))
        count, head_hash = int(saved["count"]), saved["hash"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        result.problems.append(f"{head.name} is not readable")
        return result
    if count != result.entries or head_hash != prev:
        result.problems.append(
            f"log ends at line {result.entries} ({prev[:12]}) but the head file records "
            f"{count} lines ending in {str(head_hash)[:12]} (lines removed at the end?)"
        )
    return result
