"""Random augmentation for classification, chosen by modality, on torch batches.

Following the torchio pattern, :func:`sample_params` draws the parameters from an explicit
``torch.Generator`` and :func:`apply_params` is a deterministic function of them, so a seed
reproduces a run and a test can check the operation itself.

Defaults by modality (:func:`augmentation_for`) respect anatomy: chest radiographs are never
flipped left-right (the heart is on the left), ultrasound is not flipped top-bottom (the probe
is on top), fundus photographs may be flipped and rotated freely.

Examples
--------
>>> import torch
>>> cfg = augmentation_for("CR", spatial_ndim=2)
>>> cfg.flip_axes, cfg.max_rotate_deg
([], 10.0)
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.rand(4, 1, 8, 8)
>>> params = sample_params(cfg, x.shape, g)
>>> apply_params(x, params).shape
torch.Size([4, 1, 8, 8])
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "apply_params",
    "augmentation_for",
    "sample_params",
    "tta_flips",
]


class AugmentConfig(BaseModel):
    """Ranges of the random transforms (0 switches one off)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flip_axes: list[int] = Field(default_factory=list)  # spatial axes in index order
    max_rotate_deg: float = 0.0  # in the first two spatial axes
    max_shift: float = 0.0  # fraction of the size
    max_scale: float = 0.0  # zoom in/out by up to this fraction
    brightness: float = 0.0  # additive, in normalised intensity units
    contrast: float = 0.0  # multiplicative, fraction
    noise_std: float = 0.0


def augmentation_for(modality: str | None, spatial_ndim: int) -> AugmentConfig:
    """Default augmentation for a DICOM modality code (``US``, ``CR``, ``OP``, ``CT`` ...)."""
    m = (modality or "").upper()
    common = dict(max_shift=0.08, max_scale=0.1, brightness=0.1, contrast=0.1)
    if m in {"CR", "DX", "MG"}:  # radiographs: no left-right flip (laterality)
        return AugmentConfig(max_rotate_deg=10.0, **common)
    if m == "US":  # index axis 0 = columns (left-right); the probe is at the top
        return AugmentConfig(flip_axes=[0], max_rotate_deg=10.0, **common)
    if m in {"OP", "XC", "SM"}:  # photographs without a fixed orientation
        return AugmentConfig(flip_axes=[0, 1], max_rotate_deg=180.0, **common)
    if m in {"CT", "MR"} and spatial_ndim == 3:
        return AugmentConfig(flip_axes=[0], max_rotate_deg=10.0, **common)
    return AugmentConfig(max_rotate_deg=10.0, **common)


def tta_flips(cfg: AugmentConfig | None) -> list[tuple[int, ...]]:
    """Deterministic test-time views declared by a training augmentation: its flips only.

    Training flips each of ``cfg.flip_axes`` independently with probability 1/2, so every
    combination of them is a view the network was trained on and the policy declares label
    preserving; this returns all of them, the identity ``()`` first.  Nothing else is added
    (rotations, shifts and intensity changes are random ranges, not invariances), and a
    policy without flips (radiographs: laterality), or no augmentation at all (``None``),
    gives the identity only.

    Examples
    --------
    >>> tta_flips(augmentation_for("OP", spatial_ndim=2))
    [(), (0,), (1,), (0, 1)]
    >>> tta_flips(augmentation_for("CR", spatial_ndim=2)), tta_flips(None)
    ([()], [()])
    """
    axes = list(cfg.flip_axes) if cfg is not None else []
    return [tuple(a for k, a in enumerate(axes) if mask >> k & 1) for mask in range(2 ** len(axes))]


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Per-sample parameters of one batch."""

    flips: torch.Tensor  # (B, n_axes) bool
    flip_axes: tuple[int, ...]
    theta: torch.Tensor  # (B, D, D+1) affine for affine_grid
    gain: torch.Tensor  # (B,)
    offset: torch.Tensor  # (B,)
    noise: torch.Tensor | None  # (B, C, *spatial)


def _uniform(n: int, half_width: float, g: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=g) * 2 - 1) * half_width


def sample_params(
    cfg: AugmentConfig, shape: tuple[int, ...] | torch.Size, generator: torch.Generator
) -> AugmentParams:
    """Draw parameters for a batch of ``shape`` ``(B, C, *spatial)``."""
    b, nd = shape[0], len(shape) - 2
    flips = torch.rand(b, len(cfg.flip_axes), generator=generator) < 0.5
    angle = _uniform(b, math.radians(cfg.max_rotate_deg), generator)
    scale = 1 + _uniform(b, cfg.max_scale, generator)
    shift = _uniform(b * nd, 2 * cfg.max_shift, generator).reshape(b, nd)
    theta = torch.zeros(b, nd, nd + 1)
    for i in range(nd):
        theta[:, i, i] = 1 / scale
    c, s = torch.cos(angle), torch.sin(angle)
    # rotate the two fastest-varying grid axes (affine_grid orders axes x, y[, z])
    theta[:, 0, 0], theta[:, 0, 1] = c / scale, -s / scale
    theta[:, 1, 0], theta[:, 1, 1] = s / scale, c / scale
    theta[:, :, nd] = shift
    gain = 1 + _uniform(b, cfg.contrast, generator)
    offset = _uniform(b, cfg.brightness, generator)
    noise = None
    if cfg.noise_std > 0:
        noise = torch.randn(tuple(shape), generator=generator) * cfg.noise_std
    return AugmentParams(flips, tuple(cfg.flip_axes), theta, gain, offset, noise)


def apply_params(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """Apply sampled parameters to a batch ``(B, C, *spatial)`` (deterministic)."""
    nd = x.dim() - 2
    out = x
    for k, axis in enumerate(p.flip_axes):
        flipped = torch.flip(out, dims=[2 + axis])
        mask = p.flips[:, k].view(-1, *([1] * (nd + 1)))
        out = torch.where(mask, flipped, out)
    identity = torch.eye(nd, nd + 1).expand_as(p.theta)
    if not torch.allclose(p.theta, identity):
        # affine_grid's x axis is the last tensor axis: reverse our index-order axes
        grid = F.affine_grid(p.theta, list(out.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="border", align_corners=False)
    view = (-1, *([1] * (nd + 1)))
    out = out * p.gain.view(view) + p.offset.view(view)
    if p.noise is not None:
        out = out + p.noise
    return out
