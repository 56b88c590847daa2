"""Time ``medsight qc`` (the full CLI: scan, checks, JSON, HTML with plots) on every real data set.

Usage: ``python benchmarks/qc_timings.py DATA_ROOT [OUT_JSON]`` where DATA_ROOT is the shared
data folder (``../shared/data`` from the project root).  Writes, per data set, wall and CPU
seconds, the number of cases and the count of findings by kind, to OUT_JSON (default
``benchmarks/results/qc_timings.json``).  The issue's bar is under a minute per set on the
2-core development machine.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

from medsight.cli.app import main

SETS = {
    "breastmnist": "medmnist:medmnist/breastmnist.npz",
    "pneumoniamnist": "medmnist:medmnist/pneumoniamnist.npz",
    "retinamnist": "medmnist:medmnist/retinamnist.npz",
    "adrenalmnist3d": "medmnist:medmnist/adrenalmnist3d.npz",
    "adrenalmnist3d_64": "medmnist:medmnist/adrenalmnist3d_64.npz",
    "busi": "folder:busi",
    "hippocampus": "msd:hippocampus",
    "covid_cxr": "csv:covid_cxr/metadata.csv",
    "dicom": "dicom:dicom",
}


def run(root: Path) -> dict:
    results = {}
    for name, spec in SETS.items():
        kind, rel = spec.split(":", 1)
        with tempfile.TemporaryDirectory() as out:
            wall, cpu = time.perf_counter(), time.process_time()
            with redirect_stdout(StringIO()):
                code = main(["qc", f"{kind}:{root / rel}", "--out", out, "--no-progress"])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            report = json.loads((Path(out) / "qc.json").read_text())
        results[name] = {
            "spec": spec,
            "exit_code": code,
            "cases": report["n_cases"],
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "under_a_minute": wall < 60,
            "findings": report["counts"],
            "severities": report["severities"],
        }
        print(f"{name:18s} {report['n_cases']:6d} cases  wall {wall:6.1f} s  cpu {cpu:6.1f} s")
    return results


if __name__ == "__main__":
    data_root = Path(sys.argv[1])
    target = (
        Path(sys.argv[2])
        if len(sys.argv) > 2
        else Path(__file__).parent / "results" / ("qc_timings.json")
    )
    out = {
        "benchmark": "medsight qc on every shared data set (scan, checks, qc.json, HTML, plots)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "sets": run(data_root),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {target.name}")
