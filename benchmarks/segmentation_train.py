"""Stage 4 of the segmentation benchmarks: train every (data set, seed) pair, in parallel.

Reads ``<prepared>/<name>/{plan.json,preprocessed.npz}`` written by
``segmentation_prepare.py``, trains one DynUNet per seed with a wall-clock budget, and writes
``<out>/<name>_seed<k>/`` (checkpoints, package/, result.json) plus ``<out>/train_log.txt``.
All runs share one machine: one process each, started together (on one GPU the small networks
leave it mostly idle, so running them side by side costs little per run).

Usage::

    python benchmarks/segmentation_train.py PREPARED OUT --budget 270 --seeds 0 1 2 \\
        [--names hippocampus busi] [--device auto] [--max-steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

INFO = {
    "hippocampus": {
        "dataset": "Medical Segmentation Decathlon Task04 Hippocampus (260 MR crops)",
        "source": "Simpson et al. 2019, http://medicaldecathlon.com",
        "license": "CC BY-SA 4.0",
        "limitations": "Trained on cropped hippocampus regions of 1 mm T1 MR (MSD Task04); "
        "whole-brain or other-resolution inputs are outside its training distribution.",
    },
    "busi": {
        "dataset": "BUSI breast ultrasound, benign + malignant lesions (647 images)",
        "source": "Al-Dhabyani et al., Data in Brief 28, 2020",
        "license": "CC0 (Kaggle mirror); cite the paper",
        "limitations": "Trained on images that contain a lesion; images without a lesion "
        "(BUSI 'normal') were not used. Single-site data (Baheya hospital, Cairo).",
    },
}


def labels_for(name: str):
    from medsight.core.codes import ABNORMAL_STRUCTURE, ANATOMICAL_STRUCTURE, LESION
    from medsight.models.spec import Code, LabelSpec

    if name == "hippocampus":
        # SNOMED CT has no separate concepts for the MSD "anterior" / "posterior" parts;
        # they are medsight-local codes (private scheme "99MEDSIGHT", as DICOM PS3.3 8.2
        # allows), each a part of SCT 5366008 "Hippocampal structure" (pydicom's PS3.16 table).
        return [
            LabelSpec(
                index=1,
                name="anterior",
                code=Code(
                    "hippocampus-anterior",
                    "99MEDSIGHT",
                    "Anterior hippocampus (head), part of SCT 5366008",
                ),
                category=ANATOMICAL_STRUCTURE,
                color=(31, 119, 180),
            ),
            LabelSpec(
                index=2,
                name="posterior",
                code=Code(
                    "hippocampus-posterior",
                    "99MEDSIGHT",
                    "Posterior hippocampus (body and tail), part of SCT 5366008",
                ),
                category=ANATOMICAL_STRUCTURE,
                color=(255, 127, 14),
            ),
        ]
    return [
        LabelSpec(
            index=1, name="lesion", code=LESION, category=ABNORMAL_STRUCTURE, color=(214, 39, 40)
        )
    ]


def run_one(
    prepared: Path,
    out: Path,
    name: str,
    seed: int,
    budget: float,
    device: str,
    max_steps: int,
    val_every: int,
) -> None:
    from medsight.training.plan import SegmentationPlan
    from medsight.training.segmentation import (
        SegTrainConfig,
        load_preprocessed,
        train_segmentation,
    )

    plan = SegmentationPlan.load(prepared / name / "plan.json")
    if name == "hippocampus":
        plan = plan.model_copy(
            update={"label_names": {0: "background", 1: "anterior", 2: "posterior"}}
        )
    else:
        plan = plan.model_copy(update={"label_names": {0: "background", 1: "lesion"}})
    data = load_preprocessed(prepared / name / "preprocessed.npz")
    cfg = SegTrainConfig(
        seed=seed, time_budget_s=budget, device=device, max_steps=max_steps, val_every=val_every
    )
    run_dir = out / f"{name}_seed{seed}"
    log = open(run_dir.with_suffix(".log"), "a")  # noqa: SIM115 - open for the whole run

    def say(s: str) -> None:
        print(f"[{name} {seed}] {s}", file=log, flush=True)

    t0 = time.time()
    res = train_segmentation(
        data,
        plan,
        cfg,
        run_dir,
        name=f"{name}-dynunet",
        version=f"0.1.0+seed{seed}",
        labels=labels_for(name),
        dataset_info=INFO[name],
        log=say,
    )
    import torch

    payload = res.model_dump() | {
        "name": name,
        "seed": seed,
        "wall_s": time.time() - t0,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "n_train": len(data.part("train")),
        "n_val": len(data.part("val")),
    }
    (run_dir / "result.json").write_text(json.dumps(payload, indent=1))
    say("done")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prepared", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--budget", type=float, default=270)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--names", nargs="+", default=["hippocampus", "busi"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--one", nargs=2, metavar=("NAME", "SEED"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.one:
        run_one(
            a.prepared, a.out, a.one[0], int(a.one[1]), a.budget, a.device, a.max_steps, a.val_every
        )
        return
    threads = max(1, (os.cpu_count() or 2) // (len(a.names) * len(a.seeds)))
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = []
    for name in a.names:
        for seed in a.seeds:
            cmd = [
                sys.executable,
                __file__,
                str(a.prepared),
                str(a.out),
                "--one",
                name,
                str(seed),
                "--budget",
                str(a.budget),
                "--device",
                a.device,
                "--max-steps",
                str(a.max_steps),
                "--val-every",
                str(a.val_every),
            ]
            procs.append(((name, seed), subprocess.Popen(cmd, env=env)))
    failed = [key for key, p in procs if p.wait() != 0]
    print("failed runs:", failed if failed else "none")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
