"""Data-parallel classification training: 2 CPU processes (torchrun, gloo) against 1.

For each seed, the same ``ClassifyConfig`` (BreastMNIST, smallcnn, global batch 64) is trained
once in one plain process (torch threads = every core) and once as a 2-process torchrun job
(``--standalone`` on 127.0.0.1, one torch thread per process, each taking 32 samples of every
batch).  Reported per run:

- training seconds per sample: the sum of the epochs' ``seconds`` in ``training_log.csv``
  (training steps plus the validation pass, without start-up and packaging) divided by
  ``epochs x training cases``; and the wall-clock time of the whole command;
- the validation AUC of every epoch and of the package.

The claim checked is that 2 processes are not slower per sample than 1 by more than
``MAX_SLOWDOWN`` and that the package's validation AUC differs by at most ``AUC_TOLERANCE``
(batch-norm statistics are per process on CPU, so the runs are close, not identical).
Timings need a quiet machine: the load average is recorded before and after each run.

Usage (from the project root; one heavy job at a time on a shared machine)::

    timeout 1800 .venv/bin/python benchmarks/ddp_speed.py \\
        --data medmnist:../shared/data/medmnist/breastmnist.npz --seeds 0 1 2

Writes ``benchmarks/results/ddp_speed.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medsight.models.package import ModelPackage
from medsight.training.config import ClassifyConfig
from medsight.training.distributed import launch_command

MAX_SLOWDOWN = 1.5
AUC_TOLERANCE = 0.05
RESULTS = Path(__file__).parent / "results" / "ddp_speed.json"


def _run(cfg: ClassifyConfig, nproc: int) -> dict[str, object]:
    worker = ["-m", "medsight.cli.train", cfg.model_dump_json()]
    cmd = [sys.executable, *worker] if nproc == 1 else launch_command(worker, nproc)
    env = {k: v for k, v in os.environ.items() if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK"}}
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed:\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - t0
    with (Path(cfg.out) / "training_log.csv").open(encoding="utf-8") as f:
        log = list(csv.DictReader(f))
    spec = ModelPackage.load(Path(cfg.out) / "package").spec
    n_train = spec.training_data.n_cases["train"]
    seconds = sum(float(r["seconds"]) for r in log)
    return {
        "nproc": nproc,
        "wall_seconds": wall,
        "train_seconds": seconds,
        "seconds_per_sample": seconds / (len(log) * n_train),
        "val_auc_by_epoch": [float(r["val_auc"]) for r in log],
        "package_val_auc": next(m.value for m in spec.metrics if m.name == "auc"),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        default="medmnist:../shared/data/medmnist/breastmnist.npz",
        help="data set spec of a binary task",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS, help="the JSON results file")
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for nproc in (1, 2):
                cfg = ClassifyConfig(
                    data=args.data, out=Path(tmp) / f"s{seed}_p{nproc}",
                    epochs=args.epochs, batch_size=args.batch_size, seed=seed, progress=False,
                    n_resamples=200,
                )  # fmt: skip
                runs.append({"seed": seed, **_run(cfg, nproc)})
                print(json.dumps(runs[-1]), flush=True)
    ratio = [
        b["seconds_per_sample"] / a["seconds_per_sample"]
        for a, b in zip(runs[::2], runs[1::2], strict=True)
    ]
    d_auc = [
        abs(b["package_val_auc"] - a["package_val_auc"])
        for a, b in zip(runs[::2], runs[1::2], strict=True)
    ]
    summary = {
        "slowdown_2_vs_1_per_sample_mean": float(np.mean(ratio)),
        "slowdown_2_vs_1_per_sample_sd": float(np.std(ratio, ddof=1)) if len(ratio) > 1 else None,
        "max_slowdown_claimed": MAX_SLOWDOWN,
        "slowdown_within_claim": bool(np.mean(ratio) <= MAX_SLOWDOWN),
        "abs_diff_package_val_auc_mean": float(np.mean(d_auc)),
        "abs_diff_package_val_auc_max": float(np.max(d_auc)),
        "auc_tolerance": AUC_TOLERANCE,
        "auc_within_tolerance": bool(np.max(d_auc) <= AUC_TOLERANCE),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "ddp_speed",
                "data": args.data.rsplit("/", 1)[-1],
                "config": {"epochs": args.epochs, "global_batch": args.batch_size},
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "torch": torch.__version__,
                "seeds": args.seeds,
                "runs": runs,
                "summary": summary,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
