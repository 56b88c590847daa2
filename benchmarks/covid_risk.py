"""Risk from chest X-ray + record on the COVID-19 image collection subset (``covid_cxr``).

Outcomes (per patient, positive when any of its rows says so; rows without a Y/N value are
left out and counted): **death** (``survival == N``) and **ICU admission** (``went_icu == Y``).
Time-to-event is *not* used: the set's ``offset`` is the day of each image relative to the
start of symptoms / admission, and no column gives the day of death or of ICU admission, so
there is no event time; a C-index would rank nothing meaningful.  Discrimination is therefore
ROC AUC.

Models, each on the same patient-level split (train / val / test 60 / 20 / 20, stratified by
the outcome, seeded), for seeds 0, 1, 2 (seed = split seed = initialisation seed):

* ``clinical_logreg``: scikit-learn logistic regression (C=1) on the last visit's age, sex and
  view (standardised, one-hot, missing indicators; fitted on train only);
* ``last_image``: the ``image`` arch (logistic model on the last image's embedding);
* ``late`` and ``film``: image + clinical fusion on the last visit;
* ``gru``: the sequence model over up to 8 visits with the time gaps as input.

The image encoder is the zoo's PneumoniaMNIST classifier (frozen; its 128 penultimate
features, images resized to 28 x 28), embeddings computed once and cached.  Epochs (early
stopping) and the calibration come from the validation part; AUC, Brier and ECE are measured
on the test part with 1000-resample patient-level bootstrap 95% CIs.

Usage (from the project root)::

    .venv/bin/python benchmarks/covid_risk.py --seeds 0 1 2

Writes ``benchmarks/results/covid_risk.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.data import load_dataset
from medsight.data.timeline import timelines_from_dataset
from medsight.evaluation.risk import evaluate_risk, outcome_metrics
from medsight.inference.risk import visit_arrays
from medsight.models.clinical_encoding import ClinicalEncoder
from medsight.training.risk import RiskConfig, train_risk

ROOT = Path(__file__).resolve().parents[1]
DATA_REL = "../shared/data/covid_cxr/metadata.csv"
OUTCOMES = {
    "death": {"target": "survival", "positive": "N"},
    "icu": {"target": "went_icu", "positive": None},
}
FEATURES = ["age", "sex", "view"]
ARCHS = ["last_image", "late", "film", "gru"]


def _logreg(
    spec: str, outcome: dict[str, Any], seed: int, split: dict[str, list[str]], n_resamples: int
) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    ds = load_dataset(spec)
    ts = timelines_from_dataset(
        ds,
        target=outcome["target"],
        positive=outcome["positive"],
        features=FEATURES,
        time_column="offset",
    )
    train = list(ts.subset(split["train"]))
    test = list(ts.subset(split["test"]))
    enc = ClinicalEncoder.fit(
        [t.last.values for t in train], [(v.name, v.kind.value) for v in ts.variables]
    )
    b_train = visit_arrays(train, enc, None, max_visits=1)
    b_test = visit_arrays(test, enc, None, max_visits=1)
    model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed)
    model.fit(b_train.clin[:, 0], b_train.label.astype(int))
    p = model.predict_proba(b_test.clin[:, 0])[:, 1]
    return outcome_metrics(b_test, p, False, n_resamples=n_resamples, seed=seed)


def _source_check(dataset: Any, outcome: dict[str, Any]) -> dict[str, Any]:
    """How much the outcome is told by the image's source (the paper / site it came from).

    Patients are grouped by the ``doi`` (else ``url``) of their last image; a source whose
    patients (two or more) all share one outcome is "pure".  Many pure sources mean an image
    model can score well by recognising where an image comes from, not the disease.
    """
    ts = timelines_from_dataset(dataset, target=outcome["target"], positive=outcome["positive"])
    by_source: dict[str, list[int]] = {}
    for t in ts:
        attrs = t.last.case.attributes if t.last.case is not None else {}
        source = attrs.get("doi") or attrs.get("url") or "unknown"
        by_source.setdefault(str(source), []).append(int(t.outcome.label or 0))
    multi = {k: v for k, v in by_source.items() if len(v) >= 2}
    pure = [k for k, v in multi.items() if len(set(v)) == 1]
    return {
        "sources": len(by_source),
        "sources_with_2plus_patients": len(multi),
        "pure_sources": len(pure),
        "patients_in_pure_sources": sum(len(multi[k]) for k in pure),
        "patients": len(ts),
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    aucs = [r["auc"]["value"] for r in runs if np.isfinite(r["auc"].get("value") or np.nan)]
    briers = [r["brier"]["value"] for r in runs]
    return {
        "auc_mean": float(np.mean(aucs)) if aucs else None,
        "auc_sd": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else None,
        "brier_mean": float(np.mean(briers)),
        "n_seeds": len(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--outcomes", nargs="+", default=list(OUTCOMES))
    parser.add_argument("--archs", nargs="+", default=ARCHS)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=None, help="run folders (default: temp)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/covid_risk.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = f"csv:{ROOT / DATA_REL}?patient=patientid"
    work = args.work or Path(tempfile.mkdtemp(prefix="covid-risk-"))
    cache = work / "embeddings.npz"
    dataset = load_dataset(spec)
    started = time.time()
    results: dict[str, Any] = {
        "benchmark": "covid_risk",
        "data": f"csv:{DATA_REL}?patient=patientid",
        "features": FEATURES,
        "encoder": "pneumoniamnist-smallcnn (zoo, frozen, penultimate features)",
        "split": "patient-level train/val/test 60/20/20 stratified by outcome; split seed = seed",
        "metric_note": "ROC AUC on the test part; no time-to-event target exists in this set "
        "(offsets date the images, not death or ICU admission), so no C-index",
        "seeds": args.seeds,
        "n_resamples": args.n_resamples,
        "machine": f"{platform.machine()} CPU, torch threads 1",
        "outcomes": {},
    }
    for name in args.outcomes:
        outcome = OUTCOMES[name]
        per_model: dict[str, list[dict[str, Any]]] = {}
        counts = timelines_from_dataset(
            dataset, target=outcome["target"], positive=outcome["positive"], features=FEATURES
        ).summary()
        for seed in args.seeds:
            for arch in args.archs:
                cfg = RiskConfig(
                    data=spec,
                    out=work / f"{name}-{arch}-{seed}",
                    target=outcome["target"],
                    positive=outcome["positive"],
                    features=FEATURES,
                    arch="image" if arch == "last_image" else arch,
                    seed=seed,
                    n_resamples=200,
                    threads=1,
                    embeddings=cache,
                )
                t0 = time.time()
                pkg = train_risk(cfg, log=None)
                report = evaluate_risk(
                    pkg,
                    dataset,
                    cfg.out / "eval",
                    split="test",
                    n_resamples=args.n_resamples,
                    seed=seed,
                    n_repeats=10,
                )
                row = {m["name"]: m for m in report["metrics"]} | {
                    "seed": seed,
                    "best_epoch": pkg.spec.extra["best_epoch"],
                    "val_auc": pkg.spec.metrics[0].value,
                    "seconds": round(time.time() - t0, 1),
                    "importance": {
                        r["variable"]: round(r["mean_drop"], 4)
                        for r in report["permutation_importance"]
                    },
                }
                per_model.setdefault(arch, []).append(row)
                print(f"{name} {arch} seed {seed}: test AUC {row['auc'].get('value')}", flush=True)
                split = json.loads((pkg.path / "splits.json").read_text())
            per_model.setdefault("clinical_logreg", []).append(
                _logreg(spec, outcome, seed, split, args.n_resamples) | {"seed": seed}
            )
            print(f"{name} logreg seed {seed}: {per_model['clinical_logreg'][-1]['auc']}")
        results["outcomes"][name] = {
            "target": outcome,
            "counts": counts,
            "source_check": _source_check(dataset, outcome),
            "models": {m: {"summary": _summary(r), "runs": r} for m, r in per_model.items()},
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(results | {"seconds": round(time.time() - started)}, indent=1, default=float)
        )
    print(
        json.dumps(
            {
                o: {m: v["summary"] for m, v in r["models"].items()}
                for o, r in results["outcomes"].items()
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
