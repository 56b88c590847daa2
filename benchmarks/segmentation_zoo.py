"""Stage 6 of the segmentation benchmarks: copy one trained package per data set into the zoo.

The seed is chosen by **validation** Dice (never by test results).  The package is re-saved with
the same weights, its spec completed with the test-set metrics (mean Dice, HD95 with 95%
bootstrap CIs from ``segmentation_evaluate.py``), the inputs it accepts and its intended use.

Usage: ``python benchmarks/segmentation_zoo.py RUNS RESULTS_DIR ZOO_DIR``.
The whole pipeline, from the data to these packages, is ``benchmarks/segmentation_retrain.sh``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from medsight.models import MetricValue, ModelPackage
from medsight.models.package import render_model_card

ZOO_NAMES = {"hippocampus": "hippocampus-dynunet", "busi": "busi-lesion-dynunet"}
INPUT = {
    # trained on hippocampus crops: whole-brain series would be out of distribution
    "hippocampus": {
        "modalities": ["MR"],
        "body_parts": ["BRAIN", "HEAD"],
        "series_description_pattern": "hippo|crop",
    },
    "busi": {"modalities": ["US"], "body_parts": ["BREAST"]},
}
USE = {
    "hippocampus": "Research demonstration: segmentation of the anterior and posterior "
    "hippocampus on a 1 mm T1-weighted MR crop around the hippocampus (MSD Task04 style), with "
    "volumes from medsight.clinical.measurements. Not for diagnosis.",
    "busi": "Research demonstration: segmentation of a breast lesion on a B-mode ultrasound "
    "image known to contain one, with RECIST-like diameters. Not for detection or diagnosis.",
}


def main() -> None:
    runs, results, zoo = (Path(a) for a in sys.argv[1:4])
    for name, zoo_name in ZOO_NAMES.items():
        bench = json.loads((results / f"segmentation_{name}.json").read_text())
        seeds = bench["seeds"]
        best = max(seeds, key=lambda s: sum(s["val_dice"].values()) / len(s["val_dice"]))
        pkg = ModelPackage.load(runs / f"{name}_seed{best['seed']}" / "package")
        n_test = bench["split"]["n_test"]
        metrics = list(pkg.spec.metrics)
        for lab in best["test"]:
            for metric in ("dice", "hd95"):
                m = lab["metrics"][metric]
                metrics.append(
                    MetricValue(
                        name=f"{metric}_{lab['name']}",
                        value=m["value"],
                        ci_low=m["low"],
                        ci_high=m["high"],
                        split="test",
                        n=n_test,
                    )
                )
        spec = pkg.spec.model_copy(
            update={
                "name": zoo_name,
                "version": "0.1.0",
                "metrics": metrics,
                "input": pkg.spec.input.model_copy(update=INPUT[name]),
                "intended_use": USE[name],
                "extra": pkg.spec.extra
                | {
                    "retrain": "benchmarks/segmentation_retrain.sh",
                    "selected_seed": best["seed"],
                    "seed_selection": "highest mean validation Dice of 3 seeds",
                },
            }
        )
        spec = type(spec).model_validate(spec.model_dump())
        card = render_model_card(spec) + (
            "\n## Provenance\n\nTrained by `benchmarks/segmentation_retrain.sh` (plan, "
            "preprocessing, training on one GPU, evaluation); the seed was chosen on validation "
            f"Dice. Test metrics: {n_test} held-out cases; inference: {bench['inference']}.\n"
        )
        out = ModelPackage.save(
            zoo / zoo_name,
            spec,
            pkg.state_dict(),
            card=card,
            extra_files={"plan.json": (pkg.path / "plan.json").read_text()},
            overwrite=True,
        )
        print(out, f"seed {best['seed']}")


if __name__ == "__main__":
    main()
