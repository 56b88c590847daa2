"""The data-quality report: ``run_qc`` scans a data set once and runs every check.

Checks live in :mod:`~medsight.data.qc.checks` and :mod:`~medsight.data.qc.duplicates` and are
listed in the registry :data:`~medsight.data.qc.checks.CHECKS`; each returns
:class:`~medsight.data.qc.findings.Finding` objects naming the files concerned.
"""

from medsight.data.qc.config import QCConfig
from medsight.data.qc.findings import CheckKind, Finding, Severity
from medsight.data.qc.report import QCReport, run_qc, write_report

__all__ = ["CheckKind", "Finding", "QCConfig", "QCReport", "Severity", "run_qc", "write_report"]
