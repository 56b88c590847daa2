"""MedMNIST v2 classification benchmark with medsight's defaults (official splits, CPU).

For each data set and seed: ``train_classifier`` with the default config (smallcnn, early
stopping on the validation AUC, temperature and Youden threshold fitted on validation), then
``evaluate_classifier`` on the official test split (AUC and accuracy with 1000-resample
bootstrap 95% CIs).  Nothing is chosen on the test split: epochs, temperature and threshold
come from validation data; the zoo package of a data set is the seed with the best
*validation* AUC.

Accuracy is reported twice: at the package's operating threshold (Youden on validation, what
medsight ships) and at arg-max of the probabilities (MedMNIST's protocol).

Usage (from the project root; one heavy job at a time on a shared machine)::

    flock /tmp/medsight-heavy.lock .venv/bin/python benchmarks/classification_medmnist.py \\
        --data ../shared/data/medmnist --seeds 0 1 2 [--zoo]

Writes ``benchmarks/results/classification_medmnist.json`` after every run (partial results
survive an interruption).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medsight.data import load_dataset
from medsight.evaluation import classification as cm
from medsight.evaluation.classification_eval import evaluate_classifier, select_cases
from medsight.inference.classify import Predictor
from medsight.training.classification import train_classifier
from medsight.training.config import ClassifyConfig
from medsight.transforms.arrays import encode_label

ROOT = Path(__file__).resolve().parents[1]

#: file, published best test AUC / ACC (MedMNIST v2, Yang et al., Scientific Data 2023)
SETS = {
    "breastmnist": ("breastmnist.npz", 0.919, 0.863),
    "pneumoniamnist": ("pneumoniamnist.npz", 0.991, 0.946),
    "retinamnist": ("retinamnist.npz", 0.750, 0.531),
    "adrenalmnist3d": ("adrenalmnist3d.npz", 0.839, 0.802),
    "adrenalmnist3d_64": ("adrenalmnist3d_64.npz", 0.839, 0.802),
}


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
    }


def _metric(report: dict, *names: str) -> dict:
    for m in report["metrics"]:
        if m["name"] in names:
            return m
    raise KeyError(names)


def run_one(data_dir: Path, name: str, seed: int, work: Path, threads: int) -> tuple[dict, Path]:
    file = SETS[name][0]
    spec = f"medmnist:{data_dir / file}"
    out = work / f"{name}-seed{seed}"
    cfg = ClassifyConfig(data=spec, out=out, seed=seed, threads=threads, progress=False,
                         name=f"{name}-smallcnn")  # fmt: skip
    cpu0, wall0 = time.process_time(), time.perf_counter()
    pkg = train_classifier(cfg)
    train_cpu, train_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    ds = load_dataset(spec)
    cpu1 = time.process_time()
    report = evaluate_classifier(pkg, ds, out / "eval", split="test", n_resamples=1000, seed=seed)
    # arg-max accuracy (MedMNIST's protocol) from the same calibrated probabilities
    cases, _ = select_cases(ds, "test")
    predictor = Predictor(pkg)
    proba = predictor.predict_arrays(np.stack([predictor.preprocess(c.image()) for c in cases]))
    y = np.array([encode_label(c, proba.shape[1], False) for c in cases])
    acc_argmax = cm.accuracy(y, proba.argmax(1))
    np.save(out / "test_proba.npy", proba)
    np.save(out / "test_y.npy", y)
    auc = _metric(report, "auc", "auc_macro")
    acc = _metric(report, "accuracy")
    val = {m.name: m.value for m in pkg.spec.metrics}
    row = {
        "dataset": name,
        "seed": seed,
        "test_auc": auc["value"],
        "test_auc_ci": [auc["ci_low"], auc["ci_high"]],
        "test_acc_operating_point": acc["value"],
        "test_acc_operating_point_ci": [acc["ci_low"], acc["ci_high"]],
        "test_acc_argmax": acc_argmax,
        "test_qwk": next((m["value"] for m in report["metrics"] if m["name"] == "qwk"), None),
        "test_ece": report["calibration"]["ece"],
        "val_auc": val.get("auc", val.get("auc_macro")),
        "best_epoch": pkg.spec.extra["best_epoch"],
        "epochs_run": pkg.spec.extra["epochs_run"],
        "train_cpu_s": train_cpu,
        "train_wall_s": train_wall,
        "torch_threads": threads,
        "eval_cpu_s": time.process_time() - cpu1,
        "n_test": report["n_cases"],
        "thresholds": pkg.spec.thresholds,
        "temperature": pkg.spec.temperature,
    }
    return row, pkg.path


def ensemble(paths: list[Path], rows: list[dict]) -> dict:
    """Test metrics of the mean calibrated probabilities of all seeds' models."""
    from medsight.evaluation.bootstrap import bootstrap_ci

    proba = np.mean([np.load(p.parent / "test_proba.npy") for p in paths], axis=0)
    y = np.load(paths[0].parent / "test_y.npy")
    binary = proba.shape[1] == 2
    auc = (lambda t, q: cm.roc_auc(t, q[:, 1])) if binary else cm.macro_auc
    acc = lambda t, q: cm.accuracy(t, q.argmax(1))  # noqa: E731
    out = {"members": len(paths)}
    for key, f in (("test_auc", auc), ("test_acc_argmax", acc)):
        r = bootstrap_ci(f, y, proba, n_resamples=1000, seed=0)
        out[key] = {"value": r.value, "ci": [r.low, r.high]}
    return out


def write_zoo_package(path: Path, row: dict, name: str) -> None:
    """Copy a run's package into the zoo with its test metrics and the script named."""
    from medsight.models.package import ModelPackage, render_model_card
    from medsight.models.spec import MetricValue

    pkg = ModelPackage.load(path)
    spec = pkg.spec
    test = [
        MetricValue(name="auc", value=row["test_auc"], ci_low=row["test_auc_ci"][0],
                    ci_high=row["test_auc_ci"][1], split="test", n=row["n_test"]),
        MetricValue(name="accuracy", value=row["test_acc_operating_point"],
                    ci_low=row["test_acc_operating_point_ci"][0],
                    ci_high=row["test_acc_operating_point_ci"][1], split="test",
                    n=row["n_test"]),
    ]  # fmt: skip
    spec = spec.model_copy(
        update={"metrics": [*spec.metrics, *test],
                "extra": spec.extra | {"trained_by": "benchmarks/classification_medmnist.py"}}
    )  # fmt: skip
    card = render_model_card(spec) + (
        "\n## Provenance\nTrained by `benchmarks/classification_medmnist.py` (seed "
        f"{row['seed']}, chosen among the benchmark seeds by validation AUC) on the official "
        "MedMNIST v2 split; test metrics from the official test split.\n"
    )
    extra = {f: (path / f).read_text() for f in ("training_log.csv", "config.json")}
    target = ROOT / "src/medsight/zoo" / f"{name}-smallcnn"
    ModelPackage.save(target, spec, pkg.state_dict(), card=card, extra_files=extra,
                      overwrite=True)  # fmt: skip


def markdown_table(results: dict) -> str:
    """The BENCHMARKS.md table from the results JSON (mean ± SD over seeds, CIs per seed)."""
    lines = [
        "| data set | seeds | test AUC mean ± SD (min-max) | test ACC arg-max mean ± SD | "
        "ACC at Youden threshold | published best AUC / ACC | train CPU s per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in results["summary"].items():
        auc, acc, acc_op = s["test_auc"], s["test_acc_argmax"], s["test_acc_operating_point"]
        lines.append(
            f"| {name} | {', '.join(map(str, s['seeds']))} | {auc['mean']:.3f} ± {auc['std']:.3f} "
            f"({auc['min']:.3f}-{auc['max']:.3f}) | {acc['mean']:.3f} ± {acc['std']:.3f} | "
            f"{acc_op['mean']:.3f} ± {acc_op['std']:.3f} | {s['published_best']['auc']:.3f} / "
            f"{s['published_best']['acc']:.3f} | {s['train_cpu_s']['mean']:.0f} |"
        )
    lines += ["", "Ensemble of the seeds' models (mean calibrated probability), test split:", ""]
    for name, s in results["summary"].items():
        e = s.get("ensemble")
        if e:
            auc, acc = e["test_auc"], e["test_acc_argmax"]
            lines.append(
                f"- {name} ({e['members']} models): AUC {auc['value']:.3f} "
                f"({auc['ci'][0]:.3f}-{auc['ci'][1]:.3f}), ACC arg-max {acc['value']:.3f} "
                f"({acc['ci'][0]:.3f}-{acc['ci'][1]:.3f})"
            )
    lines += ["", "Per seed, test AUC with its bootstrap 95% CI:", ""]
    for r in results["runs"]:
        lo, hi = r["test_auc_ci"]
        lines.append(
            f"- {r['dataset']} seed {r['seed']}: AUC {r['test_auc']:.3f} ({lo:.3f}-{hi:.3f}), "
            f"ACC arg-max {r['test_acc_argmax']:.3f}, best epoch {r['best_epoch']} of "
            f"{r['epochs_run']}, {r['train_cpu_s']:.0f} CPU s"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "medmnist")
    ap.add_argument("--sets", nargs="+", default=["breastmnist", "pneumoniamnist",
                                                  "retinamnist", "adrenalmnist3d"])  # fmt: skip
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/classification_medmnist.json"
    )
    ap.add_argument("--zoo", action="store_true", help="copy the best-validation package per set")
    ap.add_argument("--table", action="store_true", help="print the Markdown table and exit")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads(args.out.read_text())))
        return
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    results = {
        "benchmark": "MedMNIST v2 classification, official splits, medsight defaults",
        "protocol": (
            "smallcnn (registry defaults), AdamW lr 2e-3, cosine schedule, max 40 epochs, "
            "early stopping on validation AUC (patience 10), temperature and Youden threshold "
            "fitted on validation; test AUC/ACC with 1000-resample bootstrap 95% CIs (MedMNIST "
            "has no patient ids: each image is its own cluster)"
        ),
        "hardware": {
            "cpu": platform.processor() or platform.machine(),
            "torch_threads": "per run: runs[].torch_threads",
            "torch": torch.__version__,
            "note": (
                "shared 2-core machine; other developers' light jobs may have been running, "
                "so timings are indicative; heavy jobs were serialised with a lock"
            ),
        },
        "published_best": {k: {"auc": v[1], "acc": v[2]} for k, v in SETS.items()},
        "runs": [r for r in previous.get("runs", []) if r["dataset"] not in args.sets],
        "summary": {k: v for k, v in previous.get("summary", {}).items() if k not in args.sets},
    }
    work = Path(tempfile.mkdtemp(prefix="medsight-bench-"))
    try:
        for name in args.sets:
            rows, paths = [], []
            for seed in args.seeds:
                row, path = run_one(args.data, name, seed, work, args.threads)
                rows.append(row)
                paths.append(path)
                results["runs"].append(row)
                print(json.dumps({k: row[k] for k in ("dataset", "seed", "test_auc",
                                  "test_acc_argmax", "train_cpu_s")}), flush=True)  # fmt: skip
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=1))
            results["summary"][name] = {
                "seeds": args.seeds,
                "test_auc": _summary([r["test_auc"] for r in rows]),
                "test_acc_argmax": _summary([r["test_acc_argmax"] for r in rows]),
                "test_acc_operating_point": _summary([r["test_acc_operating_point"] for r in rows]),
                "train_cpu_s": _summary([r["train_cpu_s"] for r in rows]),
                "train_cpu_s_total": float(sum(r["train_cpu_s"] for r in rows)),
                "published_best": {"auc": SETS[name][1], "acc": SETS[name][2]},
            }
            results["summary"][name]["ensemble"] = ensemble(paths, rows)
            args.out.write_text(json.dumps(results, indent=1))
            if args.zoo:
                best = int(np.argmax([r["val_auc"] for r in rows]))
                write_zoo_package(paths[best], rows[best], name)
                print(f"zoo: {name}-smallcnn from seed {args.seeds[best]} (best validation AUC)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
