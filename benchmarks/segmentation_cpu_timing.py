"""Training throughput of the segmentation benchmarks on this machine's CPU.

Trains each benchmark plan (``.gpu/<name>/plan.json`` and ``preprocessed.npz`` from
``segmentation_prepare.py``) for a short wall-clock budget on the CPU and reports steps per
second, and from it the CPU time the GPU benchmark's step count would take.  Writes
``benchmarks/results/segmentation_cpu_timing.json``.

Usage: ``python benchmarks/segmentation_cpu_timing.py PREPARED RUNS [--budget 60]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from medsight.training.plan import SegmentationPlan
from medsight.training.segmentation import SegTrainConfig, load_preprocessed, train_segmentation


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared", type=Path)
    ap.add_argument("runs", type=Path)
    ap.add_argument("--budget", type=float, default=60)
    a = ap.parse_args()
    out = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    for name in ("hippocampus", "busi"):
        plan = SegmentationPlan.load(a.prepared / name / "plan.json")
        data = load_preprocessed(a.prepared / name / "preprocessed.npz")
        data = data.model_copy(
            update={
                "splits": [
                    s if s != "val" or i == data.part("val")[0] else "test"
                    for i, s in enumerate(data.splits)
                ]
            }
        )  # one validation case: the timing is about training steps
        cfg = SegTrainConfig(time_budget_s=a.budget, device="cpu", val_every=10**9)
        with tempfile.TemporaryDirectory() as tmp:
            res = train_segmentation(data, plan, cfg, tmp)
        gpu = json.loads((a.runs / f"{name}_seed0" / "result.json").read_text())
        rate = res.steps / res.seconds
        out[name] = {
            "cpu_steps": res.steps,
            "cpu_seconds": res.seconds,
            "cpu_steps_per_s": rate,
            "gpu_steps": gpu["steps"],
            "gpu_seconds": gpu["seconds"],
            "gpu_device": gpu["device"],
            "cpu_hours_for_gpu_steps": gpu["steps"] / rate / 3600,
        }
        print(name, out[name], flush=True)
    Path("benchmarks/results/segmentation_cpu_timing.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
