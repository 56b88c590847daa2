"""Segmentation training augmentation, sample-then-apply (torchio's pattern).

:func:`sample_seg_params` draws every random parameter of one batch from an explicit
``numpy.random.Generator`` (rotation and scaling with probability 0.2 each, a mirror per axis
with probability 0.5, brightness and contrast with probability 0.15, Gaussian noise with
probability 0.1: nnU-Net's default scheme, reduced); :func:`apply_seg_params` is the
deterministic operation on an image batch and its label batch (labels are resampled with
nearest neighbour, so they stay label values).

Examples
--------
>>> import numpy as np, torch
>>> x, y = torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long)
>>> p = sample_seg_params(tuple(x.shape), np.random.default_rng(0))
>>> xa, ya = apply_seg_params(x, y, p)
>>> xa.shape == x.shape and ya.dtype == torch.long
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["SegAugmentParams", "apply_seg_params", "sample_seg_params"]


@dataclasses.dataclass(frozen=True)
class SegAugmentParams:
    """The random parameters of one batch ``(B, C, *spatial)``."""

    #: (B, D, D) rotation x scaling per sample; None when no sample is rotated or scaled
    matrices: np.ndarray | None
    flips: np.ndarray  # (D, B) bool: mirror sample b along spatial axis d
    brightness: np.ndarray  # (B,) multiplicative factor (1: unchanged)
    contrast: np.ndarray  # (B,) factor around the sample's mean (1: unchanged)
    noise_variance: np.ndarray  # (B,) Gaussian noise variance (0: none)
    noise_seed: int  # seeds the noise tensor, so applying is deterministic


def sample_seg_params(shape: tuple[int, ...], rng: np.random.Generator) -> SegAugmentParams:
    """Draw the augmentation parameters of a batch of ``shape`` from ``rng``."""
    b, nd = shape[0], len(shape) - 2
    matrices = np.repeat(np.eye(nd)[None], b, axis=0)
    spatial = False
    for k in range(b):
        m = np.eye(nd)
        if rng.random() < 0.2:
            a = rng.uniform(-np.pi / 6, np.pi / 6)
            i, j = (0, 1) if nd == 2 else tuple(rng.choice(3, 2, replace=False))
            r = np.eye(nd)
            r[i, i], r[i, j], r[j, i], r[j, j] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
            m = r @ m
            spatial = True
        if rng.random() < 0.2:
            m = m * rng.uniform(0.7, 1.4)
            spatial = True
        matrices[k] = m
    flips = np.stack([rng.random(b) < 0.5 for _ in range(nd)])
    brightness = np.where(rng.random(b) < 0.15, rng.uniform(0.75, 1.25, b), 1.0)
    contrast = np.where(rng.random(b) < 0.15, rng.uniform(0.75, 1.25, b), 1.0)
    noise = np.where(rng.random(b) < 0.1, rng.uniform(0, 0.1, b), 0.0)
    return SegAugmentParams(
        matrices=matrices if spatial else None,
        flips=flips,
        brightness=brightness,
        contrast=contrast,
        noise_variance=noise,
        noise_seed=int(rng.integers(2**31)),
    )


def apply_seg_params(x: Any, y: Any, p: SegAugmentParams) -> tuple[Any, Any]:
    """Apply ``p`` to images ``x`` (float) and labels ``y`` (long), both ``(B, C, *spatial)``."""
    import torch
    import torch.nn.functional as F

    b, nd = x.shape[0], x.ndim - 2
    if p.matrices is not None:
        theta = torch.zeros((b, nd, nd + 1), device=x.device)
        theta[:, :, :nd] = torch.as_tensor(p.matrices, dtype=torch.float32, device=x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        y = F.grid_sample(y.float(), grid, mode="nearest", align_corners=False).long()
    view = (b,) + (1,) * (x.ndim - 1)
    for d, axis in enumerate(range(2, 2 + nd)):
        flip = torch.as_tensor(p.flips[d], device=x.device).view(view)
        x = torch.where(flip, torch.flip(x, [axis]), x)
        y = torch.where(flip, torch.flip(y, [axis]), y)
    x = x * torch.as_tensor(p.brightness, dtype=torch.float32).to(x.device).view(view)
    contrast = torch.as_tensor(p.contrast, dtype=torch.float32).to(x.device)
    mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    x = (x - mean) * contrast.view(view) + mean
    noise = torch.as_tensor(p.noise_variance).to(x)
    gen = torch.Generator(device=x.device).manual_seed(p.noise_seed)
    x = x + torch.randn(x.shape, generator=gen, device=x.device) * noise.sqrt().view(view)
    return x, y
