"""Every access to a study or result goes to the hash-chained audit log of the privacy package.

The log is ``<home>/audit/service.jsonl``; each record names the actor, their role, the action
and the study / job it touched (never pixel data or report text).

Examples
--------
>>> import tempfile, pathlib
>>> from medsight.privacy.audit import verify_log
>>> trail = AuditTrail(pathlib.Path(tempfile.mkdtemp()) / "service.jsonl")
>>> _ = trail.record("ana", "radiologist", "view_study", study="1.2.3")
>>> verify_log(trail.path).ok
True
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from medsight.privacy.audit import append_entry

__all__ = ["AuditTrail"]


class AuditTrail:
    """Appends service access records to one audit log (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, actor: str, role: str, action: str, **what: Any) -> dict[str, Any]:
        """Write one record: who (``actor``, ``role``) did ``action`` to ``what``."""
        with self._lock:
            return append_entry(
                self.path,
                command=["medsight serve", action],
                inputs={k: v for k, v in what.items() if v is not None},
                key_id="",
                outputs=[],
                extra={"actor": actor, "role": role, "action": action},
            )
