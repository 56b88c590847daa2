"""Train (or pick) the zoo's MR denoiser and write it to ``src/medsight/zoo/mr-denoiser-unet``.

The package is the GAN variant of ``benchmarks/denoise_mr.py`` (rician noise, levels 2-10 %,
MSD Task04 hippocampus, patient-level split of that benchmark) for the seed with the best
*validation* PSNR, read from ``benchmarks/results/denoise_mr.json``; without that benchmark's
runs (``--fresh``, or the run folders are gone) it trains one anew with the same settings and
``--seed`` (about 3-5 CPU-minutes).  The weights are copied unchanged; the package gets its zoo
name, its intended use and limits, and a model card naming this script.

Usage (from the project root, ``../shared/data`` present)::

    .venv/bin/python scripts/train_zoo_denoiser.py [--fresh --seed 0] [--runs runs/denoise_mr]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import denoise_mr as bench  # noqa: E402  (the benchmark's settings are the zoo model's)

ZOO_DIR = ROOT / "src" / "medsight" / "zoo" / "mr-denoiser-unet"
NAME = "mr-denoiser-unet"
VERSION = "0.1.0"

INTENDED_USE = (
    "Research use only: blind denoising of 2D MR magnitude images (each slice of a volume "
    "separately) with Rician noise of 2-10% of the slice's p0.5-p99.5 intensity range, the "
    "levels it was trained on. Used by `medsight denoise` when no --model is given and the "
    "image is MR. Not a medical device; always compare the result with the original image."
)
LIMITATIONS = (
    "Trained only on the 182 training cases (26 for validation) of the MSD Task04 hippocampus "
    "crops (about 35 x 51 pixels of 1 mm T1-weighted MR, intensities rescaled by the data's "
    "redistributor), 2D slice-wise, with synthetic Rician noise added to images that already "
    "hold their own scanner noise; whole-brain slices, other contrasts (T2, FLAIR), other "
    "resolutions and real scanner noise (spatially correlated, non-stationary after parallel "
    "imaging) are outside its training data: see BENCHMARKS.md (MR denoising) for how it "
    "does on them against NLM and BM3D. Short CPU training (800 steps). The adversarial loss "
    "can invent or remove fine detail; not for CT, ultrasound or other noise models (it "
    "refuses images whose modality is not MR)."
)


def pick_run(runs: Path) -> tuple[Path, dict[str, object]] | None:
    """The benchmark's GAN package with the best validation PSNR, or None."""
    path = bench.OUT_JSON
    if not path.is_file():
        return None
    training = json.loads(path.read_text(encoding="utf-8")).get("training", {})
    gans = [
        t
        for t in training.values()
        if t["variant"] == "gan" and (Path(t["package"]) / "model.json").is_file()
    ]
    if not gans:
        return None
    best = max(gans, key=lambda t: t["val_psnr"])
    return Path(best["package"]), {
        "chosen_by": "best validation PSNR among the benchmark's GAN seeds",
        "candidates": {f"seed{t['seed']}": t["val_psnr"] for t in gans},
    }


def train_fresh(runs: Path, seed: int, threads: int) -> Path:
    from medsight.training.denoise import train_denoiser

    bench.hippocampus_split(runs)
    cfg = bench.train_config(runs, "gan", seed, threads).model_copy(
        update={"out": runs / f"zoo_gan_seed{seed}"}
    )
    train_denoiser(cfg, log=print)
    return cfg.out / "package"


def card(spec: object, choice: dict[str, object]) -> str:
    from medsight.models.package import render_model_card

    text = render_model_card(spec)  # type: ignore[arg-type]
    extra = [
        "## Provenance",
        "",
        "- Retrain: `.venv/bin/python scripts/train_zoo_denoiser.py` (picks the GAN seed with "
        "the best validation PSNR from `benchmarks/denoise_mr.py`; `--fresh` trains anew)",
        "- Training: `medsight.training.denoise.train_denoiser`, U-Net generator + conditional "
        "patch discriminator, L1 + 0.5 (1 - SSIM) + 0.005 LSGAN, Rician noise 2-10 %, patch "
        f"64, batch 16, {bench.STEPS} steps, 2 CPU threads",
        f"- Chosen: {json.dumps(choice)}",
        "- Data: MSD Task04 Hippocampus (Simpson et al. 2019, http://medicaldecathlon.com), "
        "CC BY-SA 4.0; patient-level split seed 0 (val 10 %, test 20 %; test cases unseen)",
        "- Benchmark: BENCHMARKS.md, section *MR denoising*",
        "",
    ]
    return text.rstrip("\n") + "\n\n" + "\n".join(extra)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "denoise_mr")
    ap.add_argument("--fresh", action="store_true", help="Train anew instead of picking.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of a fresh training.")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from medsight.models.package import ModelPackage

    picked = None if args.fresh else pick_run(args.runs)
    if picked is None:
        source, choice = train_fresh(args.runs, args.seed, args.threads), {"fresh_seed": args.seed}
    else:
        source, choice = picked
    pkg = ModelPackage.load(source)
    spec = pkg.spec.model_copy(
        update={
            "name": NAME,
            "version": VERSION,
            "intended_use": INTENDED_USE,
            "limitations": LIMITATIONS,
            "extra": pkg.spec.extra
            | {"training_script": "scripts/train_zoo_denoiser.py", "selection": choice},
        }
    )
    spec = type(spec).model_validate(spec.model_dump())
    extra_files = {}
    log = source / "training_log.json"
    if log.is_file():
        extra_files["training_log.json"] = log.read_text(encoding="utf-8")
    out = ModelPackage.save(
        ZOO_DIR,
        spec,
        pkg.state_dict(),
        card=card(spec, choice),
        extra_files=extra_files,
        overwrite=True,
    )
    size = sum(f.stat().st_size for f in out.path.iterdir()) / 2**20
    print(f"wrote {out.path} ({out.id}) from {source}, {size:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
