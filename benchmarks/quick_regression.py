"""Quick regression benchmark: the same numbers before and after a refactor.

Two parts, both deterministic on CPU (fixed seeds, one thread):

1. **Zoo evaluation**: every classification package of the zoo on its MedMNIST test split
   (AUC, accuracy at the operating threshold, a hash of the probabilities) and both
   segmentation packages on the first ``--seg-cases`` test cases of their benchmark split
   (mean Dice per label, a hash of the predicted masks).
2. **Short training**: ``train_classifier`` on BreastMNIST (3 epochs, seed 0) and
   ``train_segmentation`` on 24 hippocampus cases (30 steps, seed 0); the validation metrics
   and a hash of the trained weights.

Run it on two commits and compare the JSON files: a behaviour-preserving change gives the same
hashes and metrics.  The timings are recorded but are only comparable on a quiet machine.

Usage (from the project root)::

    .venv/bin/python benchmarks/quick_regression.py --data ../shared/data --label after

Writes ``benchmarks/results/quick_regression_<label>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

ZOO = Path(__file__).parents[1] / "src" / "medsight" / "zoo"
CLASSIFIERS = {
    "breastmnist-smallcnn": "breastmnist.npz",
    "pneumoniamnist-smallcnn": "pneumoniamnist.npz",
    "retinamnist-smallcnn": "retinamnist.npz",
    "adrenalmnist3d-smallcnn": "adrenalmnist3d.npz",
}


def _digest(arrays: list[np.ndarray], decimals: int | None = None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        if decimals is not None:
            a = np.round(a.astype(np.float64), decimals)
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def zoo_classifiers(data: Path) -> dict:
    from medsight.data import load_dataset
    from medsight.evaluation.classification_eval import evaluate_classifier
    from medsight.inference.classify import Predictor
    from medsight.models import ModelPackage

    out = {}
    for name, file in CLASSIFIERS.items():
        t0 = time.time()
        pkg = ModelPackage.load(ZOO / name)
        ds = load_dataset(f"medmnist:{data / 'medmnist' / file}")
        with tempfile.TemporaryDirectory() as tmp:
            report = evaluate_classifier(pkg, ds, tmp, split="test", n_resamples=200, seed=0)
        test = [c for c in ds if c.split is not None and c.split.value == "test"]
        pred = Predictor(pkg)
        proba = pred.predict_arrays(np.stack([pred.preprocess(c.image()) for c in test]))
        out[name] = {
            "n_cases": report["n_cases"],
            "metrics": {m["name"]: round(m["value"], 6) for m in report["metrics"]},
            "probabilities_sha256_6dp": _digest([proba], decimals=6),
            "seconds": round(time.time() - t0, 1),
        }
        print(name, out[name]["metrics"], flush=True)
    return out


def zoo_segmenters(data: Path, n_cases: int) -> dict:
    from segmentation_prepare import SPLIT, busi_dataset

    from medsight.data import load_dataset, make_splits
    from medsight.evaluation.segmentation import case_metrics
    from medsight.inference.segment import Segmenter

    sets = {
        "hippocampus-dynunet": load_dataset(f"msd:{data / 'hippocampus'}"),
        "busi-lesion-dynunet": busi_dataset(data),
    }
    out = {}
    for name, ds in sets.items():
        t0 = time.time()
        splits = make_splits(ds, SPLIT)
        test = [c for c in ds if c.case_id in set(splits.test)][:n_cases]
        seg = Segmenter(ZOO / name, device="cpu", tta=False)
        labels = [k for k in seg.plan.label_names if k > 0]
        masks, dice = [], {k: [] for k in labels}
        for case in test:
            pred = np.asarray(seg(case.image()).mask.array)
            ref = np.asarray(case.mask().array).reshape(pred.shape)
            masks.append(pred)
            for row in case_metrics(
                pred, ref, labels, spacing=case.mask().spacing.tolist(), case_id=case.case_id
            ):
                dice[row.label].append(row.dice)
        out[name] = {
            "n_cases": len(test),
            "mean_dice": {str(k): round(float(np.nanmean(v)), 6) for k, v in dice.items()},
            "masks_sha256": _digest(masks),
            "seconds": round(time.time() - t0, 1),
        }
        print(name, out[name]["mean_dice"], flush=True)
    return out


def short_training(data: Path) -> dict:
    from medsight.data import load_dataset
    from medsight.training.classification import train_classifier
    from medsight.training.config import ClassifyConfig
    from medsight.training.plan import plan_from_dataset
    from medsight.training.segmentation import (
        SegTrainConfig,
        load_preprocessed,
        preprocess_dataset,
        train_segmentation,
    )

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        cfg = ClassifyConfig(
            data=f"medmnist:{data / 'medmnist' / 'breastmnist.npz'}",
            out=Path(tmp) / "cls",
            epochs=3,
            seed=0,
            device="cpu",
            threads=1,
            progress=False,
        )
        pkg = train_classifier(cfg)
        weights = (pkg.path / "weights.safetensors").read_bytes()
        out["classification_breastmnist_3ep"] = {
            "val_metrics": {m.name: round(m.value, 6) for m in pkg.spec.metrics},
            "preprocessing": pkg.spec.preprocessing.model_dump(mode="json"),
            "weights_sha256": hashlib.sha256(weights).hexdigest()[:16],
            "seconds": round(time.time() - t0, 1),
        }
        print("classification", out["classification_breastmnist_3ep"]["val_metrics"], flush=True)

        t0 = time.time()
        ds = load_dataset(f"msd:{data / 'hippocampus'}")
        cases = sorted(ds, key=lambda c: c.case_id)[:24]
        from medsight.core import Split

        ds = ds.with_cases(
            [c.replace(split=Split.VAL if i % 4 == 0 else Split.TRAIN) for i, c in enumerate(cases)]
        )
        plan = plan_from_dataset(ds, modality="MR", max_filters=64)
        preprocess_dataset(ds, plan, Path(tmp) / "pre.npz")
        result = train_segmentation(
            load_preprocessed(Path(tmp) / "pre.npz"),
            plan,
            SegTrainConfig(max_steps=30, val_every=15, seed=0, device="cpu", batch_size=2),
            Path(tmp) / "seg",
            name="hippocampus-quick",
        )
        weights = (Path(result.package) / "weights.safetensors").read_bytes()
        out["segmentation_hippocampus_30steps"] = {
            "val_dice": {k: round(v, 6) for k, v in result.val_dice.items()},
            "plan": {
                "patch_size": plan.patch_size,
                "normalization": str(plan.normalization.value),
                "target_spacing": plan.target_spacing,
            },
            "weights_sha256": hashlib.sha256(weights).hexdigest()[:16],
            "seconds": round(time.time() - t0, 1),
        }
        print("segmentation", out["segmentation_hippocampus_30steps"]["val_dice"], flush=True)

        # the same run through the segmentation family's runner (what `medsight train segment`
        # calls): the same cases, splits, plan and settings must give the same weights
        t0 = time.time()
        from medsight.data.splits import Fold, Splits, SplitScheme
        from medsight.families import family_named
        from medsight.training.seg_runner import SegmentationRun

        ids = [c.case_id for c in cases]
        Splits(
            dataset=ds.name,
            scheme=SplitScheme.HOLDOUT,
            seed=0,
            source="generated",
            stratified=False,
            test=[],
            folds=[
                Fold(
                    train=[c for i, c in enumerate(ids) if i % 4],
                    val=[c for i, c in enumerate(ids) if i % 4 == 0],
                )
            ],
        ).save(Path(tmp) / "splits.json")
        family = family_named("segmentation")
        pkg = family.load("run")(
            SegmentationRun(
                data=f"msd:{data / 'hippocampus'}",
                out=Path(tmp) / "runner",
                splits=Path(tmp) / "splits.json",
                modality="MR",
                max_filters=64,
                max_cases=24,
                name="hippocampus-quick",
                train=SegTrainConfig(
                    max_steps=30, val_every=15, seed=0, device="cpu", batch_size=2
                ),
            ),
            log=lambda line: None,
        )
        weights = (pkg.path / "weights.safetensors").read_bytes()
        out["segmentation_hippocampus_30steps_via_runner"] = {
            "val_metrics": {m.name: round(m.value, 6) for m in pkg.spec.metrics},
            "weights_sha256": hashlib.sha256(weights).hexdigest()[:16],
            "same_weights_as_library_path": hashlib.sha256(weights).hexdigest()[:16]
            == out["segmentation_hippocampus_30steps"]["weights_sha256"],
            "seconds": round(time.time() - t0, 1),
        }
        print("runner", out["segmentation_hippocampus_30steps_via_runner"], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--label", default="after")
    ap.add_argument("--seg-cases", type=int, default=12)
    ap.add_argument("--skip-training", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    t0 = time.time()
    result = {
        "benchmark": "quick_regression",
        "label": args.label,
        "commit": commit,
        "hardware": f"{platform.processor() or platform.machine()}, CPU, 1 torch thread",
        "torch": torch.__version__,
        "zoo_classification": zoo_classifiers(args.data),
        "zoo_segmentation": zoo_segmenters(args.data, args.seg_cases),
    }
    if not args.skip_training:
        result["short_training"] = short_training(args.data)
    result["seconds"] = round(time.time() - t0, 1)
    path = Path(__file__).parent / "results" / f"quick_regression_{args.label}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
