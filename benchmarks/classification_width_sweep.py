"""Validation-only comparison behind the 2D ``smallcnn`` default width (issue 4).

Trains BreastMNIST and RetinaMNIST (official splits) with the classification defaults and one
change per variant, three seeds each, and prints one JSON line per run with the *validation*
AUC of the best epoch (the test split is never touched).  The default channel widths in
``medsight.training.classification.default_arch_args`` were chosen from these lines:

* ``base``: channels (16, 32, 64), the former 2D default;
* ``wide``: channels (32, 64, 128), the default since.

Usage (one heavy job at a time)::

    flock /tmp/medsight-heavy.lock .venv/bin/python benchmarks/classification_width_sweep.py \\
        breastmnist base >> benchmarks/results/classification_width_sweep.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from medsight.training.classification import train_classifier
from medsight.training.config import ClassifyConfig

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "base": {"arch_args": {"channels": [16, 32, 64]}},
    "wide": {"arch_args": {"channels": [32, 64, 128]}},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", choices=["breastmnist", "retinamnist", "pneumoniamnist"])
    ap.add_argument("variant", choices=sorted(VARIANTS))
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "medmnist")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args()
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as d:
            t = time.process_time()
            cfg = ClassifyConfig(
                data=f"medmnist:{args.data / (args.dataset + '.npz')}",
                out=Path(d) / "run",
                seed=seed,
                threads=1,
                progress=False,
                **VARIANTS[args.variant],
            )
            pkg = train_classifier(cfg)
            val = {m.name: m.value for m in pkg.spec.metrics}
            row = {
                "set": args.dataset,
                "variant": args.variant,
                "seed": seed,
                "val_auc": val.get("auc", val.get("auc_macro")),
                "best_epoch": pkg.spec.extra["best_epoch"],
                "cpu_s": round(time.process_time() - t),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
