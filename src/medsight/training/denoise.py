"""Train a blind 2D denoiser: U-Net generator, patch discriminator, L1 + SSIM + adversarial.

The runner of the denoising family (``medsight train denoise``).  Clean images come from a
data set (a 3D volume gives its slices along ``k``; near-empty slices are skipped); every step
draws a batch of slices, a noise level per slice from ``levels`` and the noise
(:mod:`medsight.transforms.noise`), scales each noisy slice by its robust percentiles exactly
as :class:`medsight.inference.denoise.Denoiser` will (the clean target with the same offset and
scale), and crops a random patch.  The generator, a MONAI ``UNet``, predicts a correction added
to its input.  Its loss is ``L1 + ssim_weight * (1 - SSIM) + adversarial_weight * LSGAN``,
the adversarial term from a conditional MONAI ``PatchDiscriminator`` that sees
``(noisy, clean or denoised)``; ``adversarial_weight=0`` is the plain supervised baseline (no
discriminator is built).

Validation: validation cases (their own split, or the val part of ``splits``, a
``splits.json`` from :func:`medsight.data.make_splits`; else a seeded fifth of the training
cases; never test cases) with noise at fixed seeded levels spanning the range; the checkpoint
with the best validation PSNR becomes the package.  Files in ``out``: ``config.json``,
``checkpoint.pt`` (latest, for ``resume``; a changed config is refused), ``best.pt`` and
``package/``.  Each step's randomness comes from ``(seed, step)``, so a resumed run continues
the uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medsight.core.case import Split
from medsight.core.errors import InvalidInputError
from medsight.core.task import Task
from medsight.transforms.noise import MAGNITUDE_NOISE, NoiseModel, check_levels, robust_range

__all__ = ["DenoiseConfig", "train_denoiser"]

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
#: Config fields a resumed run may change (they do not change what was trained so far).
MAY_CHANGE_ON_RESUME = frozenset({"resume", "steps", "device", "threads", "out"})


class DenoiseConfig(BaseModel):
    """The typed configuration of one denoiser training run."""

    model_config = ConfigDict(extra="forbid")

    data: str
    out: Path
    splits: Path | None = None  # a splits.json (make_splits) giving train / val / test cases
    #: More clean data sets (specs).  Their non-test cases join training and validation (their
    #: own val split, else a seeded fifth of their cases); ``splits`` applies to ``data`` only.
    #: With more than one set, each set is equally likely per training patch and per
    #: validation slice, so a small whole-image set is not drowned by a large set of crops.
    extra_data: list[str] = Field(default_factory=list)
    noise: NoiseModel = NoiseModel.GAUSSIAN
    levels: tuple[float, float] = (2.0, 10.0)  # percent of the p0.5-p99.5 range
    patch_size: int = Field(default=64, ge=8)
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128, 256])
    steps: int = Field(default=4000, ge=1)
    val_every: int = Field(default=250, ge=1)
    batch_size: int = Field(default=16, ge=1)
    lr: float = Field(default=5e-4, gt=0)
    adversarial_weight: float = Field(default=0.005, ge=0)
    ssim_weight: float = Field(default=0.5, ge=0)
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(default=None, ge=1)
    max_cases: int | None = Field(default=None, ge=1)
    max_val_slices: int = Field(default=64, ge=1)
    modality: str | None = None  # CT, MR, US ... when the data does not say (PNG folders)
    resume: bool = False
    name: str | None = None
    version: str = "0.1.0"

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: tuple[float, float]) -> tuple[float, float]:
        return check_levels(v, "levels")

    @model_validator(mode="after")
    def _patch(self) -> DenoiseConfig:
        factor = 2 ** (len(self.channels) - 1)
        if len(self.channels) < 2:
            raise ValueError("channels: give at least two U-Net levels, e.g. [16, 32]")
        if self.patch_size % factor:
            raise ValueError(
                f"patch_size {self.patch_size} must be a multiple of {factor} "
                f"(2 ** (levels - 1) for channels {self.channels})"
            )
        return self


def _grey(image: Any, where: str) -> np.ndarray:
    arr = np.asarray(image.array, dtype=np.float32)
    if image.has_channels:
        if image.n_channels == 3:
            return arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if image.n_channels != 1:
            raise InvalidInputError(where, f"has {image.n_channels} channels; use grey images")
        arr = arr[..., 0]
    return arr


def _slices(cases: list[Any]) -> tuple[list[np.ndarray], list[str], set[str]]:
    """Clean 2D slices of ``cases`` (near-empty volume slices skipped), their case ids, and
    the modalities of the images."""
    out, ids, modalities = [], [], set()
    for case in cases:
        image = case.image()
        if image.modality:
            modalities.add(str(image.modality))
        arr = _grey(image, f"case {case.case_id}")
        if arr.ndim == 2:
            stack = [arr]
        else:
            full = robust_range(arr)[1]
            stack = [arr[:, :, k] for k in range(arr.shape[2])]
            stack = [s for s in stack if robust_range(s)[1] > 0.05 * full]
        for s in stack:
            if min(s.shape) >= 4 and robust_range(s)[1] > 0:
                out.append(np.ascontiguousarray(s))
                ids.append(case.case_id)
    return out, ids, modalities


def _choose_cases(
    ds: Any, cfg: DenoiseConfig, spec: str | None = None
) -> tuple[list[Any], list[Any]]:
    usable = [c for c in ds if c.split is not Split.TEST]  # test cases are never seen
    train = [c for c in usable if c.split in (Split.TRAIN, None)]
    val = [c for c in usable if c.split is Split.VAL]
    rng = np.random.default_rng([cfg.seed, 1])
    if not val:
        if len(train) < 2:
            raise InvalidInputError(
                f"data {spec or cfg.data}", f"needs at least 2 non-test cases, has {len(train)}"
            )
        order = rng.permutation(len(train))
        k = max(1, len(train) // 5)
        val = [train[i] for i in sorted(order[:k])]
        train = [train[i] for i in sorted(order[k:])]
    if cfg.max_cases:
        train = [train[i] for i in sorted(rng.permutation(len(train))[: cfg.max_cases])]
        val = [val[i] for i in sorted(rng.permutation(len(val))[: cfg.max_cases])]
    return train, val


def _draw(sources: list[list[np.ndarray]], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` slices: uniform over the slices of one set; with several sets, a set (equally
    likely) and then a slice of it."""
    if len(sources) == 1:  # the single-set draw of earlier versions (same seeds, same batches)
        return [sources[0][int(i)] for i in rng.integers(0, len(sources[0]), n)]
    which = rng.integers(0, len(sources), n)
    return [sources[int(w)][int(rng.integers(0, len(sources[int(w)])))] for w in which]


def _batch(
    sources: list[list[np.ndarray]], cfg: DenoiseConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One batch ``(noisy, clean)`` of scaled patches, shape ``(B, 1, P, P)``."""
    from medsight.transforms.noise import apply_noise, sample_noise, scale_to_unit

    p = cfg.patch_size
    xs, ys = [], []
    for clean in _draw(sources, cfg.batch_size, rng):
        noisy = apply_noise(clean, sample_noise(cfg.noise, cfg.levels, clean, rng))
        z, offset, scale = scale_to_unit(noisy)
        t = (clean - np.float32(offset)) / np.float32(scale)
        pad = [(0, max(0, p - s)) for s in z.shape]
        if any(b for _, b in pad):
            z, t = np.pad(z, pad, mode="reflect"), np.pad(t, pad, mode="reflect")
        a, b = (int(rng.integers(0, s - p + 1)) for s in z.shape)
        z, t = z[a : a + p, b : b + p], t[a : a + p, b : b + p]
        k, flip = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
        z, t = np.rot90(z, k), np.rot90(t, k)
        if flip:
            z, t = z[::-1], t[::-1]
        xs.append(z)
        ys.append(t)
    return np.stack(xs)[:, None].astype(np.float32), np.stack(ys)[:, None].astype(np.float32)


def _val_set(
    slices: list[np.ndarray], ids: list[str], cfg: DenoiseConfig, source: list[int] | None = None
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Fixed ``(clean, noisy, case id)`` validation pairs at levels spanning the range; with
    ``source`` (each slice's data set), an equal share of ``max_val_slices`` per set."""
    from medsight.transforms.noise import apply_noise, sample_noise

    rng = np.random.default_rng([cfg.seed, 2])
    if source is None or len(set(source)) == 1:
        pick = sorted(rng.permutation(len(slices))[: cfg.max_val_slices])
    else:
        sets = sorted(set(source))
        share = max(1, cfg.max_val_slices // len(sets))
        pick = []
        for k in sets:
            own = np.flatnonzero(np.asarray(source) == k)
            pick += [int(i) for i in rng.permutation(own)[:share]]
        pick.sort()
    lo, hi = cfg.levels
    grid = [lo, (lo + hi) / 2, hi]
    out = []
    for n, i in enumerate(pick):
        level = grid[n % 3]
        params = sample_noise(cfg.noise, (level, level), slices[i], rng)
        out.append((slices[i], apply_noise(slices[i], params), ids[i]))
    return out


def _validate(
    net: Any,
    val: list[tuple[np.ndarray, np.ndarray, str]],
    multiple: int,
    device: Any,
    nonnegative: bool,
) -> dict[str, np.ndarray]:
    """Validation metrics of ``net`` run exactly as the Denoiser will run it."""
    from medsight.evaluation.denoise import image_psnr, image_ssim
    from medsight.inference.denoise import denoise_slices

    rows: dict[str, list[float]] = {"psnr": [], "ssim": [], "psnr_noisy": [], "ssim_noisy": []}
    for clean, noisy, _ in val:
        den = denoise_slices(net, noisy[None], multiple, device, nonnegative=nonnegative)[0]
        rows["psnr"].append(image_psnr(den, clean))
        rows["ssim"].append(image_ssim(den, clean))
        rows["psnr_noisy"].append(image_psnr(noisy, clean))
        rows["ssim_noisy"].append(image_ssim(noisy, clean))
    return {k: np.asarray(v, dtype=float) for k, v in rows.items()}


def _networks(cfg: DenoiseConfig) -> tuple[Any, Any, Any]:
    from monai.networks.nets import PatchDiscriminator

    from medsight.models.registry import build_network
    from medsight.models.spec import ArchitectureSpec

    arch = ArchitectureSpec(
        name="unet",
        args={
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 1,
            "channels": list(cfg.channels),
            "strides": [2] * (len(cfg.channels) - 1),
            # 0: MONAI's top up-layer is then a bare transposed conv, so zeroing it (below)
            # makes the net start as the identity; with residual units that layer instance-
            # normalises the single output channel and the correction starts at unit variance
            "num_res_units": 0,
        },
    )
    net = build_network(arch)
    import torch

    last = [m for m in net.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)][-1]
    with torch.no_grad():  # start as the identity: the correction is zero until it is learnt
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()
    disc = None
    if cfg.adversarial_weight > 0:
        layers = max(1, min(3, int(math.log2(cfg.patch_size)) - 2))
        disc = PatchDiscriminator(
            spatial_dims=2,
            channels=max(8, cfg.channels[0]),
            in_channels=2,
            out_channels=1,
            num_layers_d=layers,
        )
    return arch, net, disc


def train_denoiser(cfg: DenoiseConfig, log: Callable[[str], None] = print) -> Any:
    """Train a denoiser as ``cfg`` says and save its ModelPackage to ``cfg.out / "package"``.

    Raises
    ------
    InvalidInputError
        A checkpoint exists and ``resume`` is false, or the resumed run's config changed;
        too few usable cases.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> imgs = (rng.random((4, 16, 16)) > 0.5).astype(np.uint8) * 200
    >>> np.savez(d / "breastmnist.npz", **{f"{s}_{k}": (imgs if k == "images" else
    ...     np.zeros((4, 1), int)) for s in ("train", "val", "test") for k in ("images", "labels")})
    >>> cfg = DenoiseConfig(data=f"medmnist:{d / 'breastmnist.npz'}", out=d / "run", steps=2,
    ...     patch_size=16, channels=[4, 8], batch_size=2, device="cpu", threads=1)
    >>> pkg = train_denoiser(cfg, log=lambda s: None)
    >>> pkg.spec.task.value, pkg.spec.input.modalities, [m.name for m in pkg.spec.metrics][:2]
    ('denoising', ['US'], ['psnr', 'ssim'])
    """
    import torch
    from monai.losses import PatchAdversarialLoss, SSIMLoss

    from medsight.data import load_dataset
    from medsight.io.atomic import atomic_path
    from medsight.training.common import (
        load_checkpoint,
        open_run_folder,
        save_checkpoint,
        seed_everything,
        select_device,
    )

    out, ckpt = open_run_folder(cfg, MAY_CHANGE_ON_RESUME, CHECKPOINT)
    device = select_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    ds = load_dataset(cfg.data)
    if cfg.splits is not None:
        from medsight.data import Splits

        ds = Splits.load(cfg.splits).apply(ds)
    sets = [(cfg.data, ds)] + [(spec, load_dataset(spec)) for spec in cfg.extra_data]
    sources: list[list[np.ndarray]] = []
    val_slices: list[np.ndarray] = []
    val_ids: list[str] = []
    val_source: list[int] = []
    modality_set: set[str] = set()
    train_cases: list[Any] = []
    val_cases: list[Any] = []
    for k, (spec, one) in enumerate(sets):
        tr_cases, va_cases = _choose_cases(one, cfg, spec)
        tr, _, mods = _slices(tr_cases)
        va, va_ids, _ = _slices(va_cases)
        if not tr or not va:
            raise InvalidInputError(f"data {spec}", "holds no usable (non-constant) 2D images")
        sources.append(tr)
        val_slices += va
        val_ids += [f"{k}:{i}" if len(sets) > 1 else i for i in va_ids]
        val_source += [k] * len(va)
        modality_set |= mods
        train_cases += tr_cases
        val_cases += va_cases
        if len(sets) > 1:
            log(f"denoise: {spec}: {len(tr)} training slices ({len(tr_cases)} cases)")
    train = [s for src in sources for s in src]
    val = _val_set(val_slices, val_ids, cfg, val_source)
    modalities = [cfg.modality.upper()] if cfg.modality else sorted(modality_set)
    log(
        f"denoise: {len(train)} training slices ({len(train_cases)} cases"
        f"{f', {len(sets)} data sets, each equally likely per patch' if len(sets) > 1 else ''}"
        f"), {len(val)} validation slices ({len(val_cases)} cases); {cfg.noise.value} noise, "
        f"levels {cfg.levels[0]:g}-{cfg.levels[1]:g}%"
    )

    arch, net, disc = _networks(cfg)
    net.to(device)
    multiple = 2 ** (len(cfg.channels) - 1)
    nonnegative = cfg.noise.value in MAGNITUDE_NOISE  # as the Denoiser will run it
    betas = (0.5, 0.999) if disc is not None else (0.9, 0.999)  # GAN practice: beta1 0.5
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=betas)
    opt_d = None
    if disc is not None:
        disc.to(device)
        opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    ssim_loss = SSIMLoss(spatial_dims=2, data_range=1.0, win_size=min(7, cfg.patch_size - 1))
    adv_loss = PatchAdversarialLoss(criterion="least_squares")
    step, best, best_step, history, seconds = 0, -math.inf, -1, [], 0.0
    if cfg.resume and ckpt.exists():
        targets = {"model": net, "optimizer": opt}
        if disc is not None:
            targets |= {"discriminator": disc, "optimizer_d": opt_d}
        state = load_checkpoint(ckpt, **targets)
        step, best, best_step = state["step"], state["best"], state["best_step"]
        history, seconds = state["history"], state["seconds"]
        log(f"resumed at step {step} (best validation PSNR {best:.2f} dB at step {best_step})")
    (out / "config.json").write_text(cfg.model_dump_json(indent=2), encoding="utf-8")

    t0 = time.monotonic() - seconds
    t_start, start = time.monotonic(), step
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, 3, step])
        x_np, y_np = _batch(sources, cfg, rng)
        x, y = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np).to(device)
        net.train()
        fake = x + net(x)
        loss = torch.nn.functional.l1_loss(fake, y)
        if cfg.ssim_weight:
            loss = loss + cfg.ssim_weight * ssim_loss(fake, y)
        if disc is not None and opt_d is not None:
            g_adv = adv_loss(disc(torch.cat([x, fake], 1))[-1], True, False)
            loss = loss + cfg.adversarial_weight * g_adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if disc is not None and opt_d is not None:
            real_out = disc(torch.cat([x, y], 1))[-1]
            fake_out = disc(torch.cat([x, fake.detach()], 1))[-1]
            d_loss = 0.5 * (adv_loss(real_out, True, True) + adv_loss(fake_out, False, True))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        step += 1
        if step % cfg.val_every == 0 or step == cfg.steps:
            m = _validate(net, val, multiple, device, nonnegative)
            psnr = float(m["psnr"].mean())
            elapsed = time.monotonic() - t0
            eta = (time.monotonic() - t_start) / max(1, step - start) * (cfg.steps - step)
            history.append(
                {
                    "step": step,
                    "loss": float(loss.item()),
                    "val_psnr": psnr,
                    "val_ssim": float(m["ssim"].mean()),
                    "s": round(elapsed, 2),
                }
            )
            log(
                f"step {step}/{cfg.steps} loss {loss.item():.4f} val PSNR {psnr:.2f} dB "
                f"(noisy {m['psnr_noisy'].mean():.2f}) SSIM {m['ssim'].mean():.3f}; "
                f"ETA {eta:.0f} s"
            )
            if psnr > best:
                best, best_step = psnr, step
                with atomic_path(out / BEST) as tmp:
                    torch.save(net.state_dict(), tmp)
            extra = {"discriminator": disc, "optimizer_d": opt_d} if disc is not None else {}
            save_checkpoint(
                ckpt,
                model=net,
                optimizer=opt,
                step=step,
                best=best,
                best_step=best_step,
                history=history,
                seconds=elapsed,
                **extra,
            )
    net.load_state_dict(torch.load(out / BEST, map_location=device, weights_only=True))
    final = _validate(net, val, multiple, device, nonnegative)
    return _save(
        cfg,
        out,
        arch,
        net,
        final,
        val,
        modalities,
        train,
        [one for _, one in sets],
        best_step,
        step,
        history,
        time.monotonic() - t0,
        len(train_cases),
        len(val_cases),
        log,
    )


def _save(
    cfg: DenoiseConfig,
    out: Path,
    arch: Any,
    net: Any,
    final: dict[str, np.ndarray],
    val: list[tuple[np.ndarray, np.ndarray, str]],
    modalities: list[str],
    train: list[np.ndarray],
    datasets: list[Any],
    best_step: int,
    steps: int,
    history: list[Any],
    seconds: float,
    n_train: int,
    n_val: int,
    log: Callable[[str], None],
) -> Any:
    from medsight.evaluation.bootstrap import bootstrap_ci
    from medsight.models.package import ModelPackage
    from medsight.models.plausibility import input_statistics, reference_statistics
    from medsight.models.spec import (
        InputSpec,
        Intensity,
        MetricValue,
        ModelSpec,
        PreprocessingSpec,
        TrainingDataSummary,
    )
    from medsight.transforms.noise import PERCENTILES, apply_noise, sample_noise, scale_to_unit

    groups = [v[2] for v in val]
    metrics = []
    for key in ("psnr", "ssim", "psnr_noisy", "ssim_noisy"):
        r = bootstrap_ci(np.mean, final[key], groups=groups, n_resamples=200, seed=cfg.seed)
        metrics.append(
            MetricValue(
                name=key, value=r.value, ci_low=r.low, ci_high=r.high, split="val", n=len(val)
            )
        )
    rng = np.random.default_rng([cfg.seed, 4])
    stats = [
        input_statistics(
            scale_to_unit(apply_noise(s, sample_noise(cfg.noise, cfg.levels, s, rng)))[0]
        )
        for s in (train[int(i)] for i in rng.integers(0, len(train), min(64, len(train))))
    ]
    what = "/".join(modalities) or "grey-scale"
    ds = datasets[0]

    def joined(attr: str) -> str:
        seen = [str(getattr(d, attr) or "") for d in datasets]
        return "; ".join(dict.fromkeys(v for v in seen if v))

    lo, hi = cfg.levels
    spec = ModelSpec(
        name=cfg.name or f"{ds.name}-denoise-{cfg.noise.value}".replace(" ", "_"),
        version=cfg.version,
        task=Task.DENOISING,
        architecture=arch,
        input=InputSpec(modalities=modalities, spatial_ndim=2, channels=1, grey_only=True),
        # robust percentile scaling of each noisy slice; no Intensity member names it yet
        preprocessing=PreprocessingSpec(
            intensity=Intensity.ROBUST_PERCENTILE,
            intensity_args={"percentile_low": PERCENTILES[0], "percentile_high": PERCENTILES[1]},
        ),
        labels=[],
        training_data=TrainingDataSummary(
            dataset=" + ".join(d.name for d in datasets),
            source=joined("source"),
            license=joined("license"),
            n_cases={"train": n_train, "val": n_val},
        ),
        metrics=metrics,
        intended_use=(
            f"Research use: denoising of {what} images with {cfg.noise.value} noise at "
            f"{lo:g}-{hi:g}% of the image's p0.5-p99.5 intensity range (blind: the level is not "
            "given). Not a medical device; compare the result with the original image."
        ),
        limitations=(
            "Trained on synthetic noise added to clean images; real scanner noise (spatially "
            "correlated, non-stationary after parallel imaging or reconstruction filters) may "
            "differ. Volumes are denoised slice by slice. A denoiser can smooth away or invent "
            "fine detail, more so with the adversarial loss."
        ),
        seed=cfg.seed,
        extra={
            "noise": {
                "model": cfg.noise.value,
                "levels": [lo, hi],
                "unit": "percent of the p0.5-p99.5 intensity range",
            },
            "normalization": {
                "kind": "robust_percentile",
                "percentiles": list(PERCENTILES),
                "per": "2D slice, from the noisy input",
            },
            "residual": True,
            "adversarial_weight": cfg.adversarial_weight,
            "ssim_weight": cfg.ssim_weight,
            "best_step": best_step,
            "steps": steps,
            "input_reference": reference_statistics(stats),
        },
    )
    pkg = ModelPackage.save(
        out / "package",
        spec,
        net.state_dict(),
        overwrite=True,
        extra_files={"training_log.json": json.dumps(history, indent=1) + "\n"},
    )
    log(
        f"saved {pkg.path} ({pkg.id}); best step {best_step}, val PSNR "
        f"{final['psnr'].mean():.2f} dB vs noisy {final['psnr_noisy'].mean():.2f} dB "
        f"in {seconds:.0f} s"
    )
    return pkg
