"""Does synthetic augmentation help?  Label fractions x with / without synthetic x seeds.

For each data set (a MedMNIST 2D file, or ``busi``: the BUSI folder, three classes, resized to
``--busi-size`` pixels, one grouped hold-out split, see ``_busi_split``), label fraction ``f``
(of the training split, stratified, seeded) and seed:

1. ``train_synthesizer`` (``--method``: class-conditional DDPM or GAN) on the ``f`` training
   images only;
2. ``medsight synthesize``: ``--ratio`` synthetic images per real training image, per class in
   the real class proportions (one folder with ``synthetic.json``);
3. ``train_classifier`` without and with ``--synthetic`` (same seed, same real data), both
   evaluated on the test split (AUC with bootstrap CI);
4. ``evaluate_synthesizer`` on the test split with the no-synthetic classifier as the
   Frechet-distance encoder (no ImageNet weights here) and the memorisation check.

The summary gives, per fraction, the paired AUC difference (with - without) per seed, its mean
and its standard deviation over seeds; a gain is reported only when the mean exceeds the seed
spread.  Writes ``benchmarks/results/synth_augmentation_<label>.json`` after every run.

Usage (from the project root; the DDPM grid needs a GPU, the GAN grid on BreastMNIST takes about
an hour on a 2-core CPU, ``--smoke`` runs in about a minute and only checks the pipeline)::

    .venv/bin/python benchmarks/synth_augmentation.py --data ../shared/data --device cuda
    .venv/bin/python benchmarks/synth_augmentation.py --method gan --synth-steps 1500 \\
        --threads 2 --device cpu --label breastmnist_gan_cpu
    .venv/bin/python benchmarks/synth_augmentation.py --sets busi --device cuda --label busi
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


def _busi_split(root: Path, size: int, cap: int | None) -> list[tuple[str, str, str, np.ndarray]]:
    """BUSI (normal / benign / malignant) as ``(split, class, name, image)`` rows (``image``:
    ``size x size`` uint8, row-major).

    One seeded, label-stratified hold-out split (seed 0, 10 % val, 20 % test; the fractions
    of the segmentation benchmarks) after near-duplicate images were joined into one "patient"
    (:func:`medsight.data.grouping.group_duplicates`: BUSI has no patient ids and repeats
    frames of one lesion), so no lesion sits on both sides.  Images are resized to ``size``
    (bilinear) so the generator, the classifier and the evaluation all see the same pixels.
    """
    from PIL import Image as PILImage

    from medsight.data import SplitConfig, load_dataset, make_splits
    from medsight.data.grouping import group_duplicates

    ds = load_dataset(f"folder:{root}?target=class")
    if cap is not None:  # smoke runs: a few images per class
        by_class: dict[object, list] = {}
        for c in ds:
            by_class.setdefault(c.label, []).append(c)
        ds = ds.with_cases([c for cs in by_class.values() for c in cs[:cap]])
    grouped = group_duplicates(ds)
    ds = make_splits(grouped, SplitConfig(val_fraction=0.1, test_fraction=0.2)).apply(grouped)
    rows = []
    for c in ds:
        a = np.asarray(c.image().array, dtype=np.float64)
        a = a if a.ndim == 2 else a.mean(axis=-1)
        lo, hi = float(a.min()), float(a.max())
        u8 = np.uint8(np.clip((a - lo) / max(hi - lo, 1e-9) * 255 + 0.5, 0, 255))
        # medsight arrays are x-first; PIL's are row-major
        small = np.asarray(PILImage.fromarray(u8.T).resize((size, size), PILImage.BILINEAR))
        rows.append((c.split.value, str(c.attributes["class"]), c.case_id, small))
    return rows


def _busi_subset(rows: list, dst: Path, fraction: float, seed: int) -> str:
    """A ``folder:`` data set (``dst/<split>/<class>/<name>.png``) with a stratified
    ``fraction`` of the training rows (validation and test kept whole)."""
    from PIL import Image as PILImage

    rng = np.random.default_rng([seed, 11])
    train = [r for r in rows if r[0] == "train"]
    keep: list = [r for r in rows if r[0] != "train"]
    for cls in sorted({r[1] for r in train}):
        mine = [r for r in train if r[1] == cls]
        n = max(2, round(fraction * len(mine)))
        keep += [mine[i] for i in sorted(rng.choice(len(mine), size=n, replace=False))]
    for split, cls, name, arr in keep:
        (dst / split / cls).mkdir(parents=True, exist_ok=True)
        safe = name.replace("/", "_")
        PILImage.fromarray(arr).save(dst / split / cls / f"{safe}.png")
    return f"folder:{dst}?target=class"


def _auc(report: dict) -> dict:
    m = next(m for m in report["metrics"] if m["name"] in ("auc", "auc_macro"))
    return {"value": m["value"], "low": m.get("ci_low"), "high": m.get("ci_high")}


def _uncalibrated_auc(pkg, ds) -> float:
    """Test AUC of the package's network before its calibration (softmax of the logits).

    A calibration fitted on a small validation split can map an uninformative network to a
    constant probability (vector scaling with scale 0), which makes the package's AUC exactly
    0.5 whatever the network's ranking; this number shows the ranking itself.
    """
    import torch
    from sklearn.metrics import roc_auc_score

    from medsight.core import Split
    from medsight.inference.classify import Predictor, logits_of

    test = [c for c in ds if c.split is Split.TEST]
    pred = Predictor(pkg, device="cpu")
    x = torch.from_numpy(np.stack([pred.preprocess(c.image()) for c in test]))
    with torch.no_grad():  # the Predictor's own torch network, without its views
        p = torch.softmax(logits_of(pred.network(x)).float(), dim=1).numpy()
    y = np.array([int(c.label) for c in test])
    if p.shape[1] == 2:
        return float(roc_auc_score(y, p[:, 1]))
    return float(roc_auc_score(y, p, multi_class="ovr", labels=list(range(p.shape[1]))))


def one_run(data: str, work: Path, seed: int, args: argparse.Namespace) -> dict:
    from medsight.cli.app import main
    from medsight.data import load_dataset
    from medsight.evaluation.classification_eval import evaluate_classifier
    from medsight.evaluation.synth import evaluate_synthesizer
    from medsight.training.classification import train_classifier
    from medsight.training.config import ClassifyConfig
    from medsight.training.synth import SynthConfig, train_synthesizer

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
        cal = pkg.spec.calibration
        result[arm] = {
            "test_auc": _auc(rep),
            "test_auc_uncalibrated": _uncalibrated_auc(pkg, ds),
            "calibration": None if cal is None else cal.method,
            "best_epoch": pkg.spec.extra.get("best_epoch"),
            "tta": None if pkg.spec.tta is None else pkg.spec.tta.model_dump(mode="json"),
            "n_synthetic": pkg.spec.extra.get("synthetic", {}).get("n_used", 0),
        }
        result["seconds"][arm] = time.perf_counter() - t1
        packages[arm] = pkg
    result["auc_difference"] = (
        result["real+synthetic"]["test_auc"]["value"] - result["real"]["test_auc"]["value"]
    )
    result["auc_difference_uncalibrated"] = (
        result["real+synthetic"]["test_auc_uncalibrated"] - result["real"]["test_auc_uncalibrated"]
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


def _commit() -> str | None:
    """The checkout's git commit (with "+dirty" when it has uncommitted changes)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain", "src")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _summarise(per_fraction: dict, fraction: float, runs: list[dict]) -> None:
    """Per fraction: the runs, the paired differences' mean and SD, and the gain rule."""
    per_fraction[str(fraction)] = {"runs": runs}
    for key in ("auc_difference", "auc_difference_uncalibrated"):
        diffs = [r[key] for r in runs]
        mean = statistics.fmean(diffs)
        spread = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
        suffix = key.removeprefix("auc_difference")
        per_fraction[str(fraction)] |= {
            f"{key}_mean": mean,
            f"{key}_sd": spread,
            f"gain{suffix}": bool(len(diffs) > 1 and mean > spread),
        }


def _previous_runs(target: Path, args: argparse.Namespace) -> dict:
    """The runs of an earlier, interrupted run of this label, by ``(set, fraction, seed)``.

    Refuses when the settings that change a run's result differ (it would mix two benchmarks).
    """
    if not target.exists():
        return {}
    old = json.loads(target.read_text(encoding="utf-8"))
    keys = ("method", "synth_steps", "sample_steps", "batch_size", "ratio", "epochs",
            "busi_size", "n_resamples", "n_per_class", "val_every")  # fmt: skip
    changed = [k for k in keys if old["args"].get(k) != getattr(args, k)]
    if changed:
        raise SystemExit(f"--resume: {target} was run with other settings ({', '.join(changed)})")
    return {
        (name, float(fraction), run["seed"]): run
        for name, fractions in old["sets"].items()
        for fraction, entry in fractions.items()
        for run in entry["runs"]
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--sets", nargs="+", default=["breastmnist"], help="MedMNIST names or busi")
    p.add_argument("--busi-size", type=int, default=64, help="BUSI images resized to this")
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
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in this label's JSON (same set, fraction, seed); run the rest",
    )
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
           "machine": platform.platform(), "commit": _commit(), "sets": {}}  # fmt: skip
    target = Path(__file__).parent / "results" / f"synth_augmentation_{args.label}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = _previous_runs(target, args) if args.resume else {}
    grid = [(n, f, s) for n in args.sets for f in args.fractions for s in args.seeds]
    total = sum(key not in previous for key in grid)
    done, started = 0, time.perf_counter()
    for name in args.sets:
        busi = _busi_split(args.data / "busi", args.busi_size, cap) if name == "busi" else None
        per_fraction = out["sets"].setdefault(name, {})
        for fraction in args.fractions:
            runs = []
            for seed in args.seeds:
                if (name, fraction, seed) in previous:
                    runs.append(previous[name, fraction, seed])
                    print(f"[kept] {name} f={fraction} seed={seed} from {target.name}", flush=True)
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    if busi is not None:
                        data = _busi_subset(busi, Path(tmp) / "busi", fraction, seed)
                    else:
                        src = args.data / "medmnist" / f"{name}.npz"
                        data = f"medmnist:{_subset(src, Path(tmp) / 'data', fraction, seed, cap)}"
                    runs.append(one_run(data, Path(tmp), seed, args))
                done += 1
                eta = (time.perf_counter() - started) / done * (total - done)
                runs[-1]["commit"] = out["commit"]
                print(
                    f"[{done}/{total}] {name} f={fraction} seed={seed}: AUC "
                    f"{runs[-1]['real']['test_auc']['value']:.4f} real, "
                    f"{runs[-1]['real+synthetic']['test_auc']['value']:.4f} with synthetic "
                    f"({runs[-1]['auc_difference']:+.4f}; uncalibrated "
                    f"{runs[-1]['auc_difference_uncalibrated']:+.4f}); ETA {eta / 60:.0f} min",
                    flush=True,
                )
                _summarise(per_fraction, fraction, runs)
                # written after every run: an interrupted benchmark keeps what it measured
                target.write_text(json.dumps(out, indent=2), encoding="utf-8")
            _summarise(per_fraction, fraction, runs)  # also when every run was kept
            target.write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
