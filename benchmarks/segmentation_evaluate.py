"""Stage 5 of the segmentation benchmarks: test-set metrics of the trained packages.

Each package segments every test case through the public inference path
(:class:`medsight.inference.segment.Segmenter`: the original image in, a mask on the original
grid out, the post-processing chosen on validation data) twice: with mirror test-time
augmentation over every axis (the mean of 2^d mirrored passes, as nnU-Net predicts; the
headline numbers) and without it (one pass, for comparison; neither is chosen by its test
result),
and the mask is compared with the reference at the original resolution: Dice, HD95, average
surface distance and volume difference per label, with 95% cluster-bootstrap CIs over cases.
Across seeds: the mean and sample standard deviation of the per-seed mean Dice.

Usage: ``python benchmarks/segmentation_evaluate.py DATA_ROOT RUNS OUT_DIR`` where RUNS holds
``<name>_seed<k>/package`` and ``result.json`` from ``segmentation_train.py``; writes
``OUT_DIR/segmentation_<name>.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from segmentation_prepare import SPLIT, busi_dataset

from medsight.data import load_dataset, make_splits
from medsight.evaluation.segmentation import case_metrics, summarize
from medsight.inference.segment import Segmenter

NNUNET = {"anterior": 0.8975, "posterior": 0.8807}  # nnU-Net 3d_fullres, 5-fold CV (MSD Task04)


def _across(per_seed: list[dict], label_names: list[str], key: str) -> dict:
    """Mean and sample SD over seeds of each label's test metrics."""
    across = {}
    for lab in label_names:
        for metric in ("dice", "hd95", "asd", "volume_diff_ml"):
            vals = [
                next(r for r in s[key] if r["name"] == lab)["metrics"][metric]["value"]
                for s in per_seed
            ]
            across[f"{lab}/{metric}"] = {
                "mean": statistics.mean(vals),
                "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "per_seed": vals,
            }
    return across


def evaluate(name: str, dataset, runs: Path, out: Path) -> dict:
    splits = make_splits(dataset, SPLIT)
    test = [c for c in dataset if c.case_id in set(splits.test)]
    groups = {c.case_id: c.patient_id or c.case_id for c in test}
    per_seed = []
    for run in sorted(runs.glob(f"{name}_seed*")):
        if not (run / "package").is_dir():
            continue
        trained = json.loads((run / "result.json").read_text())
        reports, seconds = {}, {}
        for tta in (True, False):
            seg = Segmenter(run / "package", device="cpu", tta=tta)
            labels = {k: v for k, v in seg.plan.label_names.items() if k > 0}
            t0 = time.time()
            rows = []
            for case in test:
                pred = seg(case.image()).mask
                ref = case.mask()
                rows += case_metrics(
                    pred.array,
                    ref.array.reshape(pred.shape),
                    list(labels),
                    spacing=ref.spacing.tolist(),
                    case_id=case.case_id,
                )
            reports[tta] = summarize(rows, labels, groups=groups, n_resamples=1000, seed=0)
            seconds[tta] = round(time.time() - t0, 1)
        per_seed.append(
            {
                "seed": trained["seed"],
                "train_seconds": trained["seconds"],
                "train_steps": trained["steps"],
                "best_step": trained["best_step"],
                "train_device": trained["device"],
                "val_dice": trained["val_dice"],
                "postprocessing": trained["postprocessing"],
                "test_inference_seconds_cpu": seconds[True],
                "test": [r.as_dict() for r in reports[True]],
                "test_inference_seconds_cpu_tta_off": seconds[False],
                "test_tta_off": [r.as_dict() for r in reports[False]],
            }
        )
        print(
            name,
            trained["seed"],
            {r.name: round(r.metrics["dice"]["value"], 4) for r in reports[True]},
            "without TTA",
            {r.name: round(r.metrics["dice"]["value"], 4) for r in reports[False]},
            flush=True,
        )
    label_names = [r["name"] for r in per_seed[0]["test"]]
    across = _across(per_seed, label_names, "test")
    result = {
        "benchmark": f"segmentation_{name}",
        "split": {
            "scheme": "holdout",
            "seed": SPLIT.seed,
            "val_fraction": SPLIT.val_fraction,
            "test_fraction": SPLIT.test_fraction,
            "n_test": len(test),
            "n_test_groups": len(set(groups.values())),
        },
        "inference": "Segmenter, mirror TTA on (test) and off (test_tta_off), original "
        "resolution, CPU",
        "seeds": per_seed,
        "across_seeds": across,
        "across_seeds_tta_off": _across(per_seed, label_names, "test_tta_off"),
    }
    if name == "hippocampus":
        result["reference"] = {"nnunet_3d_fullres_5fold_cv_dice": NNUNET}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"segmentation_{name}.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    root, runs, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    names = sys.argv[4:] or ["hippocampus", "busi"]
    if "hippocampus" in names:
        evaluate("hippocampus", load_dataset(f"msd:{root / 'hippocampus'}"), runs, out)
    if "busi" in names:
        evaluate("busi", busi_dataset(root), runs, out)


if __name__ == "__main__":
    main()
