"""Lesion contrast check: does a speckle denoiser keep BUSI lesions (neither paint away nor in)?

Data: BUSI (``../shared/data/busi``), the benign and malignant images with their lesion masks
(all ``_mask*.png`` of an image merged), grey, resized to :data:`SIZE` x :data:`SIZE`
(scikit-image ``resize``, anti-aliased; masks nearest-neighbour) to fit the CPU.  A seeded
image-level split (BUSI carries no patient ids; each image is its own patient, as the folder
adapter assumes): :data:`N_TEST` test images, the rest for training (of which the trainer
validates on a seeded fifth).  The test images are never seen by training.

Denoisers, all blind (the level is not given):

* ``gan``: ``medsight train denoise --noise speckle`` (conditional GAN, adversarial weight
  0.005, the default) with the reduced CPU settings :data:`TRAIN` (levels :data:`TRAIN_LEVELS`,
  percent = the speckle factor's standard deviation), seeds 0, 1, 2;
* ``noadv``: the same with ``adversarial_weight=0`` (L1 + SSIM only), seeds 0, 1, 2;
* ``nlm``, ``bm3d``: as in ``benchmarks/denoise_mr.py`` (sigma estimated from the noisy image;
  both assume additive noise, speckle is multiplicative).

Test: speckle at :data:`TEST_LEVEL` % on each clean test image (seeded per image); for the clean,
noisy and each denoised image the lesion contrast (inside-mask mean minus the mean of a
:data:`RING`-pixel ring around the mask) and the contrast-to-noise ratio
(:func:`medsight.evaluation.denoise.lesion_contrast`), and PSNR against the clean image.
Summary per method: mean CNR, mean contrast ratio (denoised contrast / clean contrast; 1 means
the lesion's contrast is kept, below 1 that it is faded, above 1 that it is exaggerated), PSNR,
each with an image-level bootstrap 95% CI; the networks also per seed and the spread of the
seed means.  Results: ``benchmarks/results/denoise_busi_cnr.json``.

Usage (project root, ``../shared/data`` present)::

    .venv/bin/python benchmarks/denoise_busi_cnr.py [--runs runs/denoise_busi_cnr] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSIGHT_DATA", ROOT.parent / "shared" / "data")).resolve()
OUT_JSON = ROOT / "benchmarks" / "results" / "denoise_busi_cnr.json"
sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZE = 128
N_TEST = 40
SEEDS = (0, 1, 2)
TRAIN_LEVELS = (10.0, 40.0)
TEST_LEVEL = 25.0
RING = 6
#: Reduced CPU training (the defaults are 4000 steps, channels 32-256, batch 16).
TRAIN = {
    "steps": 150,
    "val_every": 75,
    "channels": [16, 32, 64],
    "batch_size": 8,
    "patch_size": 32,
    "max_val_slices": 24,
}
METHODS = ("clean", "noisy", "nlm", "bm3d", "gan", "noadv")


def load_busi(cache: Path | None = None) -> list[dict[str, Any]]:
    """Benign and malignant BUSI images with merged masks, grey, resized to SIZE x SIZE
    (kept in ``cache``, an ``.npz`` in the run folder, for reruns)."""
    from skimage.io import imread
    from skimage.transform import resize

    if cache is not None and cache.exists():
        z = np.load(cache)
        return [
            {"id": str(i), "cls": str(i).split("/")[0], "img": im, "mask": m}
            for i, im, m in zip(z["ids"], z["imgs"], z["masks"], strict=True)
        ]
    items = []
    for cls in ("benign", "malignant"):
        folder = DATA / "busi" / cls
        for path in sorted(folder.glob("*.png")):
            if "_mask" in path.name:
                continue
            img = np.asarray(imread(path), dtype=np.float64)
            if img.ndim == 3:
                img = img[..., :3] @ np.array([0.299, 0.587, 0.114])
            masks = sorted(folder.glob(f"{path.stem}_mask*.png"))
            if not masks:
                continue
            mask = np.zeros(img.shape, bool)
            for m in masks:
                a = np.asarray(imread(m))
                mask |= (a[..., 0] if a.ndim == 3 else a) > 0
            small = resize(img, (SIZE, SIZE), anti_aliasing=True, preserve_range=True)
            small_mask = resize(mask.astype(float), (SIZE, SIZE), order=0) > 0.5
            if small_mask.sum() < 16 or small_mask.all():
                continue
            items.append({"id": f"{cls}/{path.stem}", "cls": cls, "img": small, "mask": small_mask})
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            cache,
            ids=np.array([it["id"] for it in items]),
            imgs=np.stack([it["img"] for it in items]),
            masks=np.stack([it["mask"] for it in items]),
        )
    return items


def split(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    order = np.random.default_rng(0).permutation(len(items))
    test = [items[i] for i in sorted(order[:N_TEST])]
    train = [items[i] for i in sorted(order[N_TEST:])]
    return train, test


def write_train_folder(train: list[dict[str, Any]], folder: Path) -> str:
    from skimage.io import imsave

    for it in train:
        cls, stem = it["id"].split("/")
        path = folder / cls / f"{stem}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            imsave(
                path, np.clip(np.round(it["img"]), 0, 255).astype(np.uint8), check_contrast=False
            )
    return f"folder:{folder}?target=class"


def train_all(
    runs: Path, data: str, threads: int, res: dict[str, Any], baseline_seeds: int = len(SEEDS)
) -> dict[str, Path]:
    from medsight.models.package import ModelPackage
    from medsight.training.denoise import DenoiseConfig, train_denoiser

    packages = {}
    for variant, weight in (("gan", 0.005), ("noadv", 0.0)):
        for seed in SEEDS if variant == "gan" else SEEDS[:baseline_seeds]:
            out = runs / f"{variant}_s{seed}"
            if not (out / "package" / "model.json").exists():
                cfg = DenoiseConfig(
                    data=data,
                    out=out,
                    noise="speckle",
                    levels=TRAIN_LEVELS,
                    adversarial_weight=weight,
                    seed=seed,
                    device="cpu",
                    threads=threads,
                    modality="US",
                    name=f"busi-speckle-{variant}-s{seed}",
                    resume=(out / "checkpoint.pt").exists(),  # an interrupted run continues
                    **TRAIN,
                )
                t0 = time.monotonic()
                train_denoiser(cfg, log=lambda s: print(s, flush=True))
                res.setdefault("train_seconds", {})[f"{variant}_s{seed}"] = round(
                    time.monotonic() - t0, 1
                )
            packages[f"{variant}_s{seed}"] = ModelPackage.load(out / "package").path
    return packages


def evaluate(test: list[dict[str, Any]], packages: dict[str, Path]) -> list[dict[str, Any]]:
    from denoise_mr import bm3d_denoise, nlm

    from medsight.core import Image
    from medsight.evaluation.denoise import image_psnr, lesion_contrast
    from medsight.inference.denoise import Denoiser
    from medsight.transforms.noise import apply_noise, sample_noise

    nets = {k: Denoiser(p, device="cpu") for k, p in packages.items()}
    rows = []
    for n, it in enumerate(test):
        clean = it["img"].astype(np.float32)
        rng = np.random.default_rng([7, n])
        noisy = apply_noise(clean, sample_noise("speckle", (TEST_LEVEL, TEST_LEVEL), clean, rng))
        outs: dict[tuple[str, int | None], np.ndarray] = {
            ("clean", None): clean,
            ("noisy", None): noisy,
            ("nlm", None): nlm(noisy),
            ("bm3d", None): bm3d_denoise(noisy),
        }
        image = Image(noisy, spatial_ndim=2, modality="US")
        for key, den in nets.items():
            variant, seed = key.split("_s")
            outs[(variant, int(seed))] = np.asarray(den(image).array, dtype=np.float32)
        base = lesion_contrast(clean, it["mask"], ring=RING)
        for (method, seed), arr in outs.items():
            lc = lesion_contrast(arr, it["mask"], ring=RING)
            rows.append(
                {
                    "id": it["id"],
                    "method": method,
                    "seed": seed,
                    "cnr": lc.cnr,
                    "contrast": lc.contrast,
                    "contrast_ratio": lc.contrast / base.contrast if base.contrast else None,
                    "psnr": None if method == "clean" else image_psnr(arr, clean),
                }
            )
        print(f"image {n + 1}/{len(test)}", flush=True)
    return rows


def _ci(values: np.ndarray) -> dict[str, float]:
    from medsight.evaluation.bootstrap import bootstrap_ci

    r = bootstrap_ci(np.mean, values, n_resamples=1000, seed=0)
    return {"mean": r.value, "ci_low": r.low, "ci_high": r.high, "n": len(values)}


def _value(rows: list[dict[str, Any]], image: str, seed: int, metric: str) -> float:
    return next(r[metric] for r in rows if r["id"] == image and r["seed"] == seed)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ids = list(dict.fromkeys(r["id"] for r in rows))
    # contrast ratio only where the clean lesion has a usable contrast (|contrast| >= 5 grey
    # levels of 255); nearly iso-echoic lesions make the ratio meaningless
    clean_c = {r["id"]: r["contrast"] for r in rows if r["method"] == "clean"}
    usable = [i for i in ids if abs(clean_c[i]) >= 5]
    out: dict[str, Any] = {"n_images": len(ids), "n_images_contrast_ratio": len(usable)}
    for method in METHODS:
        mr = [r for r in rows if r["method"] == method]
        seeds = sorted({r["seed"] for r in mr if r["seed"] is not None})
        entry: dict[str, Any] = {}
        for metric, subset in (("cnr", ids), ("contrast_ratio", usable), ("psnr", ids)):
            if metric == "psnr" and method == "clean":
                continue
            if seeds:
                grid = np.array(
                    [
                        [
                            next(r[metric] for r in mr if r["id"] == i and r["seed"] == s)
                            for i in subset
                        ]
                        for s in seeds
                    ]
                )
                means = grid.mean(axis=1)
                entry[metric] = _ci(grid.mean(axis=0)) | {
                    "seed_means": means.tolist(),
                    "seed_sd": float(np.std(means, ddof=1)) if len(means) > 1 else None,
                }
            else:
                vals = np.array([next(r[metric] for r in mr if r["id"] == i) for i in subset])
                entry[metric] = _ci(vals)
        if seeds:
            entry["seeds"] = seeds
        out[method] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "denoise_busi_cnr")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--baseline-seeds",
        type=int,
        default=len(SEEDS),
        help="train the no-adversarial baseline for only the first N seeds (time budget)",
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="2 training steps, 3 test images, results in the run folder only (a code check)",
    )
    args = ap.parse_args(argv)
    global N_TEST, OUT_JSON
    if args.smoke:
        TRAIN.update(steps=2, val_every=1, max_val_slices=2)
        N_TEST, OUT_JSON = 3, args.runs / "smoke" / "denoise_busi_cnr.json"
        args.runs = args.runs / "smoke"
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    res: dict[str, Any] = {
        "benchmark": "denoise_busi_cnr",
        "data": "../shared/data/busi (benign + malignant with masks)",
        "size": SIZE,
        "n_test": N_TEST,
        "split": "image-level, seed 0 (BUSI has no patient ids)",
        "seeds": list(SEEDS),
        "train": TRAIN | {"levels": list(TRAIN_LEVELS), "noise": "speckle"},
        "test_level": TEST_LEVEL,
        "ring": RING,
        "hardware": {"cpu": platform.machine(), "cores": os.cpu_count(), "threads": args.threads},
    }
    items = load_busi(
        args.runs.parent / "busi_cache.npz" if args.smoke else args.runs / "busi_cache.npz"
    )
    train, test = split(items)
    res["n_train_images"] = len(train)
    data = write_train_folder(train, args.runs / "train_images")
    packages = train_all(args.runs, data, args.threads, res, args.baseline_seeds)
    res["seeds_trained"] = sorted(packages)
    rows = evaluate(test, packages)
    res["summary"] = summarize(rows)
    res["seconds"] = round(time.monotonic() - t0, 1)
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    (OUT_JSON.with_name("denoise_busi_cnr_rows.json")).write_text(
        json.dumps(rows, indent=0) + "\n", encoding="utf-8"
    )
    for method in METHODS:
        e = res["summary"][method]
        print(
            f"{method:6s} CNR {e['cnr']['mean']:.2f} contrast ratio "
            f"{e['contrast_ratio']['mean']:.2f}"
            + (f" PSNR {e['psnr']['mean']:.2f}" if "psnr" in e else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
