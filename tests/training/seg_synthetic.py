"""Tiny synthetic segmentation data sets shared by the segmentation tests."""

from __future__ import annotations

import numpy as np

from medsight.core import Case, Image, Split
from medsight.data import Dataset


def blob_dataset(ndim: int, n: int = 6, size: int = 16, seed: int = 0) -> Dataset:
    """Noisy images with a bright blob (label 1) and, in 3D, a dark blob (label 2)."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        grid = np.mgrid[tuple(slice(0, size) for _ in range(ndim))]
        c1 = rng.integers(4, size - 4, ndim)
        d1 = np.sqrt(((grid - c1.reshape((-1,) + (1,) * ndim)) ** 2).sum(0))
        mask = (d1 <= 3).astype(np.uint8)
        img = rng.normal(100, 5, (size,) * ndim) + 60 * mask
        if ndim == 3:
            c2 = (size - 1 - c1).clip(3, size - 4)
            d2 = np.sqrt(((grid - c2.reshape((-1,) + (1,) * ndim)) ** 2).sum(0))
            second = (d2 <= 2) & (mask == 0)
            mask[second] = 2
            img[second] -= 50
        split = Split.VAL if i % 3 == 2 else Split.TRAIN
        spacing = (1.0,) * ndim
        cases.append(
            Case(
                f"case{i}",
                images={"image": Image(img.astype(np.float32), spacing=spacing, modality="MR")},
                label=Image(mask, spacing=spacing),
                split=split,
            )
        )
    names = {0: "background", 1: "bright"} | ({2: "dark"} if ndim == 3 else {})
    return Dataset(f"blobs{ndim}d", cases, task="segmentation", label_names=names)


def tiny(plan):
    """The same plan with a very small network (for fast tests)."""
    return plan.model_copy(
        update={"filters": [4 * 2**i for i in range(len(plan.filters))], "batch_size": 2}
    )
