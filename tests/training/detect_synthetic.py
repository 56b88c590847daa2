"""Tiny synthetic detection data sets: bright discs on noise (2D, COCO) and spheres in CT (3D)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def disc_images(root: Path, n: int = 24, size: int = 64, seed: int = 0, every: int = 4) -> Path:
    """``n`` PNGs with one bright disc each (every ``every``-th image has none), as COCO.

    Two images per patient; returns the ``annotations.json`` path.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    jj, ii = np.mgrid[0:size, 0:size]  # PNG rows (j) and columns (i)
    images, anns = [], []
    from PIL import Image as P

    for k in range(n):
        arr = rng.normal(40, 8, (size, size))
        if k % every != every - 1:
            cx, cy = rng.uniform(14, size - 14, 2)
            r = rng.uniform(5, 8)
            arr[(ii - cx) ** 2 + (jj - cy) ** 2 <= r * r] += 150
            bbox = [cx - r + 0.5, cy - r + 0.5, 2 * r, 2 * r]  # pixel edges: centre at (cx, cy)
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 1, "bbox": bbox})
        P.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(root / f"im{k}.png")
        images.append({"id": k + 1, "file_name": f"im{k}.png", "patient_id": f"p{k // 2}"})
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "disc"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root / "annotations.json"


def sphere_volumes(root: Path, n: int = 12, size: int = 32, seed: int = 0) -> Path:
    """``n`` CT-like NIfTI volumes (air-like noise, -800 HU) with one planted soft-tissue
    sphere in two of every three, listed in a ``boxes.json`` (pixel-edge corners)."""
    import nibabel as nib

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ii, jj, kk = np.mgrid[0:size, 0:size, 0:size]
    instances = []
    for m in range(n):
        arr = rng.normal(-800, 30, (size, size, size)).astype(np.float32)
        boxes = []
        if m % 3 != 2:
            c = rng.uniform(9, size - 9, 3)
            r = rng.uniform(3.5, 5.0)
            arr[(ii - c[0]) ** 2 + (jj - c[1]) ** 2 + (kk - c[2]) ** 2 <= r * r] = 40.0
            boxes.append({"box": [*(c - r + 0.5), *(c + r + 0.5)], "label": "nodule"})
        nib.save(nib.Nifti1Image(arr, np.diag([-1.0, -1.0, 1.0, 1.0])), root / f"ct{m}.nii.gz")
        instances.append({"file": f"ct{m}.nii.gz", "patient": f"p{m}", "boxes": boxes})
    (root / "boxes.json").write_text(json.dumps({"instances": instances}, default=float))
    return root / "boxes.json"
