"""Synthesis training: a labelled 2D data set in, a class-conditional image generator out.

The generator is a DDPM (Ho et al. 2020) on MONAI's ``DiffusionModelUNet`` with a class
embedding (``num_class_embeds``: the data's classes plus one "no class" entry, used for 10% of
the training images so classifier-free guidance is possible at sampling) and MONAI's
``DDPMScheduler`` for the forward noising.  The package's weights are an exponential moving
average of the training weights (``ema``).  Sampling is :class:`medsight.inference.synth.
Synthesizer` (DDIM, fewer steps).

Intensities: the training range (``0..255`` for 8-bit data, else the 0.5/99.5 percentiles of the
training images) maps onto ``[-1, 1]`` through the package's preprocessing
(``dataset_zscore`` with ``mean`` the range's centre and ``std`` its half-width), which the
Synthesizer undoes.

The run folder (``SynthConfig.out``) holds ``config.json``, ``checkpoint.pt`` (network, EMA,
optimiser, step, log; written every ``val_every`` steps), ``training_log.csv`` (step, training
loss, validation loss, seconds) and ``package/``.  Each step draws its batch, noise and
time steps from generators seeded by ``(seed, step)``, so a resumed run reproduces an
uninterrupted one; resuming with settings that change the result is refused.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medsight.core import Split
from medsight.core.errors import InvalidInputError
from medsight.data import Dataset, SplitConfig, Splits, load_dataset, make_splits
from medsight.inference.synth import DIFFUSION_ARCH, build_diffusion_unet, diffusion_unet_args
from medsight.models.device import select_device
from medsight.models.package import ModelPackage, render_model_card
from medsight.models.spec import (
    ArchitectureSpec,
    InputSpec,
    Intensity,
    LabelSpec,
    MetricValue,
    ModelSpec,
    PreprocessingSpec,
    Task,
    TrainingDataSummary,
)
from medsight.training.common import (
    load_checkpoint,
    open_run_folder,
    portable_config,
    save_checkpoint,
    seed_everything,
    write_training_log,
)
from medsight.transforms.arrays import case_arrays
from medsight.transforms.preprocess import normalize_intensity

__all__ = ["SynthConfig", "SynthData", "SynthMethod", "prepare_data", "train_synthesizer"]

_LABELLED = (Task.BINARY, Task.MULTICLASS, Task.ORDINAL)
_NULL_CLASS_RATE = 0.1  # images trained without their class (classifier-free guidance)


class SynthMethod(StrEnum):
    """The generative model: a class-conditional DDPM, or a class-conditional GAN
    (:mod:`medsight.training.synth_gan`)."""

    DDPM = "ddpm"
    GAN = "gan"


class SynthConfig(BaseModel):
    """Everything that defines a synthesis training run (written as ``config.json``).

    Examples
    --------
    >>> cfg = SynthConfig(data="medmnist:breastmnist.npz", out="runs/synth")
    >>> cfg.method.value, cfg.steps, cfg.widths
    ('ddpm', 3000, [32, 64, 64])
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: str  # data set spec for medsight.data.load_dataset
    out: Path
    splits: Path | None = None  # a splits.json; default: the data set's own, else seeded
    method: SynthMethod = SynthMethod.DDPM
    size: list[int] | None = None  # default: the images' own size (rounded to fit the U-Net)
    widths: list[int] = Field(default_factory=lambda: [32, 64, 64])  # U-Net channels per level
    timesteps: int = Field(1000, ge=10)  # length of the training noise schedule
    steps: int = Field(3000, ge=1)  # optimisation steps
    batch_size: int = Field(64, ge=2)
    lr: float = Field(2e-4, gt=0)
    ema: float = Field(0.999, ge=0, lt=1)  # 0: package the last weights
    val_every: int = Field(250, ge=1)  # validation loss and checkpoint every N steps
    seed: int = 0
    max_cases: int | None = Field(None, ge=2)  # per split, for smoke tests
    resume: bool = False
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    name: str | None = None  # package name; default "<dataset>-<method>"
    license: str | None = None  # of the training data; default from the adapter when known

    @field_validator("widths")
    @classmethod
    def _widths(cls, widths: list[int]) -> list[int]:
        if len(widths) < 2 or any(w < 4 for w in widths):
            raise ValueError("widths needs at least two levels of at least 4 channels")
        return widths


_MAY_CHANGE_ON_RESUME = {"resume", "steps", "device", "threads", "val_every"}


def _with_splits(ds: Dataset, cfg: SynthConfig) -> Dataset:
    if cfg.splits is not None:
        return Splits.load(cfg.splits).apply(ds)
    parts = Counter(c.split for c in ds)
    if parts.get(Split.TRAIN) and parts.get(Split.VAL):
        return ds
    return make_splits(ds, SplitConfig(seed=cfg.seed)).apply(ds)


def _take(cases: list[Any], limit: int | None, seed: int) -> list[Any]:
    if limit is None or len(cases) <= limit:
        return cases
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(cases), size=limit, replace=False))
    return [cases[i] for i in keep]


def _fit_size(size: list[int], levels: int) -> list[int]:
    """Round each axis up to a multiple of the U-Net's total down-sampling."""
    f = 2 ** (levels - 1)
    return [int(-(-s // f) * f) for s in size]


def _intensity(cases: list[Any], dtype: np.dtype[Any]) -> tuple[dict[str, float], str]:
    """``dataset_zscore`` arguments mapping the training range onto [-1, 1], output dtype
    (integer data come back as their own integer type, e.g. uint16 PNG; others as float32)."""
    if np.issubdtype(dtype, np.integer) and np.iinfo(dtype).bits <= 8:
        return {"mean": 127.5, "std": 127.5}, "uint8"
    values = np.concatenate([np.asarray(c.image().array, np.float64).ravel() for c in cases])
    lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    half = (hi - lo) / 2 or 1.0
    out = np.dtype(dtype).name if np.issubdtype(dtype, np.integer) else "float32"
    return {"mean": (hi + lo) / 2, "std": half}, out


def _arrays(
    cases: list[Any], prep: PreprocessingSpec, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    raw = case_arrays(cases, prep.model_copy(update={"intensity": Intensity.NONE}),
                      n_classes=n_classes, multilabel=False)  # fmt: skip
    x = np.stack([normalize_intensity(a, prep) for a in raw.x]).clip(-1.0, 1.0)
    return np.ascontiguousarray(x, dtype=np.float32), raw.y


def _noise_loss(
    net: torch.nn.Module, sched: Any, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=gen).to(x.device)
    t = torch.randint(0, sched.num_train_timesteps, (len(x),), generator=gen).to(x.device)
    noisy = sched.add_noise(original_samples=x, noise=noise, timesteps=t)
    pred = net(noisy, timesteps=t, class_labels=y)
    return torch.nn.functional.mse_loss(pred.float(), noise.float())


@torch.no_grad()
def _val_loss(
    net: torch.nn.Module, sched: Any, x: np.ndarray, y: np.ndarray, seed: int, device: Any
) -> float:
    """Mean noise-prediction MSE on the validation images, with fixed noise and time steps."""
    net.eval()
    gen = torch.Generator().manual_seed(seed + 7919)
    total = 0.0
    for i in range(0, len(x), 128):
        xb = torch.from_numpy(x[i : i + 128]).to(device)
        yb = torch.from_numpy(y[i : i + 128]).to(device)
        total += float(_noise_loss(net, sched, xb, yb, gen)) * len(xb)
    net.train()
    return total / max(len(x), 1)


def _eta(started: float, done: int, start: int, total: int) -> str:
    rate = (time.perf_counter() - started) / max(done - start, 1)
    left = rate * (total - done)
    return f"{left / 60:.1f} min" if left >= 60 else f"{left:.0f} s"


@dataclasses.dataclass(frozen=True)
class SynthData:
    """The training and validation arrays of a synthesis run (intensities in ``[-1, 1]``)."""

    ds: Dataset
    names: list[str]
    sample: Any  # the first training Image (channels, modality)
    prep: PreprocessingSpec
    out_dtype: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def prepare_data(cfg: SynthConfig) -> SynthData:
    """Load, split and scale the data of ``cfg`` (shared by the DDPM and GAN runners).

    Raises
    ------
    InvalidInputError
        The data set is not labelled by class, is 3D, or lacks training / validation cases.
    """
    ds = load_dataset(cfg.data)
    if ds.task not in _LABELLED:
        raise InvalidInputError(
            f"data {cfg.data}",
            f"task {ds.task.value!r}: synthesis needs one class label per image",
            hint="use a binary, multi-class or ordinal classification data set",
        )
    ds = _with_splits(ds, cfg)
    train_cases = _take([c for c in ds if c.split is Split.TRAIN], cfg.max_cases, cfg.seed)
    val_cases = _take([c for c in ds if c.split is Split.VAL], cfg.max_cases, cfg.seed + 1)
    if not train_cases or not val_cases:
        raise InvalidInputError(f"data {cfg.data}", "needs training and validation cases")
    sample = train_cases[0].image()
    if sample.spatial_ndim != 2:
        raise InvalidInputError(
            f"data {cfg.data}",
            f"holds {sample.spatial_ndim}D images; synthesis trains on 2D images only for now",
            hint="use a 2D data set (e.g. a MedMNIST 2D file or an image folder)",
        )
    n_classes = len(ds.label_names) or 1 + max(int(c.label) for c in ds)  # type: ignore[arg-type]
    names = [ds.label_names.get(i, str(i)) for i in range(n_classes)]
    size = _fit_size(cfg.size or list(sample.shape[:2]), len(cfg.widths))
    args, out_dtype = _intensity(train_cases, np.asarray(sample.array).dtype)
    prep = PreprocessingSpec(
        size=size, intensity=Intensity.DATASET_ZSCORE, intensity_args=args,
        channels=sample.n_channels,
    )  # fmt: skip
    x_train, y_train = _arrays(train_cases, prep, n_classes)
    x_val, y_val = _arrays(val_cases, prep, n_classes)
    return SynthData(ds, names, sample, prep, out_dtype, x_train, y_train, x_val, y_val)


def train_synthesizer(cfg: SynthConfig, log: Callable[[str], Any] = print) -> ModelPackage:
    """Train a class-conditional DDPM on the training split; write the synthesis package.

    Parameters
    ----------
    log : callable
        Receives progress lines (step, losses, ETA).

    Returns
    -------
    ModelPackage
        ``cfg.out / "package"``, verified.

    Raises
    ------
    InvalidInputError
        The data set is not labelled by class, is 3D, or a checkpoint's settings differ.
    """
    from monai.networks.schedulers import DDPMScheduler

    started_cpu = time.process_time()
    out, ckpt_path = open_run_folder(cfg, _MAY_CHANGE_ON_RESUME)
    device = select_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    data = prepare_data(cfg)
    if cfg.method is SynthMethod.GAN:
        from medsight.training.synth_gan import train_gan

        return train_gan(cfg, data, out, ckpt_path, device, started_cpu, log)
    ds, names, sample = data.ds, data.names, data.sample
    prep, out_dtype = data.prep, data.out_dtype
    x_train, y_train, x_val, y_val = data.x_train, data.y_train, data.x_val, data.y_val
    n_classes = len(names)

    arch = ArchitectureSpec(
        name=DIFFUSION_ARCH, args=diffusion_unet_args(sample.n_channels, n_classes, cfg.widths)
    )
    net = build_diffusion_unet(arch.args).to(device)
    ema = copy.deepcopy(net).eval() if cfg.ema > 0 else None
    sched = DDPMScheduler(num_train_timesteps=cfg.timesteps, schedule="linear_beta")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    start, rows = 0, []
    if cfg.resume and ckpt_path.exists():
        targets: dict[str, Any] = {"model": net, "optimizer": opt}
        if ema is not None:
            targets["ema"] = ema
        state = load_checkpoint(ckpt_path, **targets)
        start, rows = int(state["step"]), list(state["log"])
        log(f"resuming at step {start}")
    (out / "config.json").write_text(cfg.model_dump_json(indent=2), encoding="utf-8")

    n = len(x_train)
    t0, running, seen = time.perf_counter(), 0.0, 0
    net.train()
    for step in range(start, cfg.steps):
        rng = np.random.default_rng([cfg.seed, step])
        idx = rng.choice(n, size=min(cfg.batch_size, n), replace=False)
        yb = y_train[idx].copy()
        yb[rng.random(len(idx)) < _NULL_CLASS_RATE] = n_classes  # the "no class" entry
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + step)
        xb = torch.from_numpy(x_train[idx]).to(device)
        loss = _noise_loss(net, sched, xb, torch.from_numpy(yb).to(device), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
                    pe.lerp_(p, 1.0 - cfg.ema)
        running, seen = running + float(loss.detach()), seen + 1
        done = step + 1
        if done % cfg.val_every == 0 or done == cfg.steps:
            scored = ema if ema is not None else net
            val = _val_loss(scored, sched, x_val, y_val, cfg.seed, device)
            rows.append({"step": done, "loss": running / seen, "val_loss": val,
                         "seconds": time.perf_counter() - t0})  # fmt: skip
            log(
                f"step {done}/{cfg.steps}: loss {running / seen:.4f}, val loss {val:.4f}, "
                f"ETA {_eta(t0, done, start, cfg.steps)}"
            )
            running, seen = 0.0, 0
            extra = {"ema": ema} if ema is not None else {}
            save_checkpoint(ckpt_path, model=net, optimizer=opt, step=done, log=rows, **extra)
    final = ema if ema is not None else net
    return _package(cfg, ds, names, final, arch, prep, out_dtype, x_train, y_train, x_val,
                    rows, started_cpu)  # fmt: skip


def _package(
    cfg: SynthConfig,
    ds: Dataset,
    names: list[str],
    net: torch.nn.Module,
    arch: ArchitectureSpec,
    prep: PreprocessingSpec,
    out_dtype: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    rows: list[dict[str, Any]],
    started_cpu: float,
    *,
    method_extra: dict[str, Any] | None = None,
    metrics: list[MetricValue] | None = None,
) -> ModelPackage:
    """Write the synthesis package; ``method_extra`` / ``metrics`` default to the DDPM's."""
    counts = Counter(names[int(k)] for k in y_train)
    modality = next(iter(ds)).image().modality
    license_ = cfg.license or ds.license
    source = f"{cfg.data.split(':', 1)[0]} adapter, training split"
    if ds.source and ds.source not in license_:
        source += f"; {ds.source}"
    last = rows[-1] if rows else {"val_loss": float("nan")}
    spec = ModelSpec(
        name=cfg.name or f"{ds.name}-{cfg.method.value}",
        version="0.1.0",
        task=Task.SYNTHESIS,
        architecture=arch,
        input=InputSpec(
            modalities=[modality] if modality else [],
            spatial_ndim=2,
            channels=int(x_train.shape[1]),
        ),
        preprocessing=prep,
        labels=[LabelSpec(index=i, name=n) for i, n in enumerate(names)],
        training_data=TrainingDataSummary(
            dataset=ds.name,
            source=source,
            license=license_,
            n_cases={"train": len(x_train), "val": len(x_val)},
            class_counts=dict(sorted(counts.items())),
            size_median=list(prep.size or []),
        ),
        metrics=metrics
        or [
            MetricValue(
                name="val_noise_mse", value=float(last["val_loss"]), split="val", n=len(x_val)
            )
        ],
        intended_use=(
            f"Generates SYNTHETIC images of the classes {', '.join(map(repr, names))} like the "
            f"training images of {ds.name} ({len(x_train)} images), for research on data "
            "augmentation. Its outputs are synthetic: they show no patient, must never be "
            "read as patient images or used for clinical decisions, and carry provenance "
            "(synthetic, model id, seed) wherever medsight writes them."
        ),
        limitations=(
            f"A small {cfg.method.value.upper()} trained for a few thousand steps: images can "
            "be blurry, lack rare findings, or copy training images (check `medsight "
            "evaluate` memorisation numbers before sharing outputs). The class is a "
            "condition, not a guarantee: a sample can look like another class. It does not "
            "analyse patient images."
        ),
        seed=cfg.seed,
        extra={
            **(
                method_extra
                or {
                    "diffusion": {
                        "method": cfg.method.value,
                        "num_train_timesteps": cfg.timesteps,
                        "schedule": "linear_beta",
                        "prediction_type": "epsilon",
                        "null_class": len(names),
                        "ema": cfg.ema,
                    }
                }
            ),
            "output_dtype": out_dtype,
            "steps_run": rows[-1]["step"] if rows else 0,
            "cpu_seconds": time.process_time() - started_cpu,
        },
    )
    log_text = write_training_log(cfg.out, rows)
    card = render_model_card(spec) + (
        "\n## Synthetic outputs\n"
        f"Every image this model makes is SYNTHETIC. `medsight synthesize` writes it with a "
        f"`synthetic.json` naming this model ({spec.name}@{spec.version}), the seed and the "
        "class, and the `folder:` adapter marks such cases `synthetic`; "
        "`medsight train classify --synthetic` adds them to the training split only.\n"
    )
    return ModelPackage.save(
        Path(cfg.out) / "package",
        spec,
        net.state_dict(),
        card=card,
        overwrite=True,
        extra_files={
            "training_log.csv": log_text,
            "config.json": json.dumps(portable_config(cfg, ("out", "splits")), indent=2),
        },
    )
