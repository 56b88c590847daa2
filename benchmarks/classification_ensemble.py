"""Single models vs seed or fold ensembles on a MedMNIST set (official splits, CPU).

Ensemble ``e`` (``e = 0, 1, 2``) is ``train_ensemble(seeds=3)`` with base seed ``3 e``: its
members are single smallcnn runs with seeds ``3e, 3e+1, 3e+2`` (default config: early
stopping on validation AUC, each member's temperature fitted on validation), and the ensemble's
Youden threshold (binary sets) is fitted on the averaged ensemble's validation probabilities.
Every single member and every ensemble is then evaluated on the official test split (never used
for any choice): AUC, accuracy at the package's own operating point, and ECE.

Reported: mean ± SD over the 9 single models and over the 3 ensembles, and per ensemble the
paired difference ensemble AUC minus the mean AUC of its own members, the ensemble's test AUC
with its 95 % bootstrap CI (test cases resampled) and, with ``--kind folds``, the paired
bootstrap CI of its AUC gain over the default single model.

Usage (from the project root; one heavy job at a time on a shared machine)::

    flock /tmp/medsight-heavy.lock timeout 3000 .venv/bin/python \\
        benchmarks/classification_ensemble.py --data ../shared/data/medmnist [--epochs 40]

``--kind folds --set S``: ensemble ``e`` is ``train_ensemble(folds=5)`` with seed ``e`` (train and
validation pooled and split into 5 label-stratified folds, each member validated on the fold it
held out, a binary ensemble's threshold fitted on the pooled out-of-fold probabilities), compared
with the default single model of the same seed trained on the official split (what a user gets
without ``--folds``): paired test differences per seed.

Binary, multi-class and ordinal sets are scored (:func:`_scores`); multi-label and other tasks
are refused at start.  Binary: AUC of the positive class, accuracy at the stored threshold, ECE
of the positive-class probability.  Multi-class and ordinal (e.g. RetinaMNIST): macro
one-vs-rest AUC (``evaluation.classification.macro_auc``, the ``auc_macro`` of ``medsight
evaluate`` and the AUC MedMNIST reports), accuracy of the package's own decision (arg-max: no
threshold is fitted for these tasks), and top-label ECE (confidence of the arg-max class), the
same inputs ``medsight evaluate`` uses.

``--work DIR`` keeps the trained packages in ``DIR``; run again with the same ``--work`` (and
settings), it scores the packages already there instead of training them again (an interrupted
run resumes; an earlier run gets new statistics, e.g. the CIs, at scoring cost only).

Writes ``benchmarks/results/classification_ensemble.json`` (seeds, BreastMNIST) or
``classification_ensemble_<kind>_<set>.json`` after every ensemble.  ``--smoke`` checks the
plumbing in seconds (1 epoch, 1 ensemble, 2 folds, 64 cases per training split, the first 100
test cases) and writes its JSON into its temporary work folder, never into
``benchmarks/results``: its numbers mean nothing.
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
from medsight.evaluation.bootstrap import bootstrap_ci
from medsight.evaluation.calibration import expected_calibration_error
from medsight.evaluation.classification_eval import select_cases
from medsight.evaluation.classification_report import calibration_inputs
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


#: ``--smoke``: cases per training split and test cases scored.
SMOKE_CASES, SMOKE_TEST = 64, 100
#: Tasks :func:`_scores` can score (class-index labels, one decision per case).
SCORED_TASKS = ("binary", "multiclass", "ordinal")
#: What ``auc`` / ``ece`` mean per task, written into the result JSON.
_AUC = {
    "binary": "positive class",
    "multiclass": "macro one-vs-rest",
    "ordinal": "macro one-vs-rest",
}
_ECE = {"binary": "positive-class", "multiclass": "top-label", "ordinal": "top-label"}


def _scores(task: str, y: np.ndarray, proba: np.ndarray, decisions: np.ndarray) -> dict[str, float]:
    """AUC, accuracy of ``decisions`` and ECE (10 bins) of class-index labels ``y`` (N,) and
    calibrated probabilities ``proba`` (N, K).

    Binary: AUC and ECE of the positive-class probability.  Multi-class and ordinal: macro
    one-vs-rest AUC (classes absent from ``y`` skipped) and top-label ECE, the definitions of
    ``medsight evaluate`` (``auc_macro``, ``calibration.ece``).

    Examples
    --------
    >>> p = np.array([[0.65, 0.25, 0.1], [0.15, 0.55, 0.3], [0.05, 0.2, 0.75], [0.45, 0.35, 0.2]])
    >>> s = _scores("multiclass", np.array([0, 1, 2, 2]), p, p.argmax(1))
    >>> round(s["auc"], 4), s["accuracy"], round(s["ece"], 4)
    (0.9167, 0.75, 0.375)
    """
    if task not in SCORED_TASKS:
        raise ValueError(f"task {task!r}: only {', '.join(SCORED_TASKS)} are scored")
    y = np.asarray(y)
    p = np.asarray(proba, dtype=np.float64)
    auc = cm.roc_auc(y, p[:, 1]) if task == "binary" else cm.macro_auc(y, p)
    return {
        "auc": float(auc),
        "accuracy": float(np.mean(np.asarray(decisions) == y)),
        "ece": float(expected_calibration_error(*calibration_inputs(task, y, p))),
    }


def _test_scores(
    pkg: ModelPackage, x: np.ndarray, y: np.ndarray, keep: dict | None = None
) -> dict[str, float]:
    """:func:`_scores` of ``pkg`` on preprocessed inputs ``x``, at the package's own decision
    rule (its stored threshold for binary, arg-max for multi-class and ordinal).  ``keep``, when
    given, receives the calibrated probabilities under ``"proba"`` (for the bootstrap CIs)."""
    pred = Predictor(pkg)
    proba = pred.predict_arrays(x)
    if keep is not None:
        keep["proba"] = proba
    return _scores(pkg.spec.task.value, y, proba, pred.decide(proba))


#: Bootstrap resamples of the test cases for the AUC confidence intervals.
N_RESAMPLES = 2000


def _auc(task: str, y: np.ndarray, proba: np.ndarray) -> float:
    """The AUC :func:`_scores` reports (raises ``ValueError`` where it is undefined)."""
    if len(np.unique(y)) < 2:
        raise ValueError("one class only")
    return float(cm.roc_auc(y, proba[:, 1]) if task == "binary" else cm.macro_auc(y, proba))


def _auc_ci(task: str, y: np.ndarray, proba: np.ndarray, seed: int) -> dict[str, float | int]:
    """95 % percentile bootstrap CI of the test AUC (test cases resampled).

    Examples
    --------
    >>> y = np.array([0, 0, 0, 1, 1, 1] * 5)
    >>> p1 = np.where(y == 1, 0.7, 0.3) + np.linspace(-0.25, 0.25, 30)
    >>> ci = _auc_ci("binary", y, np.stack([1 - p1, p1], 1), seed=0)
    >>> ci["low"] <= ci["value"] <= ci["high"]
    True
    """
    return bootstrap_ci(
        lambda t, p: _auc(task, t, p), y, proba, n_resamples=N_RESAMPLES, seed=seed
    ).as_dict()


def _auc_difference_ci(
    task: str, y: np.ndarray, proba_a: np.ndarray, proba_b: np.ndarray, seed: int
) -> dict[str, float | int]:
    """95 % paired bootstrap CI of AUC(a) - AUC(b): both models scored on the same resampled
    test cases, so the interval is of the difference itself, not of two separate AUCs.

    Examples
    --------
    >>> y = np.array([0, 1] * 20)
    >>> good = np.stack([1 - y * 0.8 - 0.1, y * 0.8 + 0.1], 1)
    >>> ci = _auc_difference_ci("binary", y, good, good, seed=0)
    >>> ci["value"], ci["low"], ci["high"]
    (0.0, 0.0, 0.0)
    """
    return bootstrap_ci(
        lambda t, a, b: _auc(task, t, a) - _auc(task, t, b),
        y,
        proba_a,
        proba_b,
        n_resamples=N_RESAMPLES,
        seed=seed,
    ).as_dict()


def _threshold_note(task: str, kind: str) -> str:
    """How the operating point was chosen (train_ensemble / train_classifier fit a threshold for
    binary tasks only; multi-class and ordinal packages decide by arg-max)."""
    if task != "binary":
        return "none: arg-max of the calibrated probabilities"
    return "youden on validation" if kind == "seeds" else "youden on pooled out-of-fold predictions"


def _single(spec: str, out: Path, seed: int, args: argparse.Namespace) -> ModelPackage:
    from medsight.training.classification import train_classifier

    cfg = ClassifyConfig(
        data=spec,
        out=out,
        seed=seed,
        epochs=args.epochs,
        threads=args.threads,
        progress=False,
        max_cases=SMOKE_CASES if args.smoke else None,
    )
    return train_classifier(cfg)


def _earlier_rows(target: Path) -> dict[int, dict]:
    """The rows of an earlier result JSON at ``target`` by ensemble index (for the training
    times of reused packages); empty when there is none."""
    if not target.is_file():
        return {}
    return {r["ensemble"]: r for r in json.loads(target.read_text(encoding="utf-8"))["runs"]}


def _reused(run: Path, seed: int, n_members: int | None) -> ModelPackage | None:
    """The package an earlier run left in ``run/package`` (None if there is none).

    Raises ``SystemExit`` naming the folder when it was trained with another seed or, for an
    ensemble, another number of members: ``--work`` must point at a run of the same settings.
    """
    if not (run / "package" / "model.json").is_file():
        return None
    pkg = ModelPackage.load(run / "package")
    members = len(pkg.spec.ensemble.members) if pkg.spec.ensemble else None
    if pkg.spec.seed != seed or members != n_members:
        raise SystemExit(
            f"{run / 'package'}: trained with seed {pkg.spec.seed} and {members} members; this "
            f"run needs seed {seed} and {n_members}: use another --work folder"
        )
    print(f"reusing {run / 'package'} (not retrained)", flush=True)
    return pkg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("../shared/data/medmnist"))
    ap.add_argument(
        "--set",
        default="breastmnist",
        help="MedMNIST file name without .npz (binary, multi-class or ordinal set)",
    )
    ap.add_argument(
        "--kind",
        choices=["seeds", "folds"],
        default="seeds",
        help="seeds: 3-member seed ensembles on the official split; folds: K-fold ensembles "
        "on the pooled train+val (threshold on out-of-fold predictions) against a default "
        "single model of the same seed",
    )
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--ensembles", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="work folder (default: a new temporary one); an ensemble or default single model "
        "whose package is already there (an interrupted or earlier run with the same "
        "settings) is loaded and scored again instead of trained, its training time taken from "
        "the result JSON's row for it",
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help=f"plumbing check: 1 epoch, 1 ensemble, 2 folds, {SMOKE_CASES} cases per training "
        f"split, {SMOKE_TEST} test cases; the JSON goes into the temporary work folder",
    )
    args = ap.parse_args()
    if args.smoke:
        args.epochs, args.ensembles, args.folds = 1, 1, 2
    torch.set_num_threads(args.threads)
    spec = f"medmnist:{args.data / (args.set + '.npz')}"
    ds = load_dataset(spec)
    task = ds.task.value
    if task not in SCORED_TASKS:  # _scores needs one class index per case
        ap.error(
            f"{args.set}: task {task}; this benchmark scores {', '.join(SCORED_TASKS)} "
            "data sets only"
        )
    cases, split = select_cases(ds, "test")
    if args.smoke:
        cases = cases[:SMOKE_TEST]
    y = np.array([int(c.label) for c in cases])
    default_out = args.kind == "seeds" and args.set == "breastmnist"
    target = (
        OUT
        if default_out
        else OUT.with_name(f"classification_ensemble_{args.kind}_{args.set}.json")
    )
    work = args.work or Path(tempfile.mkdtemp(prefix="ens-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        target = work / target.name
    earlier = _earlier_rows(target)
    rows: list[dict] = []
    started = time.perf_counter()
    n_members = 3 if args.kind == "seeds" else args.folds
    for e in range(args.ensembles):
        base_seed = 3 * e if args.kind == "seeds" else e
        cfg = ClassifyConfig(
            data=spec,
            out=work / f"ens{e}",
            seed=base_seed,
            epochs=args.epochs,
            threads=args.threads,
            progress=False,
            max_cases=SMOKE_CASES if args.smoke else None,
        )
        t0 = time.perf_counter()
        ens = _reused(work / f"ens{e}", base_seed, n_members)
        reused = ens is not None
        if ens is not None:
            seconds = earlier.get(e, {}).get("train_wall_seconds")
        else:
            if args.kind == "seeds":
                ens = train_ensemble(cfg, seeds=3)
            else:
                ens = train_ensemble(cfg, folds=args.folds)
            seconds = round(time.perf_counter() - t0, 1)
        pred = Predictor(ens)
        x = np.stack([pred.preprocess(c.image()) for c in cases])
        members = []
        for k in range(n_members):
            member = ModelPackage.load(work / f"ens{e}" / "members" / str(k) / "package")
            # each member's own preprocessing (fold members standardise with their own
            # training statistics)
            xm = np.stack([Predictor(member).preprocess(c.image()) for c in cases])
            members.append({"seed": member.spec.seed, **_test_scores(member, xm, y)})
        kept: dict = {}
        scores = _test_scores(ens, x, y, keep=kept)
        row = {
            "ensemble": e,
            "seeds": [m["seed"] for m in members],
            "ensemble_test": scores,
            "members_test": members,
            "auc_gain_vs_member_mean": scores["auc"] - float(np.mean([m["auc"] for m in members])),
            "train_wall_seconds": seconds,
            "reused": reused,
            "val_threshold": ens.spec.thresholds,
            "ensemble_auc_ci95": _auc_ci(task, y, kept["proba"], seed=e),
        }
        if args.kind == "folds":  # what a user gets without --folds, same seed
            t1 = time.perf_counter()
            single = _reused(work / f"single{e}", base_seed, None)
            single_seconds = earlier.get(e, {}).get("default_single_wall_seconds")
            if single is None:
                single = _single(spec, work / f"single{e}", base_seed, args)
                single_seconds = round(time.perf_counter() - t1, 1)
            xs = np.stack([Predictor(single).preprocess(c.image()) for c in cases])
            kept_single: dict = {}
            row["default_single_test"] = {
                "seed": base_seed,
                **_test_scores(single, xs, y, keep=kept_single),
            }
            row["default_single_wall_seconds"] = single_seconds
            row["auc_gain_vs_default_single"] = scores["auc"] - row["default_single_test"]["auc"]
            row["auc_gain_vs_default_single_ci95"] = _auc_difference_ci(
                task, y, kept["proba"], kept_single["proba"], seed=e
            )
            row["accuracy_gain_vs_default_single"] = (
                scores["accuracy"] - row["default_single_test"]["accuracy"]
            )
        rows.append(row)
        singles = [m for r in rows for m in r["members_test"]]
        result = {
            "benchmark": "classification_ensemble",
            "data": f"../shared/data/medmnist/{args.set}.npz (official splits)",
            "split": split,
            "n_test": len(cases),
            "config": {
                "arch": "smallcnn",
                "kind": args.kind,
                "epochs": args.epochs,
                "threads": args.threads,
                "members": n_members,
                "threshold": _threshold_note(task, args.kind),
            },
            "task": task,
            "smoke": args.smoke,
            "scores": {
                "auc": _AUC[task],
                "accuracy": "at the package's decision (" + _threshold_note(task, args.kind) + ")",
                "ece": f"{_ECE[task]}, 10 equal-width bins",
                "ci95": f"percentile bootstrap over the test cases, {N_RESAMPLES} resamples, "
                "seed = ensemble index; the gain's CI is paired (same resamples for both)",
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
            "wall_seconds_note": (
                "of this invocation, which reused earlier packages (see runs[].reused); the "
                "training times per run are the earlier run's"
                if any(r["reused"] for r in rows)
                else "training and scoring, everything"
            ),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
        }
        if args.kind == "folds":
            result["default_single"] = {
                k: _summary([r["default_single_test"][k] for r in rows])
                for k in ("auc", "accuracy", "ece")
            }
            for key in ("auc_gain_vs_default_single", "accuracy_gain_vs_default_single"):
                result[key] = _summary([r[key] for r in rows])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        auc_name = "AUC" if task == "binary" else "macro AUC"
        print(
            f"[{e + 1}/{args.ensembles}] {args.set} {args.kind}: ensemble {auc_name} "
            f"{scores['auc']:.4f} (95 % CI {row['ensemble_auc_ci95']['low']:.4f}-"
            f"{row['ensemble_auc_ci95']['high']:.4f}), accuracy {scores['accuracy']:.4f}"
            + (
                f"; default single {row['default_single_test']['auc']:.4f}, "
                f"accuracy {row['default_single_test']['accuracy']:.4f}"
                if args.kind == "folds"
                else ""
            )
            + f"; {time.perf_counter() - started:.0f} s so far"
            + (f"; wrote {target}" if args.smoke else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
