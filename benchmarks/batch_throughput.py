"""Studies per minute of ``medsight batch analyze`` with 1 and 2 workers (issue 23).

Each hippocampus NIfTI file of ``../shared/data/hippocampus/imagesTr`` is one identity-less
study; the first ``--studies`` of them (links in a temporary archive) are analysed with the zoo's
hippocampus segmenter (``--modality MR``, explanations and DICOM outputs off: NIfTI input), with
1 worker and then 2, interleaved over ``--repeats`` rounds, each into a fresh output folder.
Wall time includes the worker start-up.  ``--engine ray`` runs the same tasks on the private
single-node Ray the runner starts (``num_cpus`` = workers, so 1 and 2 concurrent tasks); Ray's
servers listen on every interface, so run it in a loopback-only network namespace.  Run it on a
quiet machine:

    .venv/bin/python benchmarks/batch_throughput.py --studies 24 --repeats 2
    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/batch_throughput.py \
        --engine ray --studies 24 --repeats 2'

Writes ``benchmarks/results/batch_throughput.json`` (``batch_throughput_ray.json`` for Ray).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from medsight.batch import discover_tasks, run_batch
from medsight.models.zoo import zoo_folders

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hippocampus" / "imagesTr"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--engine", choices=["local", "ray"], default="local")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    suffix = "" if args.engine == "local" else f"_{args.engine}"
    args.out = args.out or ROOT / f"benchmarks/results/batch_throughput{suffix}.json"
    files = sorted(DATA.glob("*.nii.gz"))[: args.studies]
    model = next(f / "hippocampus-dynunet" for f in zoo_folders())
    options = {"models": [str(model)], "modality": "MR", "explain": False, "dicom_outputs": False}
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive"
        archive.mkdir()
        for f in files:
            (archive / f.name).symlink_to(f)
        tasks = discover_tasks(archive)
        assert len(tasks) == len(files), (len(tasks), len(files))
        for r in range(args.repeats):
            for workers in (1, 2):
                out = Path(tmp) / f"out_{r}_{workers}"
                start = time.perf_counter()
                result = run_batch(  # ray: a private Ray on this machine, num_cpus = workers
                    "analyze", tasks, out, options=options, workers=workers, engine=args.engine
                )
                wall = time.perf_counter() - start
                counts = result.counts()
                assert counts["done"] == len(tasks), counts
                runs.append(
                    {
                        "repeat": r,
                        "workers": workers,
                        "studies": len(tasks),
                        "seconds": round(wall, 2),
                        "studies_per_minute": round(60 * len(tasks) / wall, 2),
                        "load_before": os.getloadavg()[0],
                    }
                )
                print(runs[-1], flush=True)
    summary = {}
    for workers in (1, 2):
        rates = [r["studies_per_minute"] for r in runs if r["workers"] == workers]
        summary[str(workers)] = {"median_studies_per_minute": statistics.median(rates)}
    summary["speedup_2_vs_1"] = round(
        summary["2"]["median_studies_per_minute"] / summary["1"]["median_studies_per_minute"], 3
    )
    doc = {
        "benchmark": "batch_throughput",
        "data": "../shared/data/hippocampus/imagesTr (first N files, one study each)",
        "model": "zoo hippocampus-dynunet, explain off, DICOM outputs off",
        "engine": "local (one process per attempt, forked from a preloaded server)"
        if args.engine == "local"
        else "ray (private single-node Ray, num_cpus = workers; Ray start-up included)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": runs,
        "summary": summary,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
