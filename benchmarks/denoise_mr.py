"""MR denoising benchmark: the medsight GAN denoiser vs its no-adversarial baseline, NLM, BM3D.

Stages (each writes ``benchmarks/results/denoise_mr.json`` when it ends, so partial results
survive; ``all`` runs them in order and skips trainings whose package already exists):

* ``train``: a patient-level hold-out split of MSD Task04 hippocampus (260 cases; val 10 %,
  test 20 %, seed 0: the split of the segmentation benchmarks) is written to
  ``<runs>/hippocampus_splits.json``; for seeds 0, 1, 2 the default rician denoiser (the
  defaults of ``medsight train denoise --noise rician``: levels 2-10 %, patch 64, batch 16,
  lr 5e-4, adversarial weight 0.005, SSIM weight 0.5, channels 32-256) is trained with fewer
  steps (:data:`STEPS`, to fit about 3-4 CPU-minutes per run), and the same
  with ``adversarial_weight=0`` (the supervised L1 + SSIM baseline).  Training sees the train
  part, validation (checkpoint choice) the val part; the test part is never seen.
* ``eval``: three test sets of clean MR slices that no training saw, Rician noise at
  :data:`LEVELS` (percent of each clean slice's p0.5-p99.5 range, seeded per image and level),
  denoised by every method; PSNR and SSIM against the clean slice (``data_range`` = the clean
  slice's max - min, :func:`medsight.evaluation.denoise.image_psnr` / ``image_ssim``, the
  convention of the trainer's validation), wall time per image.
* ``figure``: one example slice per test set (clean, noisy, NLM, BM3D, GAN, no-adv, GAN - noisy,
  GAN - clean) at the middle level, ``benchmarks/results/denoise_mr_examples.png``.

Classical methods, blind like the networks (sigma estimated from the noisy image):

* NLM: ``skimage.restoration.denoise_nl_means(z, h=0.8 * sigma, sigma=sigma, fast_mode=True,
  patch_size=5, patch_distance=6)`` with ``sigma = estimate_sigma(z)`` (scikit-image's
  recommended fast-mode setting);
* BM3D: ``bm3d.bm3d(z, sigma_psd=estimate_sigma(z))`` (default profile, hard thresholding +
  Wiener);

both on ``z``, the noisy slice min-max scaled to [0, 1], and scaled back.  Neither corrects the
Rician bias (nor do the networks explicitly; they learn it).

Usage (from the project root, ``../shared/data`` present, ``pip install -e .[bench]`` for
BM3D; 2 CPU threads)::

    .venv/bin/python benchmarks/denoise_mr.py all [--runs runs/denoise_mr] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSIGHT_DATA", ROOT.parent / "shared" / "data")).resolve()
RESULTS = ROOT / "benchmarks" / "results"
OUT_JSON = RESULTS / "denoise_mr.json"
OUT_PNG = RESULTS / "denoise_mr_examples.png"

SEEDS = (0, 1, 2)
#: Reduced from the default 4000 steps to fit ~3-4 CPU-minutes per training (channels: default).
STEPS = 800
CHANNELS = [32, 64, 128, 256]
VAL_EVERY = 200
#: Test levels (percent of the clean slice's p0.5-p99.5 range): low, middle and high end of the
#: training range 2-10 %.
LEVELS = (3.0, 6.0, 10.0)
SPLIT = {"val_fraction": 0.10, "test_fraction": 0.20, "seed": 0}
HIPPO_SPEC = (
    f"msd:{DATA / 'hippocampus'}?license=CC BY-SA 4.0"
    "&source=Medical Segmentation Decathlon Task04 Hippocampus (Simpson et al. 2019)"
)
#: Slices per test image source (fixed, seeded); limited by BM3D's cost on 512 x 512 slices.
HIPPO_SLICES_PER_CASE = 2
MS_SLICES_PER_VOLUME = 3
STUDY_SLICES_PER_SERIES = 2
STUDY_SERIES = {  # brain_mr_study1 series (the hippocampus crop series is left out: see below)
    "T1post": "12-T1post-05670",
    "T1pre": "34909-T1prereg-84610",
    "FLAIR": "36459-FLAIRreg-76244",
    "T2": "37916-T2reg-88910",
}
METHODS = ("noisy", "nlm", "bm3d", "gan", "noadv")
PAIRS = (("gan", "bm3d"), ("gan", "noadv"), ("noadv", "bm3d"), ("gan", "nlm"))
NLM_ARGS = {"patch_size": 5, "patch_distance": 6, "fast_mode": True, "h_over_sigma": 0.8}


def load_results(path: Path = OUT_JSON) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {}


def _portable(text: str) -> str:
    """Paths in the results relative to the project root (no machine's folders)."""
    return text.replace(f"{ROOT}/", "").replace(f"{ROOT.parent}/", "../")


def save_results(res: dict[str, Any], path: Path = OUT_JSON) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(_portable(json.dumps(res, indent=1, default=float)) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def variants() -> dict[str, float]:
    from medsight.training.denoise import DenoiseConfig

    default = DenoiseConfig.model_fields["adversarial_weight"].default
    return {"gan": float(default), "noadv": 0.0}


def train_config(runs: Path, variant: str, seed: int, threads: int) -> Any:
    from medsight.training.denoise import DenoiseConfig

    return DenoiseConfig(
        data=HIPPO_SPEC,
        splits=runs / "hippocampus_splits.json",
        out=runs / f"{variant}_seed{seed}",
        noise="rician",
        levels=(2.0, 10.0),
        channels=CHANNELS,
        steps=STEPS,
        val_every=VAL_EVERY,
        adversarial_weight=variants()[variant],
        seed=seed,
        device="cpu",
        threads=threads,
        modality="MR",
        name=f"hippocampus-denoise-rician-{variant}",
    )


def hippocampus_split(runs: Path) -> Any:
    from medsight.data import SplitConfig, Splits, load_dataset, make_splits

    path = runs / "hippocampus_splits.json"
    if path.is_file():
        return Splits.load(path)
    runs.mkdir(parents=True, exist_ok=True)
    splits = make_splits(load_dataset(HIPPO_SPEC), SplitConfig(**SPLIT))
    splits.save(path)
    return splits


def stage_train(runs: Path, threads: int, res: dict[str, Any]) -> None:
    from medsight.models.package import ModelPackage
    from medsight.training.denoise import train_denoiser

    splits = hippocampus_split(runs)
    res["split"] = {
        **SPLIT,
        "file": str(runs / "hippocampus_splits.json"),
        "n": {"train": len(splits.folds[0].train), "val": len(splits.folds[0].val)}
        | {"test": len(splits.test)},
    }
    res.setdefault("training", {})
    for seed in SEEDS:
        for variant in variants():
            key = f"{variant}_seed{seed}"
            cfg = train_config(runs, variant, seed, threads)
            pkg_dir = cfg.out / "package"
            if not (pkg_dir / "model.json").is_file():
                print(f"== training {key}", flush=True)
                t0 = time.time()
                pkg = train_denoiser(cfg, log=lambda s: print("  " + s, flush=True))
                seconds = time.time() - t0
            else:
                pkg = ModelPackage.load(pkg_dir)
                seconds = res["training"].get(key, {}).get("seconds")
            val = {m.name: m.value for m in pkg.spec.metrics}
            res["training"][key] = {
                "variant": variant,
                "seed": seed,
                "adversarial_weight": cfg.adversarial_weight,
                "package": str(pkg_dir),
                "seconds": seconds,
                "best_step": pkg.spec.extra.get("best_step"),
                "val_psnr": val.get("psnr"),
                "val_ssim": val.get("ssim"),
                "val_psnr_noisy": val.get("psnr_noisy"),
            }
            res["training_config"] = json.loads(
                cfg.model_dump_json(exclude={"out", "seed", "adversarial_weight", "name"})
            )
            save_results(res)


# ---------------------------------------------------------------------------------- test sets


def _brain_slices(vol: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    """``n`` seeded slice indices (axis 2) whose foreground covers >= 15 % of the slice.

    Foreground: above 10 % of the volume's p99.5 (the brain and skull; air is below).
    """
    hi = np.percentile(vol, 99.5)
    frac = (vol > 0.1 * hi).mean(axis=(0, 1))
    ok = np.flatnonzero(frac >= 0.15)
    # keep the central 80 % of the usable slices (the ends hold neck / skull top)
    lo, up = int(len(ok) * 0.1), int(np.ceil(len(ok) * 0.9))
    ok = ok[lo:up]
    return sorted(int(k) for k in rng.choice(ok, size=min(n, len(ok)), replace=False))


def test_sets(runs: Path) -> dict[str, list[dict[str, Any]]]:
    """``{test set: [{"id", "group", "clean"}]}``, clean 2D float32 slices, fixed seeds."""
    from medsight.data import load_dataset
    from medsight.io import read_image
    from medsight.training.denoise import _slices

    out: dict[str, list[dict[str, Any]]] = {}
    splits = hippocampus_split(runs)
    ds = load_dataset(HIPPO_SPEC)
    test_ids = set(splits.test)
    rng = np.random.default_rng(100)
    items = []
    for case in (c for c in ds if c.case_id in test_ids):
        slices, _, _ = _slices([case])  # the trainer's own rule for usable slices
        for k in sorted(
            rng.choice(len(slices), size=min(HIPPO_SLICES_PER_CASE, len(slices)), replace=False)
        ):
            items.append({"id": f"{case.case_id}:{k}", "group": case.case_id, "clean": slices[k]})
    out["hippocampus_test"] = items

    rng = np.random.default_rng(101)
    items = []
    folder = DATA / "ms_longitudinal" / "patient01"
    for f in sorted(folder.glob("study*_*W.nii.gz")) + sorted(folder.glob("study*_FLAIR.nii.gz")):
        vol = np.asarray(read_image(f).array, dtype=np.float32)
        name = f.name.removesuffix(".nii.gz")
        for k in _brain_slices(vol, MS_SLICES_PER_VOLUME, rng):
            items.append({"id": f"{name}:{k}", "group": name, "clean": vol[:, :, k].copy()})
    out["ms_patient01"] = items

    rng = np.random.default_rng(102)
    items = []
    for label, series in STUDY_SERIES.items():
        vol = np.asarray(
            read_image(DATA / "dicom" / "brain_mr_study1" / series).array, dtype=np.float32
        )
        for k in _brain_slices(vol, STUDY_SLICES_PER_SERIES, rng):
            items.append({"id": f"{label}:{k}", "group": label, "clean": vol[:, :, k].copy()})
    out["brain_mr_study1"] = items
    return out


# ------------------------------------------------------------------------------------ methods


def _unit(noisy: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """The noisy slice min-max scaled to [0, 1], its offset and scale, and estimated sigma."""
    from skimage.restoration import estimate_sigma

    lo, hi = float(noisy.min()), float(noisy.max())
    scale = hi - lo if hi > lo else 1.0
    z = ((noisy - lo) / scale).astype(np.float64)
    return z, lo, scale, max(float(estimate_sigma(z)), 1e-6)


def nlm(noisy: np.ndarray) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    z, lo, scale, sigma = _unit(noisy)
    out = denoise_nl_means(
        z,
        h=NLM_ARGS["h_over_sigma"] * sigma,
        sigma=sigma,
        fast_mode=NLM_ARGS["fast_mode"],
        patch_size=NLM_ARGS["patch_size"],
        patch_distance=NLM_ARGS["patch_distance"],
    )
    return (out * scale + lo).astype(np.float32)


def bm3d_denoise(noisy: np.ndarray) -> np.ndarray:
    import bm3d

    z, lo, scale, sigma = _unit(noisy)
    out = np.asarray(bm3d.bm3d(z, sigma_psd=sigma), dtype=np.float64)
    return (out * scale + lo).astype(np.float32)


def _stats(values: np.ndarray, groups: list[str] | None, seed: int = 0) -> dict[str, float]:
    from medsight.evaluation.bootstrap import bootstrap_ci

    r = bootstrap_ci(np.mean, values, groups=groups, n_resamples=1000, seed=seed)
    return {"mean": r.value, "ci_low": r.low, "ci_high": r.high, "n": len(values)}


def summarize(
    rows: list[dict[str, Any]],
    res: dict[str, Any],
    methods: tuple[str, ...] = METHODS,
    pairs: tuple[tuple[str, str], ...] = PAIRS,
) -> dict[str, Any]:
    """Per test set x level x method: mean with bootstrap CI; networks: spread over seeds;
    paired differences ``a - b`` for ``pairs``."""
    out: dict[str, Any] = {}
    sets = list(dict.fromkeys(r["set"] for r in rows))
    for name in sets:
        mine = [r for r in rows if r["set"] == name]
        # patient-level (cluster) bootstrap where there are patients; slice-level for the
        # single-patient sets
        by_case = name == "hippocampus_test"
        out[name] = {}
        for level in LEVELS:
            lv = [r for r in mine if r["level"] == level]
            ids = list(dict.fromkeys(r["id"] for r in lv))
            group_of = {r["id"]: r["group"] for r in lv}
            groups = [group_of[i] for i in ids] if by_case else None
            table: dict[str, Any] = {}
            per_image: dict[str, dict[str, np.ndarray]] = {}
            for method in methods:
                mr = [r for r in lv if r["method"] == method]
                if not mr:
                    continue
                entry: dict[str, Any] = {}
                seeds = sorted({r["seed"] for r in mr if r["seed"] is not None})
                for metric in ("psnr", "ssim"):
                    if seeds:
                        grid = np.array(
                            [
                                [
                                    next(r[metric] for r in mr if r["id"] == i and r["seed"] == s)
                                    for i in ids
                                ]
                                for s in seeds
                            ]
                        )  # seeds x images
                        vals = grid.mean(axis=0)
                        seed_means = grid.mean(axis=1)
                        entry[metric] = _stats(vals, groups) | {
                            "seed_means": seed_means.tolist(),
                            "seed_sd": float(np.std(seed_means, ddof=1)) if len(seeds) > 1 else 0.0,
                            "seed_min": float(seed_means.min()),
                            "seed_max": float(seed_means.max()),
                        }
                        per_image.setdefault(method, {})[metric] = vals
                        per_image[method][metric + "_seeds"] = grid
                    else:
                        vals = np.array([next(r[metric] for r in mr if r["id"] == i) for i in ids])
                        entry[metric] = _stats(vals, groups)
                        per_image.setdefault(method, {})[metric] = vals
                entry["seconds_per_image"] = float(np.mean([r["s"] for r in mr]))
                if seeds:
                    entry["seeds"] = seeds
                table[method] = entry
            comparisons = {}
            for a, b in pairs:
                if a not in per_image or b not in per_image:
                    continue
                comp = {}
                for metric in ("psnr", "ssim"):
                    diff = per_image[a][metric] - per_image[b][metric]
                    c = _stats(diff, groups)
                    if metric + "_seeds" in per_image[a]:
                        grid_b = per_image[b].get(metric + "_seeds")
                        ga = per_image[a][metric + "_seeds"].mean(axis=1)
                        gb = (
                            grid_b.mean(axis=1)
                            if grid_b is not None
                            else per_image[b][metric].mean()
                        )
                        per_seed = np.atleast_1d(ga - gb)
                        c["per_seed"] = per_seed.tolist()
                        c["all_seeds_better"] = bool((per_seed > 0).all())
                    c["better"] = bool(c["ci_low"] > 0 and c.get("all_seeds_better", True))
                    comp[metric] = c
                comparisons[f"{a}_minus_{b}"] = comp
            out[name][f"{level:g}"] = {"methods": table, "comparisons": comparisons}
    return out


def _classical(noisy: np.ndarray) -> list[tuple[str, np.ndarray, float]]:
    out = []
    for method, fn in (("nlm", nlm), ("bm3d", bm3d_denoise)):
        t0 = time.perf_counter()
        img = fn(noisy)
        out.append((method, img, time.perf_counter() - t0))
    return out


def stage_eval(runs: Path, res: dict[str, Any]) -> None:
    from medsight.evaluation.denoise import image_psnr, image_ssim
    from medsight.inference.denoise import Denoiser
    from medsight.transforms.noise import apply_noise, sample_noise

    nets = {}
    for key, info in sorted(res.get("training", {}).items()):
        den = Denoiser(ROOT / info["package"], device="cpu")
        den.denoise_array(np.zeros((1, 64, 64), np.float32) + np.arange(64, dtype=np.float32))
        nets[key] = (info["variant"], info["seed"], den)
    sets = test_sets(runs)
    res["test_sets"] = {
        name: {
            "n_images": len(items),
            "groups": sorted({it["group"] for it in items}),
            "ids": [it["id"] for it in items],
            "shapes": sorted({str(it["clean"].shape) for it in items}),
        }
        for name, items in sets.items()
    }
    rows: list[dict[str, Any]] = []
    examples: dict[str, np.ndarray] = {}
    rows_path = RESULTS / "denoise_mr_rows.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    for si, (name, items) in enumerate(sets.items()):
        t_set = time.time()
        ex = len(items) // 2
        jobs = []
        for ii, item in enumerate(items):
            clean = item["clean"]
            for li, level in enumerate(LEVELS):
                rng = np.random.default_rng([1000, si, ii, li])
                noisy = apply_noise(clean, sample_noise("rician", (level, level), clean, rng))
                jobs.append((ii, li, noisy))
        # the classical methods in 2 worker processes (one core each; BM3D dominates the cost)
        with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("fork")) as pool:
            classical = list(pool.map(_classical, [j[2] for j in jobs], chunksize=1))
        for (ii, li, noisy), done in zip(jobs, classical, strict=True):
            item, level = items[ii], LEVELS[li]
            clean = item["clean"]
            outs: list[tuple[str, int | None, np.ndarray, float]] = [("noisy", None, noisy, 0.0)]
            outs += [(m, None, img, sec) for m, img, sec in done]
            for variant, seed, den in nets.values():
                t0 = time.perf_counter()
                den_img = den.denoise_array(noisy[None])[0]
                outs.append((variant, seed, den_img, time.perf_counter() - t0))
            base = {"set": name, "id": item["id"], "group": item["group"], "level": level}
            for method, seed, img, sec in outs:
                rows.append(
                    base
                    | {
                        "method": method,
                        "seed": seed,
                        "psnr": image_psnr(img, clean),
                        "ssim": image_ssim(img, clean),
                        "s": sec,
                    }
                )
                if ii == ex and li == 1 and seed in (None, 0):
                    examples[f"{name}/{method}"] = img
            if ii == ex and li == 1:
                examples[f"{name}/clean"] = clean
        print(f"eval {name}: {len(items)} images in {time.time() - t_set:.0f} s", flush=True)
        rows_path.write_text(json.dumps(rows, default=float) + "\n", encoding="utf-8")
        res["results"] = summarize(rows, res)
        res["conventions"] = (
            "Rician noise, level = percent of the clean slice's p0.5-p99.5 range, seeded "
            "[1000, set, image, level]; PSNR/SSIM data_range = the clean slice's max - min "
            "(medsight.evaluation.denoise.image_psnr/image_ssim, SSIM 7x7 window); CI: "
            "bootstrap 95% (1000 resamples) over hippocampus test cases (cluster) or over "
            "slices (single-patient sets); networks: per-image mean over the 3 seeds, seed_* "
            "= spread of the per-seed means; seconds_per_image: wall time of the method alone "
            "on this CPU (networks: mean over seeds, 2 torch threads, in the main process; "
            "NLM and BM3D: 2 worker processes side by side, one core each)"
        )
        res["methods"] = {
            "nlm": "skimage denoise_nl_means(z, h=0.8*sigma, sigma=sigma, fast_mode=True, "
            "patch_size=5, patch_distance=6), sigma = skimage estimate_sigma(z), z = noisy "
            "min-max scaled to [0, 1]",
            "bm3d": "bm3d.bm3d(z, sigma_psd=estimate_sigma(z)), z as for NLM",
            "gan": "medsight denoiser, adversarial_weight default (0.005)",
            "noadv": "the same with adversarial_weight=0 (L1 + 0.5 (1 - SSIM))",
        }
        save_results(res)
        np.savez_compressed(runs / "examples.npz", **examples)


def stage_figure(runs: Path, res: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ex = dict(np.load(runs / "examples.npz"))
    sets = list(dict.fromkeys(k.split("/")[0] for k in ex))
    cols = ["clean", "noisy", "nlm", "bm3d", "gan", "noadv", "gan-noisy", "gan-clean"]
    titles = {
        "clean": "clean",
        "noisy": f"Rician {LEVELS[1]:g}%",
        "nlm": "NLM",
        "bm3d": "BM3D",
        "gan": "GAN (seed 0)",
        "noadv": "no-adv (seed 0)",
        "gan-noisy": "GAN - noisy (removed)",
        "gan-clean": "GAN - clean (error)",
    }
    fig, axes = plt.subplots(len(sets), len(cols), figsize=(2.2 * len(cols), 2.4 * len(sets)))
    axes = np.atleast_2d(axes)
    for r, name in enumerate(sets):
        clean = ex[f"{name}/clean"]
        lo, hi = np.percentile(clean, [0.5, 99.5])
        removed = ex[f"{name}/gan"] - ex[f"{name}/noisy"]
        error = ex[f"{name}/gan"] - clean
        lim = float(np.percentile(np.abs(removed), 99.5)) or 1.0
        for c, col in enumerate(cols):
            ax = axes[r, c]
            if col == "gan-noisy":
                ax.imshow(removed.T, cmap="coolwarm", vmin=-lim, vmax=lim)
            elif col == "gan-clean":
                ax.imshow(error.T, cmap="coolwarm", vmin=-lim, vmax=lim)
            else:
                ax.imshow(ex[f"{name}/{col}"].T, cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[col], fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT_PNG, dpi=80)
    plt.close(fig)
    res["figure"] = OUT_PNG.name
    save_results(res)


def markdown(res: dict[str, Any]) -> str:
    """The BENCHMARKS.md table: test set x level x method, PSNR and SSIM."""
    names = {"noisy": "noisy", "nlm": "NLM", "bm3d": "BM3D", "gan": "GAN", "noadv": "no-adv"}
    lines = [
        "| test set | level | method | PSNR dB (95% CI) | seeds min-max | SSIM (95% CI) "
        "| seeds min-max | s / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, by_level in res.get("results", {}).items():
        for level, block in by_level.items():
            for method, e in block["methods"].items():
                p, s = e["psnr"], e["ssim"]
                ps = f"{p['seed_min']:.2f}-{p['seed_max']:.2f}" if "seed_min" in p else ""
                ss = f"{s['seed_min']:.3f}-{s['seed_max']:.3f}" if "seed_min" in s else ""
                lines.append(
                    f"| {name} | {level}% | {names[method]} | {p['mean']:.2f} "
                    f"({p['ci_low']:.2f}-{p['ci_high']:.2f}) | {ps} | {s['mean']:.3f} "
                    f"({s['ci_low']:.3f}-{s['ci_high']:.3f}) | {ss} | "
                    f"{e['seconds_per_image']:.3f} |"
                )
    return "\n".join(lines)


def method_table(res: dict[str, Any], columns: dict[str, str]) -> list[str]:
    """Markdown rows: test set x level, a ``PSNR (± seed SD) / SSIM`` cell per method of
    ``columns`` (method key: column title; empty where a method has no result)."""
    head = "| test set (images) | level | " + " | ".join(columns.values()) + " |"
    lines = [head, "|---|---|" + "---|" * len(columns)]
    for name, by_level in res.get("results", {}).items():
        n = res["test_sets"][name]["n_images"]
        for level, block in by_level.items():
            cells = []
            for key in columns:
                e = block["methods"].get(key)
                if e is None:
                    cells.append("")
                    continue
                p, s = e["psnr"], e["ssim"]
                spread = f" ±{p['seed_sd']:.2f}" if "seed_sd" in p else ""
                cells.append(f"{p['mean']:.2f}{spread} / {s['mean']:.3f}")
            lines.append(f"| {name} ({n}) | {level}% | " + " | ".join(cells) + " |")
    return lines


def compact(res: dict[str, Any]) -> str:
    """Two compact tables: PSNR / SSIM per method, and the GAN's paired differences."""
    lines = method_table(
        res,
        {"noisy": "noisy", "nlm": "NLM", "bm3d": "BM3D", "gan": "GAN", "noadv": "no-adv"},
    )
    lines += [
        "",
        "| test set | level | GAN - BM3D PSNR dB (95% CI; seeds min..max) | GAN - BM3D SSIM "
        "| GAN - no-adv PSNR dB (seeds) | GAN beats BM3D? |",
        "|---|---|---|---|---|---|",
    ]
    for name, by_level in res.get("results", {}).items():
        for level, block in by_level.items():
            c = block["comparisons"].get("gan_minus_bm3d")
            d = block["comparisons"].get("gan_minus_noadv")
            if not c:
                continue
            p, s = c["psnr"], c["ssim"]
            ps = p.get("per_seed", [p["mean"]])
            verdict = (
                "yes"
                if p["better"] and s["better"]
                else ("PSNR only" if p["better"] else ("SSIM only" if s["better"] else "no"))
            )
            dn = ""
            if d:
                q = d["psnr"]
                qs = q.get("per_seed", [q["mean"]])
                dn = f"{q['mean']:+.2f} ({min(qs):+.2f}..{max(qs):+.2f})"
            lines.append(
                f"| {name} | {level}% | {p['mean']:+.2f} ({p['ci_low']:+.2f} to "
                f"{p['ci_high']:+.2f}; {min(ps):+.2f}..{max(ps):+.2f}) | {s['mean']:+.3f} "
                f"({s['ci_low']:+.3f} to {s['ci_high']:+.3f}) | {dn} | {verdict} |"
            )
    return "\n".join(lines)


def hardware(threads: int) -> dict[str, Any]:
    """The machine a run used (no GPU: these benchmarks run on the CPU)."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "gpu": None,
    }


def run_stages(stage: str, steps: list[tuple[str, Any]]) -> None:
    """Run each ``(name, fn)`` of ``steps`` whose name is ``stage``, or all of them for ``all``."""
    for name, fn in steps:
        if stage in (name, "all"):
            fn()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["train", "eval", "figure", "all", "table"])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "denoise_mr")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    res = load_results()
    if args.stage == "table":
        print(compact(res))
        print()
        print(markdown(res))
        return 0
    res["hardware"] = hardware(args.threads)
    res["steps"] = STEPS
    res["channels"] = CHANNELS
    res["levels"] = list(LEVELS)
    res["seeds"] = list(SEEDS)
    run_stages(
        args.stage,
        [
            ("train", lambda: stage_train(args.runs, args.threads, res)),
            ("eval", lambda: stage_eval(args.runs, res)),
            ("figure", lambda: stage_figure(args.runs, res)),
        ],
    )
    save_results(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
