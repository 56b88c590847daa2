"""Stage 1-3 of the segmentation benchmarks on the CPU: splits, plan.json, preprocessed.npz.

Writes ``<out>/<name>/{splits.json,plan.json,preprocessed.npz}`` for
* ``hippocampus``: MSD Task04 (260 cases), fixed patient-level hold-out split, seed 0:
  70% train / 10% validation / 20% test;
* ``busi``: BUSI benign + malignant images (647), hold-out split with the same fractions,
  stratified by class; BUSI has no patient ids, so near-duplicate images (thumbnail correlation
  >= 0.95, which catches the repeated frames of one lesion) are grouped as one "patient" and
  kept on one side of the split.

Usage: ``python benchmarks/segmentation_prepare.py DATA_ROOT OUT`` (DATA_ROOT holds
``hippocampus/`` and ``busi/``).  Both networks are capped at 128 filters per level (nnU-Net
uses 320 in 3D and 512 in 2D) so that the zoo packages stay a few MB, and BUSI is planned with
a 192x192 voxel budget (instead of 256x256) and stored 8-bit, so that the preprocessed data can
travel to a lent GPU machine (64 MiB limit).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from medsight.data import SplitConfig, load_dataset, make_splits
from medsight.training.plan import plan_from_dataset
from medsight.training.segmentation import preprocess_dataset

SPLIT = SplitConfig(val_fraction=0.10, test_fraction=0.20, seed=0)
MAX_FILTERS = 128


def near_duplicate_groups(dataset, threshold: float = 0.95) -> dict[str, str]:
    """case id -> group id, joining images whose 32x32 thumbnails correlate >= threshold."""
    import torch
    import torch.nn.functional as F

    thumbs = []
    for case in dataset:
        a = np.asarray(case.image().array, dtype=np.float32)
        if a.ndim == 3:
            a = a.mean(-1)
        t = F.interpolate(torch.from_numpy(a)[None, None], size=(32, 32), mode="area")[0, 0]
        v = t.flatten().numpy()
        thumbs.append((v - v.mean()) / (v.std() + 1e-6))
    m = np.stack(thumbs)
    corr = m @ m.T / m.shape[1]
    parent = list(range(len(m)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(corr >= threshold, 1)), strict=True):
        parent[find(int(i))] = find(int(j))
    ids = [c.case_id for c in dataset]
    return {ids[i]: f"group_{find(i)}" for i in range(len(ids))}


def prepare(name: str, dataset, modality: str, out: Path, **plan_args) -> None:
    t0 = time.time()
    splits = make_splits(dataset, SPLIT)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    splits.save(folder / "splits.json")
    dataset = splits.apply(dataset)
    plan = plan_from_dataset(dataset, modality=modality, max_filters=MAX_FILTERS, **plan_args)
    plan.save(folder / "plan.json")
    preprocess_dataset(dataset, plan, folder / "preprocessed.npz", quantize=name == "busi")
    size = (folder / "preprocessed.npz").stat().st_size / 2**20
    print(
        f"{name}: {len(dataset)} cases, patch {plan.patch_size}, batch {plan.batch_size}, "
        f"{size:.1f} MiB, {time.time() - t0:.0f} s"
    )


def busi_dataset(root: Path):
    ds = load_dataset(f"folder:{root / 'busi'}")
    ds = ds.with_cases([c for c in ds if c.attributes["class"] != "normal"])
    groups = near_duplicate_groups(ds)
    return ds.with_cases([c.replace(patient_id=groups[c.case_id]) for c in ds])


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    prepare("hippocampus", load_dataset(f"msd:{root / 'hippocampus'}"), "MR", out)
    prepare("busi", busi_dataset(root), "US", out, max_voxels=192 * 192)


if __name__ == "__main__":
    main()
