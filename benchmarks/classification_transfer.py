"""Transfer learning on BreastMNIST (546 training images): is it better than from scratch?

Three starts, each fine-tuned with medsight's defaults on the official split, the same seeds:

- ``scratch``: random initialisation;
- ``pneumonia_init``: the encoder of the zoo's PneumoniaMNIST package (supervised on 4708 chest
  radiographs, another modality), encoder frozen for the first 3 epochs;
- ``simclr``: an encoder pre-trained contrastively (SimCLR, :mod:`medsight.training.ssl`) on the
  *unlabelled* BreastMNIST train+val images, encoder frozen for the first 3 epochs.  BUSI is not
  used for pre-training: BreastMNIST is derived from BUSI, so its test images would leak in.

Test AUC/ACC on the official test split; mean and standard deviation over seeds, and the paired
per-seed difference to scratch.  A mean gain smaller than its spread is reported as no gain.

Usage::

    flock /tmp/medsight-heavy.lock .venv/bin/python benchmarks/classification_transfer.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from medsight.data import load_dataset
from medsight.evaluation.classification_eval import evaluate_classifier
from medsight.training.classification import train_classifier
from medsight.training.config import ClassifyConfig
from medsight.training.ssl import SSLConfig, pretrain

ROOT = Path(__file__).resolve().parents[1]


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "medmnist")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--ssl-epochs", type=int, default=60)
    ap.add_argument(
        "--source", type=Path, default=ROOT / "src/medsight/zoo/pneumoniamnist-smallcnn"
    )
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/classification_transfer.json"
    )
    args = ap.parse_args()
    spec = f"medmnist:{args.data / 'breastmnist.npz'}"
    ds = load_dataset(spec)
    work = Path(tempfile.mkdtemp(prefix="medsight-transfer-"))
    result: dict = {
        "dataset": "breastmnist",
        "seeds": args.seeds,
        "runs": [],
        "note": "shared 2-core machine, 1 torch thread; timings indicative",
    }
    try:
        t0 = time.process_time()
        ssl_log: list = []
        ckpt = pretrain(
            SSLConfig(data=[spec], out=work / "simclr.pt", epochs=args.ssl_epochs, threads=1,
                      seed=0),
            log=ssl_log,
        )  # fmt: skip
        result["simclr"] = {
            "images": "BreastMNIST train+val (labels unused)",
            "epochs": args.ssl_epochs,
            "cpu_s": time.process_time() - t0,
            "loss_first_last": [ssl_log[0]["loss"], ssl_log[-1]["loss"]],
        }
        variants = {
            "scratch": {},
            "pneumonia_init": {"init": args.source, "freeze_epochs": 3},
            "simclr": {"pretrained": ckpt, "freeze_epochs": 3},
        }
        for name, extra in variants.items():
            for seed in args.seeds:
                cfg = ClassifyConfig(data=spec, out=work / f"{name}-{seed}", seed=seed, threads=1,
                                     progress=False, **extra)  # fmt: skip
                c0 = time.process_time()
                pkg = train_classifier(cfg)
                cpu = time.process_time() - c0
                rep = evaluate_classifier(pkg, ds, work / f"{name}-{seed}-eval", split="test",
                                          n_resamples=1000, seed=seed)  # fmt: skip
                m = {r["name"]: r for r in rep["metrics"]}
                row = {"variant": name, "seed": seed, "test_auc": m["auc"]["value"],
                       "test_auc_ci": [m["auc"]["ci_low"], m["auc"]["ci_high"]],
                       "test_acc": m["accuracy"]["value"], "best_epoch":
                       pkg.spec.extra["best_epoch"], "train_cpu_s": cpu}  # fmt: skip
                result["runs"].append(row)
                print(json.dumps(row), flush=True)
                args.out.write_text(json.dumps(result, indent=1))
        summary = {}
        for name in variants:
            rows = [r for r in result["runs"] if r["variant"] == name]
            summary[name] = {"test_auc": _stats([r["test_auc"] for r in rows]),
                             "test_acc": _stats([r["test_acc"] for r in rows])}  # fmt: skip
            if name != "scratch":
                base = {r["seed"]: r for r in result["runs"] if r["variant"] == "scratch"}
                diff = [r["test_auc"] - base[r["seed"]]["test_auc"] for r in rows]
                d = _stats(diff)
                summary[name]["paired_auc_gain"] = d | {
                    "per_seed": diff,
                    "verdict": "gain" if d["mean"] > d["std"] and d["mean"] > 0 else
                    ("loss" if -d["mean"] > d["std"] else "no clear difference"),
                }  # fmt: skip
        result["summary"] = summary
        args.out.write_text(json.dumps(result, indent=1))
        print(json.dumps(summary, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
