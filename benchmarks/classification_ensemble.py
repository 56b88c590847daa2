"""Single models vs 3-member seed ensembles on BreastMNIST (official splits, CPU).

Ensemble ``e`` (``e = 0, 1, 2``) is ``train_ensemble(seeds=3)`` with base seed ``3 e``: its
members are single smallcnn runs with seeds ``3e, 3e+1, 3e+2`` (default config: early
stopping on validation AUC, each member's temperature fitted on validation), and the ensemble's
Youden threshold is fitted on the averaged ensemble's validation probabilities.  Every single
member and every ensemble is then evaluated on the official test split (never used for any
choice): AUC, accuracy at the package's own operating threshold, and ECE.

Reported: mean ± SD over the 9 single models and over the 3 ensembles, and per ensemble the
paired difference ensemble AUC minus the mean AUC of its own members.

Usage (from the project root; one heavy job at a time on a shared machine)::

    flock /tmp/medsight-heavy.lock timeout 3000 .venv/bin/python \\
        benchmarks/classification_ensemble.py --data ../shared/data/medmnist [--epochs 40]

Writes ``benchmarks/results/classification_ensemble.json`` after every ensemble.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medsight.data import load_dataset
from medsight.evaluation import classification as cm
from medsight.evaluation.calibration import expected_calibration_error
from medsight.evaluation.classification_eval import select_cases
from medsight.inference.classify import Predictor
from medsight.models import ModelPackage
from medsight.training.config import ClassifyConfig
from medsight.training.ensemble import train_ensemble

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "classification_ensemble.json"


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    sd = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return {"mean": float(a.mean()), "std": sd, "min": float(a.min()), "max": float(a.max())}


def _test_scores(pkg: ModelPackage, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = Predictor(pkg)
    proba = pred.predict_arrays(x)
    d = pred.decide(proba)
    return {
        "auc": float(cm.roc_auc(y, proba[:, 1])),
        "accuracy": float(np.mean(d == y)),
        "ece": float(expected_calibration_error(y, proba[:, 1])),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("../shared/data/medmnist"))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--ensembles", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = f"medmnist:{args.data / 'breastmnist.npz'}"
    ds = load_dataset(spec)
    cases, split = select_cases(ds, "test")
    work = Path(tempfile.mkdtemp(prefix="ens-bench-"))
    rows: list[dict] = []
    started = time.perf_counter()
    for e in range(args.ensembles):
        cfg = ClassifyConfig(
            data=spec,
            out=work / f"ens{e}",
            seed=3 * e,
            epochs=args.epochs,
            threads=args.threads,
            progress=False,
        )
        t0 = time.perf_counter()
        ens = train_ensemble(cfg, seeds=3)
        seconds = time.perf_counter() - t0
        pred = Predictor(ens)
        x = np.stack([pred.preprocess(c.image()) for c in cases])
        y = np.array([int(c.label) for c in cases])
        members = []
        for k in range(3):
            member = ModelPackage.load(work / f"ens{e}" / "members" / str(k) / "package")
            # members share the preprocessing of the ensemble except for their own training
            # statistics (the same training split here, so the same numbers)
            xm = np.stack([Predictor(member).preprocess(c.image()) for c in cases])
            members.append({"seed": member.spec.seed, **_test_scores(member, xm, y)})
        scores = _test_scores(ens, x, y)
        rows.append(
            {
                "ensemble": e,
                "seeds": [m["seed"] for m in members],
                "ensemble_test": scores,
                "members_test": members,
                "auc_gain_vs_member_mean": scores["auc"]
                - float(np.mean([m["auc"] for m in members])),
                "train_wall_seconds": round(seconds, 1),
                "val_threshold": ens.spec.thresholds,
            }
        )
        singles = [m for r in rows for m in r["members_test"]]
        result = {
            "benchmark": "classification_ensemble",
            "data": "../shared/data/medmnist/breastmnist.npz (official splits)",
            "split": split,
            "n_test": len(cases),
            "config": {
                "arch": "smallcnn",
                "epochs": args.epochs,
                "threads": args.threads,
                "members": 3,
                "threshold": "youden on validation",
            },
            "single": {k: _summary([m[k] for m in singles]) for k in ("auc", "accuracy", "ece")},
            "ensemble": {
                k: _summary([r["ensemble_test"][k] for r in rows])
                for k in ("auc", "accuracy", "ece")
            },
            "auc_gain_vs_member_mean": _summary([r["auc_gain_vs_member_mean"] for r in rows]),
            "n_single": len(singles),
            "n_ensembles": len(rows),
            "runs": rows,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
        }
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps({k: result[k] for k in ("single", "ensemble", "n_ensembles")}), flush=True)


if __name__ == "__main__":
    main()
