"""Render the segmentation section of BENCHMARKS.md from ``benchmarks/results/*.json``.

Replaces the text between ``<!-- segmentation:start -->`` and ``<!-- segmentation:end -->`` in
BENCHMARKS.md (appending the section when the markers are absent); other sections are left as
they are.  Usage: ``python benchmarks/segmentation_markdown.py [BENCHMARKS.md]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- segmentation:start -->", "<!-- segmentation:end -->"


def _ci(m: dict) -> str:
    return f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})"


def section() -> str:
    hip = json.loads((ROOT / "benchmarks/results/segmentation_hippocampus.json").read_text())
    busi = json.loads((ROOT / "benchmarks/results/segmentation_busi.json").read_text())
    lines = [START, "## Segmentation", ""]
    for title, res in (("Hippocampus (MSD Task04)", hip), ("BUSI breast lesions", busi)):
        sp, seeds = res["split"], res["seeds"]
        s0 = seeds[0]
        lines += [
            f"### {title}",
            "",
            f"Fixed hold-out split (make_splits seed {sp['seed']}: "
            f"{1 - sp['val_fraction'] - sp['test_fraction']:.0%} train / "
            f"{sp['val_fraction']:.0%} validation / {sp['test_fraction']:.0%} test, "
            f"{sp['n_test']} test cases in {sp['n_test_groups']} patient groups). "
            f"Self-configured DynUNet (plan.json), {len(seeds)} seeds, each trained for "
            f"{s0['train_seconds']:.0f} s of wall clock ({s0['train_steps']} steps) on "
            f"one {s0['train_device']}, all {len(seeds) * 2} benchmark runs sharing the GPU; "
            f"checkpoint and post-processing chosen on validation Dice. Test inference: "
            f"{res['inference']}.",
            "",
            "| label | metric | mean over seeds ± SD | per seed (mean, 95% bootstrap CI) |",
            "|---|---|---|---|",
        ]
        for lab in (r["name"] for r in s0["test"]):
            for metric in ("dice", "hd95", "asd", "volume_diff_ml"):
                a = res["across_seeds"][f"{lab}/{metric}"]
                per = "; ".join(
                    _ci(next(r for r in s["test"] if r["name"] == lab)["metrics"][metric])
                    for s in seeds
                )
                lines.append(f"| {lab} | {metric} | {a['mean']:.3f} ± {a['sd']:.3f} | {per} |")
        if "across_seeds_tta_off" in res:
            off = res["across_seeds_tta_off"]
            lines += [
                "",
                "The same packages without mirror TTA (one pass per image; both settings are "
                "reported, neither was chosen by its test result): Dice "
                + ", ".join(
                    f"{lab} {off[f'{lab}/dice']['mean']:.3f} ± {off[f'{lab}/dice']['sd']:.3f}"
                    for lab in (r["name"] for r in s0["test"])
                )
                + f"; CPU inference over the test set {s0['test_inference_seconds_cpu']:.0f} s "
                f"with TTA and {s0['test_inference_seconds_cpu_tta_off']:.0f} s without "
                "(seed 0).",
            ]
        if "reference" in res:
            ref = res["reference"]["nnunet_3d_fullres_5fold_cv_dice"]
            ours = {k: res["across_seeds"][f"{k}/dice"]["mean"] for k in ref}
            lines += [
                "",
                "nnU-Net 3d_fullres (5-fold cross-validation, 1000 epochs): "
                + ", ".join(f"{k} {v:.4f}" for k, v in ref.items())
                + "; medsight (hold-out test, 3 seeds, mirror TTA): "
                + ", ".join(f"{k} {v:.4f}" for k, v in ours.items())
                + ".",
            ]
        if title.startswith("BUSI"):
            lines += [
                "",
                "BUSI PNGs carry no pixel spacing, so HD95 and ASD are in pixels and "
                "`volume_diff_ml` is an area in pixels / 1000; BUSI has no patient ids: "
                "near-duplicate images (thumbnail correlation >= 0.95) were kept on one side of "
                "the split. The goal Dice >= 0.80 is **not** reached.",
            ]
        lines.append("")
    timing = ROOT / "benchmarks/results/segmentation_cpu_timing.json"
    if timing.exists():
        t = json.loads(timing.read_text())
        lines += [
            f"Training speed on this project's CPU ({t['cores']} shared cores, "
            "`segmentation_cpu_timing.py`, a 60 s run per plan): "
            + "; ".join(
                f"{n} {t[n]['cpu_steps_per_s'] * 60:.1f} steps/min, so the "
                f"{t[n]['gpu_steps']} steps of one GPU run would take about "
                f"{t[n]['cpu_hours_for_gpu_steps']:.0f} h (the GPU did them in "
                f"{t[n]['gpu_seconds']:.0f} s while sharing the card with 5 other runs)"
                for n in ("hippocampus", "busi")
            )
            + ".",
            "",
        ]
    lines += [
        "Zoo packages (`src/medsight/zoo/hippocampus-dynunet`, `busi-lesion-dynunet`): the seed "
        "with the best validation Dice, weights in float16, networks capped at 128 filters per "
        "level. Retrain with `benchmarks/segmentation_retrain.sh`. Not done: 5-fold "
        "cross-validation (the hold-out split above is stated instead).",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    new = section()
    if START in text and END in text:
        text = text[: text.index(START)] + new + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
