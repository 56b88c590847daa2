"""Longitudinal comparison benchmark: registration accuracy on real visits, change recovery on
synthetic growth of real structures.

A. ``ms_longitudinal/patient01`` (Lesjak et al. 2016, two real visits of one MS patient): the
   visit-1 FLAIR (and, across contrasts, the visit-1 T1) is registered onto the visit-2 FLAIR
   with :func:`medsight.clinical.longitudinal.register` (rigid, Mattes MI); the data set's own
   ITK transforms (each FLAIR to a common space, T1 to FLAIR) give the true point mapping.
   Reported: mean / 95th-percentile point error over the brain mask (every 10th voxel), the
   Dice of the brain mask carried into each visit by the true transforms then the
   registration, the quality figures and the time; per sampling seed, then mean and standard
   deviation over seeds.
B. MSD hippocampus (first ``--cases`` training images): each structure (both labels) grown by
   a known volume factor (``tests/clinical/synthetic_growth.py``) and the whole image moved by
   a random rigid motion (seeded: rotation 2-6 degrees about a random axis, translation up to
   2 mm per axis); reported: registration success, rotation and point errors, the error of the
   measured percent volume change, and the RECIST-style category.

Usage (from the project root)::

    timeout 900 .venv/bin/python benchmarks/longitudinal.py \\
        --data ../shared/data --seeds 0 1 2

Writes ``benchmarks/results/longitudinal.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from medsight.clinical.longitudinal import LabelInfo, compare_masks, register
from medsight.core.codes import LESION
from medsight.core.image import Image
from medsight.io import read_image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "clinical"))
from synthetic_growth import grow, rotation  # noqa: E402  (a test helper, not a package)


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, float)
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def ms_visits(folder: Path, seeds: list[int], shrink: int) -> dict[str, Any]:
    def load(name: str) -> sitk.Image:
        image = sitk.ReadImage(str(folder / name), sitk.sitkFloat32)
        return sitk.Shrink(image, [shrink, shrink, 1])

    current = load("study2_FLAIR.nii.gz")
    to_common1 = sitk.ReadTransform(str(folder / "study1_FLAIR_to_common_space.txt"))
    to_common2 = sitk.ReadTransform(str(folder / "study2_FLAIR_to_common_space.txt"))
    t1_to_flair1 = sitk.ReadTransform(str(folder / "study1_T1W_intrastudy_to_FLAIR.txt"))
    brain = sitk.ReadImage(str(folder / "brainmask.nii.gz"))
    near = sitk.sitkNearestNeighbor
    brain2 = sitk.Resample(brain, current, to_common2.GetInverse(), near, 0)
    inside = np.argwhere(sitk.GetArrayFromImage(brain2))[::10, ::-1]
    points = np.array([brain2.TransformIndexToPhysicalPoint([int(v) for v in i]) for i in inside])
    out: dict[str, Any] = {}
    for prior_name, extra in (("study1_FLAIR.nii.gz", None), ("study1_T1W.nii.gz", t1_to_flair1)):
        prior = load(prior_name)

        def truth_of(p: tuple[float, ...], extra: Any = extra) -> tuple[float, ...]:
            q = to_common1.TransformPoint(to_common2.GetInverse().TransformPoint(p))
            return extra.TransformPoint(q) if extra is not None else q

        truth = np.array([truth_of(tuple(p)) for p in points])
        # prior points -> common space (SimpleITK composites apply their last transform first)
        parts = [to_common1.GetInverse()] + ([extra.GetInverse()] if extra is not None else [])
        brain1 = sitk.Resample(brain, prior, sitk.CompositeTransform(parts), near, 0)
        runs = []
        for seed in seeds:
            start = time.perf_counter()
            reg = register(Image.from_sitk(current), Image.from_sitk(prior), seed=seed)
            seconds = time.perf_counter() - start
            err = np.linalg.norm(reg.to_prior(points) - truth, axis=1)
            moved = sitk.GetArrayFromImage(sitk.Resample(brain1, brain2, reg.transform, near, 0))
            fixed = sitk.GetArrayFromImage(brain2) > 0
            dice = 2 * ((moved > 0) & fixed).sum() / ((moved > 0).sum() + fixed.sum())
            runs.append(
                {
                    "seed": seed,
                    "ok": reg.ok,
                    "point_error_mean_mm": float(err.mean()),
                    "point_error_p95_mm": float(np.percentile(err, 95)),
                    "brain_dice": float(dice),
                    "seconds": seconds,
                    **reg.summary(),
                }
            )
        key = f"{prior_name.split('_')[1].split('.')[0]} visit1 -> FLAIR visit2"
        out[key] = {
            "runs": runs,
            "unregistered_point_error_mean_mm": float(
                np.linalg.norm(points - truth, axis=1).mean()
            ),
            **{
                f"{m}_over_seeds": _stats([r[m] for r in runs])
                for m in ("point_error_mean_mm", "brain_dice", "seconds")
            },
        }
    return out


def synthetic_growth(folder: Path, seeds: list[int], cases: int) -> dict[str, Any]:
    names = sorted((folder / "imagesTr").glob("*.nii.gz"))[:cases]
    labels = [LabelInfo(1, "structure", LESION, lesion=True)]
    rows = []
    for path in names:
        image = read_image(path)
        image = image.with_array(np.asarray(image.array, np.float32))
        label = read_image(folder / "labelsTr" / path.name)
        mask = label.with_array((np.asarray(label.array) > 0).astype(np.uint8))
        for factor in (0.7, 1.3):
            for seed in seeds:
                rng = np.random.default_rng(seed)
                axis = int(rng.integers(0, 3))
                rot = rotation(axis, float(rng.uniform(2, 6)) * rng.choice([-1, 1]))
                shift = rng.uniform(-2, 2, 3)
                current, current_mask = grow(image, mask, factor, rot, shift)
                reg = register(current, image, shrink=(2, 1), iterations=50, seed=seed)
                m = np.asarray(reg.transform.GetMatrix()).reshape(3, 3)
                rot_err = float(
                    np.rad2deg(np.arccos(np.clip((np.trace(m @ rot.T) - 1) / 2, -1, 1)))
                )
                centre = (np.asarray(image.shape) - 1) / 2 @ image.affine[:3, :3].T
                centre = centre + image.affine[:3, 3]
                probe = np.argwhere(np.asarray(current_mask.array))[::25]
                probe = probe @ image.affine[:3, :3].T + image.affine[:3, 3]
                truth = (probe - centre) @ rot.T + centre + shift
                row: dict[str, Any] = {
                    "case": path.name,
                    "factor": factor,
                    "seed": seed,
                    "ok": reg.ok,
                    "rotation_error_deg": rot_err,
                    "point_error_mean_mm": float(
                        np.linalg.norm(reg.to_prior(probe) - truth, axis=1).mean()
                    ),
                }
                if reg.ok:
                    (change,) = compare_masks(current_mask, mask, reg, labels, 180.0)
                    row["percent_measured"] = change.percent
                    row["percent_error"] = (change.percent or 0.0) - 100 * (factor - 1)
                    row["category"] = change.category.value if change.category else None
                rows.append(row)
    done = [r for r in rows if r["ok"]]
    return {
        "rows": rows,
        "registration_ok": f"{len(done)}/{len(rows)}",
        **{
            f"{m}_all": _stats([r[m] for r in done])
            for m in ("rotation_error_deg", "point_error_mean_mm", "percent_error")
        },
        "per_seed_percent_error_mean": _stats(
            [float(np.mean([r["percent_error"] for r in done if r["seed"] == s])) for s in seeds]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    start = time.perf_counter()
    result = {
        "benchmark": "longitudinal",
        "data": {
            "ms": "../shared/data/ms_longitudinal/patient01",
            "synthetic": "../shared/data/hippocampus",
        },
        "seeds": args.seeds,
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "ms_visits_shrink2": ms_visits(args.data / "ms_longitudinal" / "patient01", args.seeds, 2),
        "synthetic_growth": synthetic_growth(args.data / "hippocampus", args.seeds, args.cases),
    }
    result["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "longitudinal.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "synthetic_growth"}, indent=1)[:3000])
    print({k: v for k, v in result["synthetic_growth"].items() if k != "rows"})


if __name__ == "__main__":
    main()
