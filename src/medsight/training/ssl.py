"""Self-supervised pre-training of a classifier's encoder (SimCLR-style contrastive learning).

Two strongly augmented views of each unlabelled image are pulled together and pushed away from
the other images of the batch (NT-Xent loss, Chen et al., ICML 2020) through a small projection
MLP that is thrown away afterwards.  The encoder's weights go to a checkpoint that
``medsight train classify --pretrained`` (:func:`medsight.training.transfer.init_from_ssl`)
loads.  Labels are never read; by default only the ``train`` and ``val`` splits are used, so
test images stay unseen.

Examples
--------
>>> import torch
>>> z = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
>>> bool(nt_xent(z, z, 0.5) < nt_xent(z, z.roll(1, 0), 0.5))
True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medsight.core import Split
from medsight.core.errors import InvalidInputError
from medsight.models.arch_defaults import default_arch_args
from medsight.models.device import select_device
from medsight.models.registry import build_network
from medsight.models.spec import ArchitectureSpec, Intensity, PreprocessingSpec
from medsight.training.common import seed_everything
from medsight.training.transfer import encoder_state, head_prefix
from medsight.transforms.augment import AugmentConfig, apply_params, sample_params
from medsight.transforms.preprocess import to_network_input

__all__ = ["SSLConfig", "nt_xent", "pretrain"]


class SSLConfig(BaseModel):
    """A contrastive pre-training run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: list[str]  # data set specs whose images are used (labels ignored)
    out: Path  # the encoder checkpoint file
    splits: list[Split] = Field(default_factory=lambda: [Split.TRAIN, Split.VAL])
    arch: str = "smallcnn"
    arch_args: dict[str, Any] = Field(default_factory=dict)
    size: list[int] | None = None
    channels: int = 1
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(128, ge=4)
    lr: float = 1e-3
    temperature: float = Field(0.2, gt=0)
    seed: int = 0
    max_cases: int | None = None
    threads: int | None = None
    augment: AugmentConfig = AugmentConfig(
        flip_axes=[0], max_rotate_deg=20.0, max_shift=0.15, max_scale=0.3,
        brightness=0.4, contrast=0.4, noise_std=0.1,
    )  # fmt: skip


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised temperature-scaled cross-entropy over the 2B views (SimCLR)."""
    z = torch.cat([z1, z2])
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    b = len(z1)
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
    return F.cross_entropy(sim, target)


def _images(cfg: SSLConfig) -> tuple[np.ndarray, list[int]]:
    from medsight.data import load_dataset

    spec = PreprocessingSpec(size=cfg.size, intensity=Intensity.SCALE_0_1, channels=cfg.channels)
    xs: list[np.ndarray] = []
    for data in cfg.data:
        cases = [c for c in load_dataset(data) if c.split in cfg.splits]
        if cfg.max_cases is not None:
            cases = cases[: cfg.max_cases]
        for c in cases:
            image = c.image()
            if spec.size is None:
                spec = spec.model_copy(update={"size": list(image.shape[: image.spatial_ndim])})
            xs.append(to_network_input(image, spec))
    if len(xs) < 4:
        raise InvalidInputError("ssl data", f"only {len(xs)} images in splits {cfg.splits}")
    x = np.stack(xs)
    return ((x - x.mean()) / (x.std() or 1.0)).astype(np.float32), list(spec.size or [])


def pretrain(
    cfg: SSLConfig,
    *,
    log: list[dict[str, float]] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> Path:
    """Train the encoder contrastively and write ``cfg.out``; return its path.

    ``log`` collects, and ``on_epoch`` is called with, each epoch's loss and seconds.
    """
    select_device("cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    x, size = _images(cfg)
    args = default_arch_args(cfg.arch, len(size), cfg.channels, 2, list(size)) | cfg.arch_args
    arch = ArchitectureSpec(name=cfg.arch, args=args)
    net = build_network(arch)
    with torch.no_grad():
        dim = net.encoder(torch.zeros(2, cfg.channels, *size)).shape[1]  # type: ignore[operator]
    if not isinstance(getattr(net, "encoder", None), nn.Module):
        raise InvalidInputError(f"arch {cfg.arch}", "has no .encoder for SSL pre-training")
    proj = nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 64))
    params = [p for n, p in net.named_parameters() if not n.startswith(head_prefix(net))]
    opt = torch.optim.AdamW([*params, *proj.parameters()], lr=cfg.lr, weight_decay=1e-4)
    n = len(x)
    bs = min(cfg.batch_size, n)
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        net.train()
        total = 0.0
        for i in range(0, n - bs + 1, bs):
            batch = torch.from_numpy(x[order[i : i + bs]])
            v1 = apply_params(batch, sample_params(cfg.augment, batch.shape, gen))
            v2 = apply_params(batch, sample_params(cfg.augment, batch.shape, gen))
            z1 = F.normalize(proj(net.encoder(v1)), dim=1)  # type: ignore[operator]
            z2 = F.normalize(proj(net.encoder(v2)), dim=1)  # type: ignore[operator]
            loss = nt_xent(z1, z2, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        row = {"epoch": epoch, "loss": total, "seconds": time.perf_counter() - t0}
        if log is not None:
            log.append(row)
        if on_epoch is not None:
            on_epoch(row)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(
        {"arch": arch.model_dump(mode="json"), "encoder": encoder_state(net),
         "config": cfg.model_dump(mode="json"), "n_images": n},
        tmp,
    )  # fmt: skip
    tmp.replace(out)
    return out
