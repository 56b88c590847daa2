"""Does synthetic augmentation help?  Label fractions x with / without synthetic x seeds.

For each MedMNIST 2D file, label fraction ``f`` (of the official training split, stratified,
seeded) and seed:

1. ``train_synthesizer`` (class-conditional DDPM) on the ``f`` training images only;
2. ``medsight synthesize``: ``--ratio`` synthetic images per real training image, per class in
   the real class proportions (one folder with ``synthetic.json``);
3. ``train_classifier`` without and with ``--synthetic`` (same seed, same real data), both
   evaluated on the official test split (AUC with bootstrap CI);
4. ``evaluate_synthesizer`` on the test split with the no-synthetic classifier as the
   Frechet-distance encoder (no ImageNet weights here) and the memorisation check.

The summary gives, per fraction, the paired AUC difference (with - without) per seed, its mean
and its standard deviation over seeds; a gain is reported only when the mean exceeds the seed
spread.  Writes ``benchmarks/results/synth_augmentation_<label>.json``.

Usage (from the project root; the full run needs a GPU, ``--smoke`` runs in about a minute on
CPU and only checks the pipeline)::

    .venv/bin/python benchmarks/synth_augmentation.py --data ../shared/data --device cuda
    .venv/bin/python benchmarks/synth_augmentation.py --data ../shared/data --smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _subset(src: Path, dst: Path, fraction: float, seed: int, cap: int | None) -> Path:
    """``src`` with a stratified ``fraction`` of its training split (val and test kept)."""
    z = dict(np.load(src))
    y = z["train_labels"].ravel()
    rng = np.random.default_rng([seed, 11])
    keep = []
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        keep += rng.choice(idx, size=max(2, round(fraction * len(idx))), replace=False).tolist()
    keep = np.sort(keep)
    z["train_images"], z["train_labels"] = z["train_images"][keep], z["train_labels"][keep]
    if cap is not None:  # smoke runs: small val / test too
        for split in ("val", "test"):
            z[f"{split}_images"] = z[f"{split}_images"][:cap]
            z[f"{split}_labels"] = z[f"{split}_labels"][:cap]
    dst.mkdir(parents=True, exist_ok=True)
    np.savez(dst / src.name, **z)
    return dst / src.name


def _auc(report: dict) -> dict:
    m = next(m for m in report["metrics"] if m["name"] in ("auc", "auc_macro"))
    return {"value": m["value"], "low": m.get("ci_low"), "high": m.get("ci_high")}


def one_run(npz: Path, work: Path, seed: int, args: argparse.Namespace) -> dict:
    from medsight.cli.app import main
    from medsight.data import load_dataset
    from medsight.evaluation.classification_eval import evaluate_classifier
    from medsight.evaluation.synth import evaluate_synthesizer
    from medsight.training.classification import train_classifier
    from medsight.training.config import ClassifyConfig
    from medsight.training.synth import SynthConfig, train_synthesizer

    data = f"medmnist:{npz}"
    ds = load_dataset(data)
    t0 = time.perf_counter()
    synth = train_synthesizer(
        SynthConfig(data=data, out=work / "synth", steps=args.synth_steps, seed=seed,
                    method=args.method, device=args.device, batch_size=args.batch_size,
                    val_every=args.val_every),
        log=lambda line: None,
    )  # fmt: skip
    t_synth = time.perf_counter() - t0
    counts = synth.spec.training_data.class_counts
    fake = work / "fake"
    for name, count in counts.items():
        n = max(1, round(args.ratio * count))
        steps = ["--steps", str(args.sample_steps)] if args.method == "ddpm" else []
        code = main(["synthesize", str(synth.path), "--n", str(n), "--label", name, "--out",
                     str(fake), "--seed", str(seed), *steps, "--device", args.device])  # fmt: skip
        assert code == 0, f"synthesize failed for {name}"
    t_sample = time.perf_counter() - t0 - t_synth
    result: dict = {"seed": seed, "n_train": sum(counts.values()), "seconds": {}}
    packages = {}
    for arm, extra in (
        ("real", {}),
        ("real+synthetic", {"synthetic": fake, "synthetic_ratio": args.ratio}),
    ):
        t1 = time.perf_counter()
        cfg = ClassifyConfig(
            data=data,
            out=work / arm,
            epochs=args.epochs,
            seed=seed,
            progress=False,
            device=args.device,
            n_resamples=50,
            **extra,
        )
        pkg = train_classifier(cfg)
        rep = evaluate_classifier(pkg, ds, work / f"{arm}-eval", n_resamples=args.n_resamples,
                                  seed=seed)  # fmt: skip
        result[arm] = {"test_auc": _auc(rep), "n_synthetic": pkg.spec.extra.get(
            "synthetic", {}).get("n_used", 0)}  # fmt: skip
        result["seconds"][arm] = time.perf_counter() - t1
        packages[arm] = pkg
    result["auc_difference"] = (
        result["real+synthetic"]["test_auc"]["value"] - result["real"]["test_auc"]["value"]
    )
    rep = evaluate_synthesizer(synth, ds, work / "synth-eval", encoder=packages["real"],
                               n_resamples=args.n_resamples, seed=seed,
                               steps=args.sample_steps if args.method == "ddpm" else None,
                               n_per_class=args.n_per_class,
                               device=args.device)  # fmt: skip
    result["synthesis"] = {
        "metrics": rep["metrics"],
        "memorisation": {k: rep["memorisation"][k] for k in ("synthetic", "real_heldout")},
        "encoder": rep["encoder"],
    }
    result["seconds"] |= {"train_synth": t_synth, "sample": t_sample}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--sets", nargs="+", default=["breastmnist"])
    p.add_argument("--fractions", nargs="+", type=float, default=[0.1, 0.25, 1.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--ratio", type=float, default=0.5, help="synthetic per real training image")
    p.add_argument("--synth-steps", type=int, default=3000)
    p.add_argument("--sample-steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--n-resamples", type=int, default=1000)
    p.add_argument("--n-per-class", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--method", choices=["ddpm", "gan"], default="ddpm", help="generative model")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--label", default="run")
    p.add_argument("--smoke", action="store_true", help="a minute on CPU: pipeline check only")
    args = p.parse_args()
    cap = None
    if args.smoke:
        args.fractions, args.seeds, args.synth_steps, args.sample_steps = [0.05], [0], 3, 2
        args.epochs, args.n_resamples, args.n_per_class, args.val_every = 1, 20, 8, 3
        args.batch_size, args.device, args.label, cap = 16, "cpu", f"{args.label}-smoke", 32
        args.threads = 1
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
           "machine": platform.platform(), "sets": {}}  # fmt: skip
    target = Path(__file__).parent / "results" / f"synth_augmentation_{args.label}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    total = len(args.sets) * len(args.fractions) * len(args.seeds)
    done, started = 0, time.perf_counter()
    for name in args.sets:
        src = args.data / "medmnist" / f"{name}.npz"
        per_fraction = out["sets"].setdefault(name, {})
        for fraction in args.fractions:
            runs = []
            for seed in args.seeds:
                with tempfile.TemporaryDirectory() as tmp:
                    npz = _subset(src, Path(tmp) / "data", fraction, seed, cap)
                    runs.append(one_run(npz, Path(tmp), seed, args))
                done += 1
                eta = (time.perf_counter() - started) / done * (total - done)
                print(
                    f"[{done}/{total}] {name} f={fraction} seed={seed}: AUC "
                    f"{runs[-1]['real']['test_auc']['value']:.4f} real, "
                    f"{runs[-1]['real+synthetic']['test_auc']['value']:.4f} with synthetic "
                    f"({runs[-1]['auc_difference']:+.4f}); ETA {eta / 60:.0f} min",
                    flush=True,
                )
                diffs = [r["auc_difference"] for r in runs]
                mean = statistics.fmean(diffs)
                spread = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
                per_fraction[str(fraction)] = {
                    "runs": runs,
                    "auc_difference_mean": mean,
                    "auc_difference_sd": spread,
                    "gain": bool(len(diffs) > 1 and mean > spread),
                }
                # written after every run: an interrupted benchmark keeps what it measured
                target.write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
