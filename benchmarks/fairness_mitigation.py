"""Bias mitigation on a real set with a group attribute: does it shrink the sex gap?

Data: the COVID-19 chest X-ray collection (``../shared/data/covid_cxr/metadata.csv``, Cohen et
al.; licences per image), X-ray rows with a usable finding: COVID-19 (positive) against any
other finding (other pneumonias, "No Finding"); rows with finding "todo" / "Unknown" are left
out.  Group attribute: ``sex`` (F / M; rows without it take part in training and in the
overall metrics, never in a group).  Splits: by patient, stratified by label, 50 / 20 / 30 %
train / val / test, one split per seed (the same split for every method of that seed).

Methods, each a small CNN (``smallcnn``, channels 16/32/64, 64x64 grey input) trained on CPU:

- ``none``: the default trainer (class-weighted loss);
- ``reweight``: ``--balance reweight --group sex`` (loss weights 1 / (sex, label) frequency);
- ``group-sample``: ``--balance group-sample --group sex`` (WeightedRandomSampler over cells);
- ``group thresholds``: the ``none`` model with per-sex thresholds fitted on validation for
  equal sensitivity (``--group-thresholds``), applied on test where the sex is known.

Epochs, calibration, the global threshold and the group thresholds are all chosen on the
validation split; the test split is only scored.  Per seed, on test,
:func:`medsight.evaluation.fairness.compare_methods` gives the sensitivity / specificity /
AUC gap (F minus M) and the overall accuracy and AUC with patient-level bootstrap CIs, and
each method's change against ``none`` with paired bootstrap CIs.  Across the 3 seeds the JSON
gives mean and standard deviation of every point value.

Usage (heavy: run it under the shared lock)::

    timeout 1500 .venv/bin/python \\
        benchmarks/fairness_mitigation.py [--seeds 0 1 2] [--epochs 40]

Writes ``benchmarks/results/fairness_mitigation.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "covid_cxr"
DATA_REL = "../shared/data/covid_cxr/metadata.csv"
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("none", "reweight", "group-sample")


def write_manifest(folder: Path) -> tuple[str, dict[str, int]]:
    """A CSV manifest of the usable rows, in a temporary folder, naming grey 64x64 PNG copies
    of the images there (decoded once instead of once per training run; the trainer resizes
    to 64x64 anyway)."""
    from PIL import Image as PILImage

    rows_out, counts = [], {"rows": 0, "positives": 0}
    (folder / "img").mkdir()
    with open(DATA / "metadata.csv", newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.DictReader(fh):
            f = DATA / "images" / (row.get("image_file") or "")
            finding = (row.get("finding") or "").strip()
            if row.get("modality") != "X-ray" or not f.is_file():
                continue
            if finding in ("", "todo", "Unknown"):
                continue
            label = "positive_covid19" if "COVID-19" in finding else "negative_other"
            sex = (row.get("sex") or "").strip()
            small = folder / "img" / f"{counts['rows']:04d}.png"
            with PILImage.open(f) as im:
                im.convert("L").resize((64, 64), PILImage.Resampling.BILINEAR).save(small)
            rows_out.append([str(small), row["patientid"], label, sex if sex in ("F", "M") else ""])
            counts["rows"] += 1
            counts["positives"] += label == "positive_covid19"
    path = folder / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "patient_id", "label", "sex"])
        w.writerows(rows_out)
    return f"csv:{path}?path=file&label=label&patient=patient_id", counts


def run_seed(spec: str, seed: int, epochs: int, work: Path, n_resamples: int) -> dict[str, Any]:
    from medsight.data import SplitConfig, load_dataset, make_splits
    from medsight.evaluation.fairness import compare_methods
    from medsight.inference.classify import Predictor
    from medsight.training.classification import train_classifier
    from medsight.training.config import ClassifyConfig

    ds = load_dataset(spec)
    splits = make_splits(ds, SplitConfig(seed=seed, val_fraction=0.2, test_fraction=0.3))
    splits_path = splits.save(work / f"splits_{seed}.json")
    test = [c for c in splits.apply(ds) if c.split is not None and c.split.value == "test"]
    y = np.array([int(c.label) for c in test])
    sex = [c.attributes.get("sex") for c in test]
    patients = [c.patient_id or c.case_id for c in test]
    methods: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    info: dict[str, Any] = {}
    for method in METHODS:
        t0 = time.perf_counter()
        cfg = ClassifyConfig(
            data=spec, out=work / f"{method}_{seed}", splits=splits_path, size=[64, 64],
            arch_args={"channels": [16, 32, 64]},
            epochs=epochs, patience=10, batch_size=32, seed=seed, threads=2, progress=False,
            n_resamples=200, group="sex", balance=method,
            group_thresholds=method == "none", name=f"covid-cxr-{method}",
        )  # fmt: skip
        pkg = train_classifier(cfg)
        pred = Predictor(pkg)
        proba = pred.predict_arrays(np.stack([pred.preprocess(c.image()) for c in test]))
        pos = pkg.spec.label_names.index("positive_covid19")
        if pos != 1:
            raise RuntimeError(f"expected positive_covid19 as label 1, got {pkg.spec.label_names}")
        methods[method] = (proba[:, 1], pred.decide(proba))
        info[method] = {
            "threshold": pkg.spec.thresholds,
            "best_epoch": pkg.spec.extra["best_epoch"],
            "seconds": round(time.perf_counter() - t0, 1),
            "val_auc": next(m.value for m in pkg.spec.metrics if m.name == "auc"),
        }
        if method == "none":
            d_group, used = pred.decide_by_group(proba, sex)
            methods["group thresholds"] = (proba[:, 1], d_group)
            gt = pkg.spec.group_thresholds
            info["group thresholds"] = {
                "thresholds": gt.thresholds if gt else None,
                "target_sensitivity": gt.target_sensitivity if gt else None,
                "skipped": gt.skipped if gt else None,
                "val_counts": gt.counts if gt else None,
                "test_cases_at_group_threshold": sum(u.startswith("group") for u in used),
            }
        print(f"seed {seed} {method}: {info[method]}", flush=True)
    comparison = compare_methods(y, methods, sex, patients, n_resamples=n_resamples, seed=seed)
    return {"seed": seed, "n_test": len(test), "methods_info": info, "comparison": comparison}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of every point value, and how many seeds' CIs
    (where estimable) exclude 0 for each change."""
    out: dict[str, Any] = {"methods": {}, "change_vs_none": {}}
    first = runs[0]["comparison"]
    for section in ("methods", "change_vs_none"):
        for method, stats in first[section].items():
            out[section][method] = {}
            for st in stats:
                vals = [r["comparison"][section][method][st]["value"] for r in runs]
                vals = [v for v in vals if v is not None]
                entry: dict[str, Any] = {
                    "mean": float(np.mean(vals)) if vals else None,
                    "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                    "per_seed": vals,
                }
                if section == "change_vs_none":
                    cis = [r["comparison"][section][method][st] for r in runs]
                    entry["seeds_ci_excludes_0"] = sum(
                        1 for c in cis if c["estimable"] and (c["ci_low"] > 0 or c["ci_high"] < 0)
                    )
                    entry["seeds_not_estimable"] = sum(1 for c in cis if not c["estimable"])
                out[section][method][st] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS / "fairness_mitigation.json")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec, counts = write_manifest(work)
        runs = [run_seed(spec, s, args.epochs, work, args.n_resamples) for s in args.seeds]
    result = {
        "benchmark": "fairness_mitigation",
        "data": DATA_REL,
        "task": "COVID-19 vs other finding, X-ray rows ('todo' / 'Unknown' left out)",
        "group": "sex (F / M; rows without it count overall only)",
        "rows": counts,
        "split": "by patient, stratified by label: 50/20/30 train/val/test, one per seed",
        "model": "smallcnn (channels 16/32/64), 64x64 grey, class-weighted loss unless balanced, "
        "epochs <= "
        f"{args.epochs} (early stopping on val AUC, patience 10), CPU",
        "methods": [*METHODS, "group thresholds"],
        "seeds": args.seeds,
        "bootstrap": {"n_resamples": args.n_resamples, "level": "patient", "paired": True},
        "gap": "F minus M on test; change_vs_none: method minus none (abs_*: |gap| change)",
        "summary": aggregate(runs),
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
        "platform": platform.platform(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out.name} in {result['seconds']} s")


if __name__ == "__main__":
    main()
