"""Class-conditional GAN training (``medsight train synth --method gan``).

The generator is :class:`medsight.inference.synth_gan.ConditionalGenerator` (MONAI
``Generator`` with a class embedding in its latent input); the discriminator is MONAI's
``PatchDiscriminator`` seeing the image concatenated with one-hot class maps (so it judges
"a real image of this class"), trained with MONAI's ``PatchAdversarialLoss`` (least squares,
LSGAN) and Adam with ``beta1 = 0.5`` (DCGAN practice).  The package holds the generator's
exponential moving average (``SynthConfig.ema``; 0: the last weights); the discriminator stays
in the run's ``checkpoint.pt`` only.

Data, intensities, splits, resume rules and the package's contents are the DDPM runner's
(:mod:`medsight.training.synth`): the same :class:`~medsight.training.synth.SynthData`, the
same ``[-1, 1]`` range, the same model card and provenance, so ``medsight synthesize`` and the
``folder:`` adapter treat both alike.  Validation (every ``val_every`` steps): the
discriminator's LSGAN loss on validation images against as many fixed-seed generated ones of the
same classes (``val_d_loss``; near 0.5 when it can no longer tell them apart, near 0 when it
can), and the pixel mean / standard deviation of both, a cheap check for collapse.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.inference.synth_gan import GAN_ARCH, build_gan_generator, gan_generator_args
from medsight.models.package import ModelPackage
from medsight.models.spec import ArchitectureSpec, MetricValue
from medsight.training.common import load_checkpoint, save_checkpoint

__all__ = ["LATENT_DIM", "train_gan"]

#: Length of the Gaussian latent vector of the generator.
LATENT_DIM = 64


def _one_hot_maps(y: torch.Tensor, n_classes: int, shape: tuple[int, ...]) -> torch.Tensor:
    maps = torch.nn.functional.one_hot(y, n_classes).float()
    return maps[:, :, None, None].expand(-1, -1, *shape)


def _discriminator(channels: int, n_classes: int, widths: list[int]) -> torch.nn.Module:
    from monai.networks.nets import PatchDiscriminator

    return PatchDiscriminator(
        spatial_dims=2,
        channels=widths[0],
        in_channels=channels + n_classes,
        out_channels=1,
        num_layers_d=max(1, min(3, len(widths) - 1)),
    )


@torch.no_grad()
def _validate(
    gen: torch.nn.Module,
    disc: torch.nn.Module,
    loss: Any,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    seed: int,
    device: Any,
) -> dict[str, float]:
    gen.eval()
    disc.eval()
    g = torch.Generator().manual_seed(seed + 7919)
    n = min(len(x_val), 256)
    real = torch.from_numpy(x_val[:n]).to(device)
    y = torch.from_numpy(y_val[:n]).long().to(device)
    fake = gen(torch.randn((n, LATENT_DIM), generator=g).to(device), y)
    maps = _one_hot_maps(y, n_classes, tuple(real.shape[2:]))
    d_real = disc(torch.cat([real, maps], 1))[-1]
    d_fake = disc(torch.cat([fake, maps], 1))[-1]
    d_loss = 0.5 * (
        float(loss(d_real, target_is_real=True, for_discriminator=True))
        + float(loss(d_fake, target_is_real=False, for_discriminator=True))
    )
    gen.train()
    disc.train()
    return {
        "val_d_loss": d_loss,
        "real_mean": float(real.mean()),
        "fake_mean": float(fake.mean()),
        "real_std": float(real.std()),
        "fake_std": float(fake.std()),
    }


def train_gan(
    cfg: Any,
    data: Any,
    out: Path,
    ckpt_path: Path,
    device: Any,
    started_cpu: float,
    log: Callable[[str], Any],
) -> ModelPackage:
    """Train the conditional GAN of ``cfg`` (a ``SynthConfig``) on ``data`` (``SynthData``).

    Called by :func:`medsight.training.synth.train_synthesizer` after it opened the run folder
    and prepared the data; returns the saved, verified package.
    """
    from monai.losses import PatchAdversarialLoss

    from medsight.training.synth import _eta, _package

    names = data.names
    n_classes = len(names)
    channels = int(data.x_train.shape[1])
    size = list(data.prep.size or data.x_train.shape[2:])
    arch = ArchitectureSpec(
        name=GAN_ARCH,
        args=gan_generator_args(
            channels, n_classes, list(cfg.widths), size=size, latent_dim=LATENT_DIM
        ),
    )
    gen = build_gan_generator(arch.args).to(device)
    disc = _discriminator(channels, n_classes, list(cfg.widths)).to(device)
    ema = copy.deepcopy(gen).eval() if cfg.ema > 0 else None
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    adv = PatchAdversarialLoss(criterion="least_squares")
    start, rows = 0, []
    if cfg.resume and ckpt_path.exists():
        targets: dict[str, Any] = {
            "model": gen,
            "optimizer": opt_g,
            "discriminator": disc,
            "optimizer_d": opt_d,
        }
        if ema is not None:
            targets["ema"] = ema
        state = load_checkpoint(ckpt_path, **targets)
        start, rows = int(state["step"]), list(state["log"])
        log(f"resuming at step {start}")
    (out / "config.json").write_text(cfg.model_dump_json(indent=2), encoding="utf-8")

    x_train, y_train = data.x_train, data.y_train
    n = len(x_train)
    t0, g_run, d_run, seen = time.perf_counter(), 0.0, 0.0, 0
    gen.train()
    disc.train()
    for step in range(start, cfg.steps):
        rng = np.random.default_rng([cfg.seed, step])
        idx = rng.choice(n, size=min(cfg.batch_size, n), replace=False)
        real = torch.from_numpy(x_train[idx]).to(device)
        y = torch.from_numpy(y_train[idx]).long().to(device)
        z = torch.randn((len(idx), LATENT_DIM), generator=torch.Generator().manual_seed(
            cfg.seed * 100_003 + step)).to(device)  # fmt: skip
        maps = _one_hot_maps(y, n_classes, tuple(real.shape[2:]))
        fake = gen(z, y)
        # discriminator: real images of their class vs generated ones of the same class
        d_real = disc(torch.cat([real, maps], 1))[-1]
        d_fake = disc(torch.cat([fake.detach(), maps], 1))[-1]
        d_loss = 0.5 * (
            adv(d_real, target_is_real=True, for_discriminator=True)
            + adv(d_fake, target_is_real=False, for_discriminator=True)
        )
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # generator: make the discriminator call its images real
        g_loss = adv(disc(torch.cat([fake, maps], 1))[-1], target_is_real=True,
                     for_discriminator=False)  # fmt: skip
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if ema is not None:
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), gen.parameters(), strict=True):
                    pe.lerp_(p, 1.0 - cfg.ema)
                for be, b in zip(ema.buffers(), gen.buffers(), strict=True):
                    be.copy_(b)  # batch-norm statistics follow the live generator
        g_run, d_run, seen = (
            g_run + float(g_loss.detach()),
            d_run + float(d_loss.detach()),
            seen + 1,
        )
        done = step + 1
        if done % cfg.val_every == 0 or done == cfg.steps:
            scored = ema if ema is not None else gen
            val = _validate(scored, disc, adv, data.x_val, data.y_val, n_classes, cfg.seed, device)
            rows.append({"step": done, "loss": g_run / seen, "d_loss": d_run / seen, **val,
                         "seconds": time.perf_counter() - t0})  # fmt: skip
            log(
                f"step {done}/{cfg.steps}: G loss {g_run / seen:.4f}, D loss {d_run / seen:.4f}, "
                f"val D loss {val['val_d_loss']:.4f}, pixel std fake {val['fake_std']:.3f} / "
                f"real {val['real_std']:.3f}, ETA {_eta(t0, done, start, cfg.steps)}"
            )
            g_run, d_run, seen = 0.0, 0.0, 0
            extra = {"ema": ema} if ema is not None else {}
            save_checkpoint(ckpt_path, model=gen, optimizer=opt_g, discriminator=disc,
                            optimizer_d=opt_d, step=done, log=rows, **extra)  # fmt: skip
    final = ema if ema is not None else gen
    last = rows[-1]
    metrics = [
        MetricValue(name="val_d_loss", value=float(last["val_d_loss"]), split="val",
                    n=min(len(data.x_val), 256)),
        MetricValue(name="val_fake_std", value=float(last["fake_std"]), split="val",
                    n=min(len(data.x_val), 256)),
    ]  # fmt: skip
    method_extra = {
        "gan": {
            "method": "gan",
            "latent_dim": LATENT_DIM,
            "loss": "least_squares (PatchAdversarialLoss)",
            "discriminator": "PatchDiscriminator on image + one-hot class maps",
            "ema": cfg.ema,
        }
    }
    return _package(cfg, data.ds, names, final.eval(), arch, data.prep, data.out_dtype, x_train,
                    y_train, data.x_val, rows, started_cpu, method_extra=method_extra,
                    metrics=metrics)  # fmt: skip
