"""`QCReport`: the result of a quality run (``qc.json``), shared by the runner and the HTML page.

Kept apart from :mod:`~medsight.data.qc.report` (which runs the checks) and
:mod:`~medsight.data.qc.html` (which renders the page) so neither imports the other.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from medsight.data.fingerprint import Fingerprint
from medsight.data.qc.config import QCConfig
from medsight.data.qc.findings import CheckKind, Finding

__all__ = ["QCReport"]


class QCReport(BaseModel):
    """The result of a quality run: findings, counts and the fingerprint."""

    version: int = 1
    dataset: str
    source: str | None
    task: str
    n_cases: int
    n_unreadable: int
    config: QCConfig
    seconds: dict[str, float]
    counts: dict[str, int] = Field(default_factory=dict)
    severities: dict[str, int] = Field(default_factory=dict)
    findings: list[Finding]
    fingerprint: Fingerprint

    def of_kind(self, kind: CheckKind | str) -> list[Finding]:
        """The findings of one kind."""
        return [f for f in self.findings if f.kind == CheckKind(kind)]
