"""Mass detection on mini-MIAS: medsight's RetinaNet, held-out women, 3 seeds, FROC + CPM.

Protocol
--------
* Data: ``../shared/data/mammography_mias`` (258 mini-MIAS mammograms of 129 women, 512 x 512,
  0.4 mm pixels) read with ``mias:...?classes=CIRC,SPIC,MISC&merge=mass``: the circumscribed,
  spiculated and ill-defined masses are one class ``mass`` (48 located masses on 45 images);
  NORM images are negatives; images whose only abnormalities are calcifications, distortions or
  asymmetries (46) are left out, so the test FP rate is measured on normal and mass images.
* Split (per seed 0, 1, 2): patient-level, stratified by mass-positive images
  (:func:`medsight.data.detection.detection_splits`; both breasts of a woman in one part):
  30 % of the women for test, 20 % for validation, the rest for training.  The seed also seeds
  training.  Test images are seen only by the final evaluation.
* Model: :func:`medsight.training.detect.train_detector` defaults except a CPU budget:
  input :data:`SIZE` (the whole mammogram resized, about 1.28 mm pixels), ResNet-FPN
  ``[16, 32, 64]`` / 32 channels, batch 4, :data:`STEPS` AdamW steps, checkpoint chosen on the
  validation sensitivity at 1 FP/image, score threshold at 1 FP/image on validation.
* Metric: FROC on the test women (:func:`medsight.evaluation.detection_eval.evaluate_detector`: a
  detection hits a mass when its centre lies inside the annotated circle; each mass counted
  once; LUNA16 rules), sensitivity at 0.25, 0.5, 1, 2, 4 FP/image and their mean (CPM), with
  per-seed patient-bootstrap 95 % CIs; across seeds mean and standard deviation.

Usage (from the project root; heavy: run under the shared lock)::

    .venv/bin/python benchmarks/detect_mias.py [--steps N]

Writes ``benchmarks/results/detect_mias.json`` (after every seed) and the run folders under
``runs/detect_mias/steps<N>/seed<k>/`` (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSIGHT_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"
OUT_JSON = RESULTS / "detect_mias.json"
RUNS = ROOT / "runs" / "detect_mias"

SEEDS = (0, 1, 2)
SIZE = [160, 160]
STEPS = 1200
VAL_EVERY = 100
SPEC_OPTIONS = "classes=CIRC,SPIC,MISC&merge=mass"
FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0)


def run_dir(seed: int, steps: int) -> Path:
    """The run folder of one seed and step budget."""
    return RUNS / f"steps{steps}" / f"seed{seed}"


def spec() -> str:
    """The data spec (absolute path on this machine; never written to the results)."""
    return f"mias:{DATA / 'mammography_mias'}?{SPEC_OPTIONS}"


def config(seed: int, steps: int, splits: Path, out: Path) -> Any:
    """The benchmark's training configuration for one seed."""
    from medsight.training.detect import DetectConfig

    return DetectConfig(
        data=spec(),
        out=out,
        splits=splits,
        size=SIZE,
        block_inplanes=[16, 32, 64],
        fpn_channels=32,
        steps=steps,
        val_every=VAL_EVERY,
        batch_size=4,
        seed=seed,
        device="cpu",
        threads=2,
        name="mammo-mass-detector",
        intended_use=(
            "Research only, not for screening or diagnosis: localising masses (circumscribed, "
            "spiculated, ill-defined) on digitised screen-film mediolateral-oblique mammograms "
            "like those of mini-MIAS, to study detection methods."
        ),
        limitations=(
            "Trained on about 60 women of mini-MIAS (1990s digitised film, one MLO view per "
            "breast) at 160 x 160 pixels (about 1.3 mm): small or subtle masses are missed, "
            "calcifications, distortions and asymmetries are out of scope. Few test masses per "
            "seed, so the FROC intervals are wide. Not validated on digital mammography."
        ),
    )


def run_seed(seed: int, steps: int) -> dict[str, Any]:
    """Split, train, evaluate one seed; the summary for the JSON."""
    from medsight.data import SplitConfig, load_dataset
    from medsight.data.detection import detection_splits
    from medsight.evaluation.detection_eval import evaluate_detector

    out = run_dir(seed, steps)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(spec())
    splits = detection_splits(ds, SplitConfig(val_fraction=0.2, test_fraction=0.3, seed=seed))
    assert splits.leaks(ds) == {}, "a woman in two parts"
    split_file = splits.save(out / "split_input.json")
    pkg_dir = out / "run" / "package"
    t0 = time.monotonic()
    if pkg_dir.is_dir():
        from medsight.models.package import ModelPackage

        pkg = ModelPackage.load(pkg_dir)
        trained_s = None
    else:
        from medsight.training.detect import train_detector

        pkg = train_detector(config(seed, steps, split_file, out / "run"), log=print)
        trained_s = time.monotonic() - t0
    test = splits.apply(ds)
    t1 = time.monotonic()
    report = evaluate_detector(pkg, test, out / "eval", split="test", n_resamples=1000, seed=seed)
    parts = splits.assignment()
    n_women = {
        part: len({c.patient_id for c in ds if parts[c.case_id].value == part})
        for part in ("train", "val", "test")
    }
    ci = report["froc"]["ci"]
    return {
        "seed": seed,
        "women": n_women,
        "images": {
            part: sum(p.value == part for p in parts.values()) for part in ("train", "val", "test")
        },
        "test_lesions": report["n_lesions"],
        "test_cpm": report["froc"]["cpm"],
        "test_cpm_ci": [ci["cpm"]["low"], ci["cpm"]["high"]],
        "test_sensitivity": dict(
            zip([f"{r:g}" for r in FP_RATES], report["froc"]["sensitivities"], strict=True)
        ),
        "test_sensitivity_ci": {
            f"{s['fp_rate']:g}": [s["low"], s["high"]] for s in ci["sensitivities"]
        },
        "operating_point_test": report["operating_point"],
        "val_cpm": next(m.value for m in pkg.spec.metrics if m.name == "cpm"),
        "best_step": pkg.spec.extra.get("best_step"),
        "steps": pkg.spec.extra.get("steps"),
        "train_seconds": trained_s,
        "eval_seconds": time.monotonic() - t1,
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation across seeds."""

    def ms(values: list[float]) -> dict[str, float]:
        a = np.asarray(values, dtype=float)
        return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0}

    out = {"cpm": ms([r["test_cpm"] for r in rows])}
    for rate in FP_RATES:
        key = f"{rate:g}"
        out[f"sensitivity@{key}fp"] = ms([r["test_sensitivity"][key] for r in rows])
    return out


def main() -> None:
    """Run the seeds, write the JSON after each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for seed in args.seeds:
        rows.append(run_seed(seed, args.steps))
        result = {
            "benchmark": "mini-MIAS mass detection (medsight RetinaNet)",
            "data": f"../shared/data/mammography_mias ({SPEC_OPTIONS})",
            "protocol": (
                "patient-level split per seed (test 30% / val 20% of women, stratified by "
                "mass-positive images); whole mammogram resized to "
                f"{SIZE[0]}x{SIZE[1]}; checkpoint and score threshold chosen on validation; "
                "FROC on the test women, hit = detection centre inside the annotated circle "
                "(LUNA16 rules); 95% CIs: patient bootstrap (1000) per seed"
            ),
            "fp_rates": list(FP_RATES),
            "seeds": [r["seed"] for r in rows],
            "summary": summary(rows),
            "per_seed": rows,
            "steps": args.steps,
            "size": SIZE,
            "wall_seconds": time.monotonic() - t0,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads 2",
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        OUT_JSON.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
