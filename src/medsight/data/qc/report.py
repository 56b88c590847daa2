"""`run_qc`: scan a data set once, run every check, and write ``qc.json`` plus an HTML page.

Examples
--------
>>> import numpy as np
>>> from medsight.core import Case, Image
>>> from medsight.data import Dataset
>>> img = Image(np.arange(16, dtype=np.uint8).reshape(4, 4))
>>> ds = Dataset("toy", [Case("a", images={"image": img}, label=0, split="train"),
...                      Case("b", images={"image": img}, label=1, split="test")])
>>> report, _ = run_qc(ds)
>>> sorted({f.kind.value for f in report.findings})
['conflicting_labels', 'exact_duplicate', 'split_leakage']
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from medsight.core import InvalidInputError
from medsight.data.dataset import Dataset
from medsight.data.fingerprint import compute_fingerprint
from medsight.data.qc.checks import CHECKS
from medsight.data.qc.config import QCConfig
from medsight.data.qc.findings import Finding, Severity
from medsight.data.qc.html import render_html
from medsight.data.qc.result import QCReport
from medsight.data.scan import CaseScan, scan_dataset
from medsight.data.splits import Splits
from medsight.io.atomic import write_text_atomic

__all__ = ["QCReport", "run_qc", "write_report"]


def run_qc(
    dataset: Dataset,
    config: QCConfig | None = None,
    *,
    splits: Splits | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[QCReport, list[CaseScan]]:
    """Check a data set; return the report and the per-case scans (for plots).

    Parameters
    ----------
    dataset : Dataset
    config : QCConfig, optional
    splits : Splits, optional
        Check these splits (fold 0) instead of the data set's own ``Case.split``.
    progress : callable, optional
        Called with the case index after each case is read.

    Examples
    --------
    >>> import numpy as np
    >>> from medsight.core import Case, Image
    >>> from medsight.data import Dataset
    >>> cases = [Case(f"c{i}", images={"image": Image(np.random.default_rng(i).random((8, 8)))},
    ...               attributes={"sex": None if i == 2 else "F"}) for i in range(4)]
    >>> report, scans = run_qc(Dataset("toy", cases))
    >>> [(f.kind.value, f.case_ids) for f in report.findings]
    [('missing_attribute', ['c2'])]
    """
    cfg = config or QCConfig()
    if splits is not None:
        dataset = splits.apply(dataset)
    t0 = time.perf_counter()
    scans = scan_dataset(dataset, seed=cfg.seed, samples=cfg.samples_per_case, progress=progress)
    seconds = {"scan": time.perf_counter() - t0}
    findings: list[Finding] = []
    for name, check in CHECKS.items():
        t = time.perf_counter()
        findings.extend(check(dataset, scans, cfg))
        seconds[name] = time.perf_counter() - t
    fingerprint = compute_fingerprint(
        dataset, scans=scans, seed=cfg.seed, samples_per_case=cfg.samples_per_case
    )
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    findings.sort(key=lambda f: order[f.severity])
    report = QCReport(
        dataset=dataset.name,
        source=dataset.root,
        task=dataset.task.value,
        n_cases=len(dataset),
        n_unreadable=sum(not s.ok for s in scans),
        config=cfg,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        counts=dict(Counter(f.kind.value for f in findings)),
        severities=dict(Counter(f.severity.value for f in findings)),
        findings=findings,
        fingerprint=fingerprint,
    )
    return report, scans


def write_report(
    report: QCReport, scans: list[CaseScan], dataset: Dataset, out: str | os.PathLike[str]
) -> dict[str, Path]:
    """Write ``qc.json``, ``fingerprint.json``, ``index.html`` and ``plots/`` under ``out``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from medsight.core import Case, Image
    >>> from medsight.data import Dataset
    >>> ds = Dataset("toy", [Case("a", images={"image": Image(np.eye(8))}, label=0)])
    >>> report, scans = run_qc(ds)
    >>> paths = write_report(report, scans, ds, tempfile.mkdtemp())
    >>> sorted(paths), paths["html"].name
    (['fingerprint', 'html', 'json'], 'index.html')
    """
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InvalidInputError(root, "exists and is not a folder", hint="give a folder for --out")
    root.mkdir(parents=True, exist_ok=True)
    paths = {"json": root / "qc.json", "fingerprint": root / "fingerprint.json"}
    write_text_atomic(paths["json"], report.model_dump_json(indent=1))
    report.fingerprint.save(paths["fingerprint"])
    paths["html"] = render_html(report, scans, dataset, root)
    return paths
