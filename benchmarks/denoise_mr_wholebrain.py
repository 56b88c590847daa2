"""MR denoising with whole-brain training data: leave one whole-brain study out.

``denoise_mr.py`` trained the denoisers on hippocampus crops only, and on the whole-brain slices
of two other patients they lost to BM3D (up to 1.9 dB at 3 % Rician noise), leaving the
noise floor of the dark background that crops never show.  This benchmark asks whether
whole-brain training data fixes that, with everything else held: the same networks, losses,
seeds, hippocampus split and test images, but :data:`STEPS` training steps (2000, against
``denoise_mr.STEPS`` = 800 there: a difference to the hippocampus-only networks mixes the data
and the longer training).

Design (leave one study out; no network sees the study it is tested on):

* fold ``ms_patient01``: hippocampus train part + ``brain_mr_study1`` (all 5 DICOM series) via
  ``DenoiseConfig.extra_data``; tested on ``ms_patient01`` and ``hippocampus_test``;
* fold ``brain_mr_study1``: hippocampus train part + ``ms_patient01`` (6 NIfTI volumes, a CSV
  manifest written under the runs folder); tested on ``brain_mr_study1`` and
  ``hippocampus_test``.

Each set is equally likely per training patch (the ``extra_data`` rule), and the extra set's
validation part is a seeded fifth of its volumes.  ``hippocampus_test`` rows of a seed are the
mean of the two fold models.  Variants ``gan_wb`` (default adversarial weight) and
``noadv_wb`` (``adversarial_weight=0``), seeds 0-2.

The test images, their noise (same seeds) and the rows of the noisy input, NLM, BM3D and the
hippocampus-only networks are read from ``benchmarks/results/denoise_mr_rows.json`` (BM3D alone
took about 15 CPU-minutes there); the noisy inputs are rebuilt and checked against those rows
(PSNR equal to 1e-9) before any network runs, so the comparison is on identical inputs.

Usage (from the project root, ``../shared/data`` present, after ``denoise_mr.py eval``)::

    .venv/bin/python benchmarks/denoise_mr_wholebrain.py all [--threads 2]
    .venv/bin/python benchmarks/denoise_mr_wholebrain.py table

Writes ``benchmarks/results/denoise_mr_wholebrain.json`` (after every training and at the end
of eval), ``..._rows.json`` and the figure ``denoise_mr_wholebrain_examples.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import denoise_mr as base

ROOT = base.ROOT
DATA = base.DATA
RESULTS = base.RESULTS
OUT_JSON = RESULTS / "denoise_mr_wholebrain.json"
ROWS_JSON = RESULTS / "denoise_mr_wholebrain_rows.json"
OUT_PNG = RESULTS / "denoise_mr_wholebrain_examples.png"
FOLDS = ("brain_mr_study1", "ms_patient01")  # the held-out whole-brain study of each fold
VARIANTS = ("gan_wb", "noadv_wb")
#: Steps of the whole-brain runs: more than denoise_mr's 800 (a pilot at 800 steps picked its
#: checkpoint at step 200-400 of a still-falling loss, with a global intensity offset), fewer
#: than the default 4000 (CPU budget: about 9 min per GAN run here).
STEPS = 2000
VAL_EVERY = 250
METHODS = ("noisy", "nlm", "bm3d", "gan", "noadv", "gan_wb", "noadv_wb")
PAIRS = (
    ("gan_wb", "bm3d"),
    ("gan_wb", "gan"),
    ("noadv_wb", "bm3d"),
    ("noadv_wb", "noadv"),
    ("gan_wb", "noadv_wb"),
)


def load() -> dict[str, Any]:
    return base.load_results(OUT_JSON)


def save(res: dict[str, Any]) -> None:
    base.save_results(res, OUT_JSON)


def ms_manifest(runs: Path) -> str:
    """A CSV manifest of ms_patient01's six volumes (paths relative to the CSV)."""
    folder = DATA / "ms_longitudinal" / "patient01"
    files = sorted(folder.glob("study*_*W.nii.gz")) + sorted(folder.glob("study*_FLAIR.nii.gz"))
    runs.mkdir(parents=True, exist_ok=True)
    csv = runs / "ms_patient01.csv"
    lines = ["path,patient_id"] + [f"{os.path.relpath(f, runs)},patient01" for f in files]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"csv:{csv}?license=CC BY&source=Lesjak et al. 2016 longitudinal MS, patient01"


def extra_spec(fold: str, runs: Path) -> str:
    """The whole-brain set a fold trains on: the other study."""
    if fold == "ms_patient01":
        return (
            f"dicom:{DATA / 'dicom' / 'brain_mr_study1'}?license=CC BY 3.0"
            "&source=TCIA Brain-Tumor-Progression PGBM-002"
        )
    return ms_manifest(runs)


def config(runs: Path, fold: str, variant: str, seed: int, threads: int) -> Any:
    cfg = base.train_config(runs, variant.removesuffix("_wb"), seed, threads)
    return cfg.model_copy(
        update={
            "extra_data": [extra_spec(fold, runs)],
            "steps": STEPS,
            "val_every": VAL_EVERY,
            "out": runs / f"{variant}_{fold}_{STEPS}steps_seed{seed}",
            "name": f"mr-denoise-rician-{variant}-heldout-{fold}",
        }
    )


def stage_train(runs: Path, threads: int, res: dict[str, Any], variants: list[str]) -> None:
    from medsight.models.package import ModelPackage
    from medsight.training.denoise import train_denoiser

    base.hippocampus_split(runs)
    res.setdefault("training", {})
    jobs = [(v, s, f) for v in variants for s in base.SEEDS for f in FOLDS]
    t_all, done_now = time.time(), 0
    for n, (variant, seed, fold) in enumerate(jobs):
        key = f"{variant}_{fold}_{STEPS}steps_seed{seed}"
        cfg = config(runs, fold, variant, seed, threads)
        pkg_dir = cfg.out / "package"
        if (pkg_dir / "model.json").is_file():
            pkg = ModelPackage.load(pkg_dir)
            seconds = res["training"].get(key, {}).get("seconds")
        else:
            left = len(jobs) - n
            per_job = (time.time() - t_all) / max(1, done_now)
            eta = f"; ETA {per_job * left / 60:.0f} min" if done_now else ""
            print(f"== training {key} ({n + 1}/{len(jobs)}{eta})", flush=True)
            t0 = time.time()
            pkg = train_denoiser(cfg, log=lambda s: print("  " + s, flush=True))
            seconds = time.time() - t0
            done_now += 1
        val = {m.name: m.value for m in pkg.spec.metrics}
        res["training"][key] = {
            "variant": variant,
            "seed": seed,
            "fold": fold,
            "extra_data": cfg.extra_data,
            "adversarial_weight": cfg.adversarial_weight,
            "package": str(pkg_dir),
            "seconds": seconds,
            "best_step": pkg.spec.extra.get("best_step"),
            "n_cases": pkg.spec.training_data.n_cases,
            "val_psnr": val.get("psnr"),
            "val_psnr_noisy": val.get("psnr_noisy"),
        }
        save(res)


def stage_eval(runs: Path, res: dict[str, Any]) -> None:
    from medsight.evaluation.denoise import image_psnr, image_ssim
    from medsight.inference.denoise import Denoiser
    from medsight.transforms.noise import apply_noise, sample_noise

    old = json.loads((RESULTS / "denoise_mr_rows.json").read_text(encoding="utf-8"))
    noisy_psnr = {(r["set"], r["id"], r["level"]): r["psnr"] for r in old if r["method"] == "noisy"}
    nets = {
        key: (info["variant"], info["seed"], info["fold"], Denoiser(ROOT / info["package"]))
        for key, info in sorted(res["training"].items())
    }
    sets = base.test_sets(runs)
    rows = [r for r in old if r["method"] in base.METHODS]
    t_all = time.time()
    for si, (name, items) in enumerate(sets.items()):
        mine = [n for n in nets.values() if name == "hippocampus_test" or n[2] == name]
        by_seed: dict[tuple[str, str, float, str, int], list[tuple[float, float, float]]] = {}
        for ii, item in enumerate(items):
            clean = item["clean"]
            for li, level in enumerate(base.LEVELS):
                rng = np.random.default_rng([1000, si, ii, li])  # denoise_mr's noise seeds
                noisy = apply_noise(clean, sample_noise("rician", (level, level), clean, rng))
                want = noisy_psnr[(name, item["id"], level)]
                if abs(image_psnr(noisy, clean) - want) > 1e-9:
                    raise SystemExit(f"{name} {item['id']} {level}: not denoise_mr's noisy input")
                for variant, seed, _fold, den in mine:
                    t0 = time.perf_counter()
                    img = den.denoise_array(noisy[None])[0]
                    sec = time.perf_counter() - t0
                    by_seed.setdefault((name, item["id"], level, variant, seed), []).append(
                        (image_psnr(img, clean), image_ssim(img, clean), sec)
                    )
                    example = ii == len(items) // 2 and li == 1 and seed == 0
                    if example and name != "hippocampus_test":
                        np.save(runs / f"example_{name}_{variant}.npy", img)
        group = {it["id"]: it["group"] for it in items}
        for (set_name, iid, level, variant, seed), vals in by_seed.items():
            v = np.asarray(vals)  # hippocampus_test: the two fold models of the seed
            rows.append(
                {"set": set_name, "id": iid, "group": group[iid], "level": level}
                | {"method": variant, "seed": seed, "psnr": float(v[:, 0].mean())}
                | {"ssim": float(v[:, 1].mean()), "s": float(v[:, 2].mean()), "models": len(v)}
            )
        print(f"eval {name}: {len(items)} images, {time.time() - t_all:.0f} s", flush=True)
    ROWS_JSON.write_text(json.dumps(rows, default=float) + "\n", encoding="utf-8")
    res["test_sets"] = {name: {"n_images": len(items)} for name, items in sets.items()}
    res["results"] = base.summarize(rows, res, METHODS, PAIRS)
    save(res)


def stage_figure(runs: Path, res: dict[str, Any]) -> None:
    """Clean, noisy, BM3D, the hippocampus-only GAN (zoo model), GAN wb, and both errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medsight.inference.denoise import Denoiser
    from medsight.transforms.noise import apply_noise, sample_noise

    sets = base.test_sets(runs)
    zoo = Denoiser(ROOT / "src" / "medsight" / "zoo" / "mr-denoiser-unet")
    names = [n for n in FOLDS]
    fig, axes = plt.subplots(len(names), 7, figsize=(15, 2.4 * len(names) + 0.4))
    for r, name in enumerate(names):
        si = list(sets).index(name)
        items = sets[name]
        ii = len(items) // 2
        clean = items[ii]["clean"]
        rng = np.random.default_rng([1000, si, ii, 1])
        noisy = apply_noise(clean, sample_noise("rician", (base.LEVELS[1],) * 2, clean, rng))
        bm3d = base.bm3d_denoise(noisy)
        hip = zoo.denoise_array(noisy[None])[0]
        wb = np.load(runs / f"example_{name}_gan_wb.npy")
        lo, hi = np.percentile(clean, [0.5, 99.5])
        lim = float(np.percentile(np.abs(noisy - clean), 99.5)) or 1.0
        panels = [
            ("clean", clean, "gray"),
            (f"Rician {base.LEVELS[1]:g}%", noisy, "gray"),
            ("BM3D", bm3d, "gray"),
            ("GAN, hippocampus only (zoo)", hip, "gray"),
            ("GAN + other whole-brain study", wb, "gray"),
            ("error, hippocampus only", hip - clean, "coolwarm"),
            ("error, + whole-brain", wb - clean, "coolwarm"),
        ]
        for c, (title, img, cmap) in enumerate(panels):
            ax = axes[r, c]
            kw = {"vmin": lo, "vmax": hi} if cmap == "gray" else {"vmin": -lim, "vmax": lim}
            ax.imshow(img.T, cmap=cmap, **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{name}\n{items[ii]['id']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT_PNG, dpi=80)
    plt.close(fig)
    res["figure"] = OUT_PNG.name
    save(res)


def table(res: dict[str, Any]) -> str:
    """PSNR / SSIM per method, and the paired PSNR differences with their verdicts."""
    columns = {
        "noisy": "noisy",
        "bm3d": "BM3D",
        "gan": "GAN hip",
        "noadv": "no-adv hip",
        "gan_wb": "GAN wb",
        "noadv_wb": "no-adv wb",
    }
    lines = base.method_table(res, columns)
    pairs = [f"{a} - {b}" for a, b in PAIRS]
    lines += ["", "| test set | level | " + " | ".join(pairs) + " |"]
    lines.append("|---|---|" + "---|" * len(pairs))
    for name, by_level in res.get("results", {}).items():
        for level, block in by_level.items():
            cells = []
            for a, b in PAIRS:
                c = block["comparisons"].get(f"{a}_minus_{b}")
                if not c:
                    cells.append("")
                    continue
                p, s = c["psnr"], c["ssim"]
                ps = p.get("per_seed", [p["mean"]])
                mark = "**" if p["better"] else ""
                cells.append(
                    f"{mark}{p['mean']:+.2f}{mark} ({p['ci_low']:+.2f}..{p['ci_high']:+.2f}; "
                    f"seeds {min(ps):+.2f}..{max(ps):+.2f}) / {s['mean']:+.3f}"
                )
            lines.append(f"| {name} | {level}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["train", "eval", "figure", "all", "table"])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "denoise_mr")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=["gan_wb"],
        help="networks to train (default: the GAN only; noadv_wb adds the baseline)",
    )
    args = ap.parse_args(argv)
    res = load()
    if args.stage == "table":
        print(table(res))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    res |= {
        "hardware": base.hardware(args.threads),
        "steps": STEPS,
        "steps_hippocampus_only_runs": base.STEPS,
        "seeds": list(base.SEEDS),
        "levels": list(base.LEVELS),
        "folds": list(FOLDS),
        "commit": commit,
    }
    base.run_stages(
        args.stage,
        [
            ("train", lambda: stage_train(args.runs, args.threads, res, args.variants)),
            ("eval", lambda: stage_eval(args.runs, res)),
            ("figure", lambda: stage_figure(args.runs, res)),
        ],
    )
    save(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
