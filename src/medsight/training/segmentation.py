"""Segmentation training: plan -> preprocessed arrays -> checkpoints -> ModelPackage.

Stages, each writing a file the next one reads (so a run can resume and be inspected)::

    plan.json            SegmentationPlan (self-configured from the data, editable)
    preprocessed.npz     every case reoriented, normalised and resampled as the plan says
    checkpoint_*.pt      latest (for resume) and best (by validation Dice) network states
    package/             ModelPackage with plan.json, labels as coded concepts, metrics

Training follows nnU-Net where it matters: DynUNet from the plan, Dice + cross-entropy loss with
deep supervision, one third of the patches centred on a foreground voxel of a random label,
spatial (rotation, scaling) and mirror augmentation plus brightness / contrast / noise, SGD with
Nesterov momentum 0.99 and polynomial learning-rate decay.  The schedule runs over a step budget
or a wall-clock budget, whichever ends first: by default (``time_budget_s="auto"``) training
on a CPU gets :data:`CPU_TIME_BUDGET_S` (so a whole run, preprocessing and packaging included,
finishes within the hour) and a GPU the step budget alone.  Under a time budget the number of
steps is planned from the measured speed of the first steps (validation included) and
re-planned at each validation, so the learning rate decays to the end of the steps that fit;
progress lines show the step, the planned steps and the ETA.  Augmentation runs on the
training device, so a GPU is not starved by the CPU.  Validation Dice (sliding windows over
whole validation cases) selects the checkpoint, and decides per label whether keeping the
largest connected component helps; both decisions use validation data only.

Region-based training (``regions``, nnU-Net's recipe for nested labels such as BraTS's whole
tumour ⊃ tumour core ⊃ enhancing tumour; the rule is in :mod:`medsight.models.seg_regions`):
one sigmoid output per region, trained on the region masks built from the label map with
Dice (per region, over the batch) + binary cross-entropy; validation, the metrics and the
post-processing use the label map converted back from the region probabilities, and the
package records the regions (``extra["regions"]``) so the Segmenter converts the same way.

Examples
--------
>>> cfg = SegTrainConfig(max_steps=10, seed=1)
>>> cfg.fg_oversample, cfg.device
(0.33, 'auto')
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from medsight.core.errors import InvalidInputError, UnreadableFileError
from medsight.io.atomic import atomic_path
from medsight.models.dynunet import register_segmentation_networks
from medsight.models.ood import OOD_FILE
from medsight.models.roles import RoleSpec
from medsight.models.seg_plan import PLAN_FILE, SegmentationPlan
from medsight.models.spec import LabelSpec, apply_meanings
from medsight.transforms.seg_augment import apply_seg_params, sample_seg_params
from medsight.transforms.seg_plan import prepare_image, prepare_label

log = logging.getLogger(__name__)

__all__ = [
    "Preprocessed",
    "SegTrainConfig",
    "SegTrainResult",
    "load_preprocessed",
    "preprocess_dataset",
    "train_segmentation",
]

PREPROCESSED_FILE = "preprocessed.npz"

#: Training seconds ``time_budget_s="auto"`` gives a run on a CPU: 50 minutes, so that
#: preprocessing, the final validation and packaging still finish within the hour.
CPU_TIME_BUDGET_S = 3000.0
#: Steps timed before the first plan of a time-budgeted run.
_WARMUP_STEPS = 10
#: Seconds between progress lines between validations.
_PROGRESS_EVERY_S = 60.0

#: A colour per label value for display (label 1, 2, ...), from the Tableau 10 palette.
DEFAULT_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


class SegTrainConfig(BaseModel):
    """Training settings; everything data-dependent comes from the plan instead."""

    max_steps: int = Field(25_000, ge=1)
    #: wall-clock seconds for training; "auto": CPU_TIME_BUDGET_S on a CPU, none on a GPU;
    #: None: no time limit (the step budget alone)
    time_budget_s: float | Literal["auto"] | None = "auto"
    val_every: int = Field(250, ge=1)
    lr: float = Field(0.01, gt=0)
    weight_decay: float = 3e-5
    fg_oversample: float = Field(0.33, ge=0, le=1)
    batch_size: int | None = Field(None, ge=1)  # None: the plan's
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast on CUDA
    resume: bool = True
    augment: bool = True
    #: region-based training: regions as label values, from the largest to the smallest, each
    #: containing the next (e.g. [[1, 2, 3], [2, 3], [3]]); None: one softmax output a label
    regions: list[list[int]] | None = None


class Preprocessed(BaseModel):
    """The preprocessed stage in memory: arrays per case and the case ids per part."""

    model_config = {"arbitrary_types_allowed": True}

    case_ids: list[str]
    patients: list[str]
    splits: list[str]  # "train" / "val" / "test" per case
    images: list[Any]  # (C, *spatial) float32
    labels: list[Any]  # (*spatial) int16
    # per case, input_statistics of the original image as the analysis normalises it (see
    # _analysis_input_stats); None for files written before medsight stored them
    input_stats: list[dict[str, float]] | None = None

    def part(self, name: str) -> list[int]:
        """Indices of the cases in one part."""
        return [i for i, s in enumerate(self.splits) if s == name]


class SegTrainResult(BaseModel):
    """What a training run produced."""

    package: str
    best_step: int
    steps: int
    seconds: float
    val_dice: dict[str, float]
    postprocessing: dict[str, str]
    history: list[dict[str, float]]
    #: what bounded training: "max_steps" or "time_budget"
    stopped_by: str = "max_steps"
    time_budget_s: float | None = None


def resolve_time_budget(value: float | str | None, device_type: str) -> float | None:
    """Training seconds for a ``time_budget_s`` setting on a device type.

    Examples
    --------
    >>> resolve_time_budget("auto", "cpu"), resolve_time_budget("auto", "cuda")
    (3000.0, None)
    >>> resolve_time_budget(600, "cuda"), resolve_time_budget(None, "cpu")
    (600.0, None)
    """
    if value == "auto":
        return CPU_TIME_BUDGET_S if device_type == "cpu" else None
    if value is None:
        return None
    if float(value) <= 0:
        raise InvalidInputError("time budget", f"{value} s is not a positive number of seconds")
    return float(value)


def _duration(seconds: float) -> str:
    """``seconds`` for people: "45 s", "12 min", "3.4 h".

    Examples
    --------
    >>> _duration(42.2), _duration(720), _duration(12240)
    ('42 s', '12 min', '3.4 h')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _analysis_input_stats(image: Any, plan: SegmentationPlan) -> dict[str, float]:
    """input_statistics of ``image`` exactly as the analysis computes them for a segmenter.

    Mirrors ``medsight.analysis.segmentation.analyze_segmentation``: the original image,
    channels first, through ``normalize_intensity`` with the package's PreprocessingSpec,
    which is the plan's (:meth:`SegmentationPlan.preprocessing`, written to ``model.json``
    below).  The preprocessed arrays are not used for the reference because they differ from
    what the analysis sees: they are reoriented, resampled to the plan's spacing and stored
    as float16/uint8.
    """
    from medsight.models.plausibility import input_statistics
    from medsight.transforms.preprocess import normalize_intensity

    arr = np.asarray(image.array, dtype=np.float32)
    x = np.moveaxis(arr, -1, 0) if image.has_channels else arr[None]
    return input_statistics(normalize_intensity(x, plan.preprocessing(int(x.shape[0]))))


def preprocess_dataset(
    dataset: Any,
    plan: SegmentationPlan,
    path: str | os.PathLike[str],
    *,
    quantize: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write every case, prepared as the plan says, to one ``preprocessed.npz``.

    Each case's ``split`` (train / val / test, see :meth:`medsight.data.Splits.apply`) is kept;
    cases without one count as training cases.  Images are stored as float16, or with
    ``quantize`` as uint8 with a per-case offset and scale (an error of at most 1/510 of the
    case's intensity range, the resolution of 8-bit sources such as ultrasound PNGs) to make
    the file about half as large.
    """
    arrays: dict[str, np.ndarray] = {}
    ids, patients, splits, stats = [], [], [], []
    for i, case in enumerate(dataset):
        mask = case.mask()
        if mask is None:
            raise InvalidInputError(f"case {case.case_id}", "has no mask")
        image = case.image()
        stats.append(_analysis_input_stats(image, plan))
        prepared = prepare_image(image, plan)
        if quantize:
            lo, hi = float(prepared.array.min()), float(prepared.array.max())
            scale = (hi - lo) / 255 or 1.0
            arrays[f"img_{i}"] = np.round((prepared.array - lo) / scale).astype(np.uint8)
            arrays[f"q_{i}"] = np.array([lo, scale], dtype=np.float64)
        else:
            arrays[f"img_{i}"] = prepared.array.astype(np.float16)
        arrays[f"seg_{i}"] = prepare_label(mask, prepared)
        ids.append(case.case_id)
        patients.append(case.patient_id or case.case_id)
        splits.append(case.split.value if case.split is not None else "train")
        if progress:
            progress(i)
    meta = {"case_ids": ids, "patients": patients, "splits": splits, "input_stats": stats}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return target


def load_preprocessed(path: str | os.PathLike[str]) -> Preprocessed:
    """Read a ``preprocessed.npz`` written by :func:`preprocess_dataset`."""
    p = Path(path)
    try:
        with np.load(p) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            n = len(meta["case_ids"])
            images = []
            for i in range(n):
                img = z[f"img_{i}"].astype(np.float32)
                if f"q_{i}" in z:
                    lo, scale = z[f"q_{i}"]
                    img = (img * scale + lo).astype(np.float32)
                images.append(img)
            labels = [z[f"seg_{i}"].astype(np.int16) for i in range(n)]
    except (OSError, KeyError, ValueError) as exc:
        raise UnreadableFileError(p, f"not a medsight preprocessed file ({exc})") from None
    return Preprocessed(**meta, images=images, labels=labels)


# --- patch sampling and augmentation (torch) ------------------------------------------------


class _Sampler:
    """Random patches, a share of them centred on a voxel of a random foreground label."""

    def __init__(
        self,
        images: list[Any],
        labels: list[Any],
        patch: Sequence[int],
        fg_share: float,
        rng: np.random.Generator,
        device: Any,
    ) -> None:
        import torch

        self.patch = np.asarray(patch)
        self.rng = rng
        self.fg_share = fg_share
        self.images, self.labels, self.fg = [], [], []
        for img, lab in zip(images, labels, strict=True):
            pad = [(0, 0)] + [(0, max(0, p - s)) for p, s in zip(patch, lab.shape, strict=True)]
            img = np.pad(img, pad)
            lab = np.pad(lab, pad[1:])
            coords = {}
            for value in np.unique(lab):
                if value > 0:
                    c = np.argwhere(lab == value)
                    if len(c) > 5000:
                        c = c[rng.choice(len(c), 5000, replace=False)]
                    coords[int(value)] = c
            self.images.append(torch.as_tensor(img, dtype=torch.float32, device=device))
            self.labels.append(torch.as_tensor(lab, dtype=torch.long, device=device))
            self.fg.append(coords)

    def batch(self, n: int) -> tuple[Any, Any]:
        import torch

        xs, ys = [], []
        for b in range(n):
            i = int(self.rng.integers(len(self.images)))
            shape = np.asarray(self.labels[i].shape)
            force = b >= round(n * (1 - self.fg_share)) and self.fg[i]
            if force:
                value = self.rng.choice(list(self.fg[i]))
                coords = self.fg[i][value]
                centre = coords[self.rng.integers(len(coords))]
                start = np.clip(centre - self.patch // 2, 0, shape - self.patch)
            else:
                start = self.rng.integers(0, shape - self.patch + 1)
            sl = tuple(slice(int(s), int(s + p)) for s, p in zip(start, self.patch, strict=True))
            xs.append(self.images[i][(slice(None), *sl)])
            ys.append(self.labels[i][sl])
        return torch.stack(xs), torch.stack(ys)[:, None]


def _augment(x: Any, y: Any, rng: np.random.Generator) -> tuple[Any, Any]:
    """nnU-Net-like augmentation of a batch ``(B, C, *S)`` / ``(B, 1, *S)`` on its device:
    parameters drawn from ``rng``, then applied (:mod:`medsight.transforms.seg_augment`)."""
    return apply_seg_params(x, y, sample_seg_params(tuple(x.shape), rng))


def _dice_per_label(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> list[float]:
    out = []
    for c in range(1, n_classes):
        p, r = pred == c, ref == c
        denom = p.sum() + r.sum()
        out.append(1.0 if denom == 0 else float(2 * (p & r).sum() / denom))
    return out


def _validate(
    net: Any,
    data: Preprocessed,
    idx: list[int],
    plan: SegmentationPlan,
    device: Any,
    regions: list[list[int]] | None = None,
) -> list[np.ndarray]:
    """Label maps of the cases ``idx`` (a region network's converted from its regions)."""
    from medsight.inference.segment import sliding_window_probs
    from medsight.models.seg_regions import regions_to_labels

    net.eval()
    preds = []
    for i in idx:
        probs = sliding_window_probs(
            net, data.images[i], plan, device=device, sw_batch_size=8, sigmoid=bool(regions)
        )
        if regions:
            preds.append(regions_to_labels(probs.float().cpu().numpy(), regions))
        else:
            preds.append(probs.argmax(0).cpu().numpy().astype(np.int16))
    net.train()
    return preds


def _region_loss(regions: list[list[int]], device: Any) -> Callable[[Any, Any], Any]:
    """nnU-Net's region loss: soft Dice per region (sigmoid, over the batch) + binary
    cross-entropy, on the region masks of a ``(B, 1, *S)`` label batch."""
    import torch
    from monai.losses import DiceLoss

    dice = DiceLoss(sigmoid=True, batch=True)
    bce = torch.nn.BCEWithLogitsLoss()
    values = [torch.as_tensor(r, dtype=torch.long, device=device) for r in regions]

    def loss(logits: Any, y: Any) -> Any:
        target = torch.cat([torch.isin(y, v) for v in values], dim=1).to(logits.dtype)
        return dice(logits, target) + bce(logits, target)

    return loss


#: settings that may change when a run resumes (they do not change what was trained so far)
_MAY_CHANGE_ON_RESUME = {"max_steps", "time_budget_s", "val_every", "device", "amp", "resume"}
#: beside checkpoint_latest.pt: the training config and plan it was written with
RUN_CONFIG_FILE = "checkpoint_config.json"


def _run_settings(config: SegTrainConfig, plan: SegmentationPlan) -> dict[str, Any]:
    return {"config": config.model_dump(mode="json"), "plan": plan.model_dump(mode="json")}


def _check_same_run(out: Path, config: SegTrainConfig, plan: SegmentationPlan) -> None:
    """Refuse to resume a checkpoint written with another config or plan."""
    path = out / RUN_CONFIG_FILE
    if not path.is_file():  # a checkpoint from before medsight stored its settings
        log.warning("%s: no %s; resuming without checking the settings", out, RUN_CONFIG_FILE)
        return
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnreadableFileError(path, f"cannot read the run's settings ({exc})") from None
    now = _run_settings(config, plan)
    old_cfg, old_plan = before.get("config", {}), before.get("plan", {})
    changed = [
        k
        for k in now["config"]
        if k not in _MAY_CHANGE_ON_RESUME and old_cfg.get(k) != now["config"][k]
    ]
    changed += [
        f"plan.{k}"
        for k in sorted(set(now["plan"]) | set(old_plan))
        if old_plan.get(k) != now["plan"].get(k)
    ]
    if changed:
        raise InvalidInputError(
            out,
            "checkpoint_latest.pt was trained with other settings: " + ", ".join(changed),
            hint="use a new --out, or delete checkpoint_latest.pt to start this run afresh",
        )


def _input_reference(data: Preprocessed, train_idx: list[int]) -> dict[str, list[float]] | None:
    """The plausibility reference (``spec.extra["input_reference"]``) of the training cases."""
    from medsight.models.plausibility import reference_statistics

    if not data.input_stats:
        log.warning("no input_reference for this package: preprocess the data again to add it")
        return None
    return reference_statistics(data.input_stats[i] for i in train_idx)


def _ood_reference(
    net: Any,
    data: Preprocessed,
    train_idx: list[int],
    val_idx: list[int],
    plan: SegmentationPlan,
    device: Any,
    max_train: int = 400,
) -> tuple[dict[str, Any] | None, bytes | None]:
    """Mahalanobis OOD reference on the bottleneck features (as the Segmenter computes them):
    fitted on up to ``max_train`` training images, thresholded at 5% false rejection on the
    validation images.  None when there are too few images."""
    from medsight.inference.features import capture
    from medsight.inference.segment import sliding_window_probs
    from medsight.models.ood import fit_reference

    def features(idx: list[int]) -> np.ndarray:
        rows = []
        with capture(net, "segmentation") as grab:
            for i in idx:
                grab.clear()
                sliding_window_probs(net, data.images[i], plan, device=device)
                rows.append(grab.pooled())
        return np.stack(rows)

    net.eval()
    chosen = train_idx
    if len(chosen) > max_train:
        chosen = sorted(np.random.default_rng(0).choice(chosen, max_train, replace=False).tolist())
    try:
        ref = fit_reference(features(chosen), features(val_idx), layer="bottleneck (mean, log sd)")
    except InvalidInputError as err:
        log.warning("no OOD reference for this package: %s", err)
        return None, None
    return ref.packaged()


def _mean_dice(preds: list[np.ndarray], refs: list[np.ndarray], n_classes: int) -> np.ndarray:
    return np.mean([_dice_per_label(p, r, n_classes) for p, r in zip(preds, refs, strict=True)], 0)


def _choose_postprocessing(
    preds: list[np.ndarray], refs: list[np.ndarray], n_classes: int
) -> dict[str, str]:
    """Per label: keep the largest component when it raises mean validation Dice."""
    from medsight.inference.segment import keep_largest_component

    base = _mean_dice(preds, refs, n_classes)
    rules: dict[str, str] = {}
    for c in range(1, n_classes):
        post = [keep_largest_component(p, [c]) for p in preds]
        if _mean_dice(post, refs, n_classes)[c - 1] > base[c - 1] + 1e-4:
            rules[str(c)] = "largest_component"
    return rules


def train_segmentation(
    data: Preprocessed,
    plan: SegmentationPlan,
    config: SegTrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    name: str = "segmentation",
    version: str = "0.1.0",
    labels: Sequence[LabelSpec] | None = None,
    dataset_info: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    meanings: Mapping[str, str] | None = None,
    roles: Sequence[RoleSpec] | None = None,
) -> SegTrainResult:
    """Train a network for ``plan`` on ``data`` and save a ModelPackage in ``out_dir/package``.

    Parameters
    ----------
    data : Preprocessed
        Cases with ``splits``: "train" cases are trained on, "val" cases select the checkpoint and
        the post-processing (at least one of each is needed).
    labels : sequence of LabelSpec, optional
        Coded labels with colours; by default the plan's label names, uncoded.
    meanings : mapping, optional
        Label name -> clinical meaning (``"anatomy"``, ``"actionable:routine"`` ...), see
        :mod:`medsight.core.significance`; labels without one are "not stated", which the
        worklist shows as of unknown significance.
    dataset_info : dict, optional
        ``dataset``, ``source`` and ``license`` for the model card.
    roles : sequence of RoleSpec, optional
        One series role per input channel (from the data set's channel names, see
        :func:`medsight.models.roles.roles_from_channel_names`), declared in ``model.json`` so
        that ``analyze`` finds each in a study; ignored unless it has one role per channel.

    Raises
    ------
    InvalidInputError
        No training or no validation cases; ``config.regions`` that are not nested from the
        largest to the smallest or name labels the plan does not have
        (:func:`medsight.models.seg_regions.check_regions`).
    """
    import torch
    from monai.losses import DiceCELoss

    from medsight.models.device import select_device
    from medsight.models.package import ModelPackage
    from medsight.models.registry import build_network
    from medsight.models.seg_regions import check_regions
    from medsight.models.spec import (
        ArchitectureSpec,
        InputSpec,
        MetricValue,
        ModelSpec,
        Task,
        TrainingDataSummary,
    )
    from medsight.training.common import load_checkpoint, save_checkpoint, seed_everything

    if labels is None:
        labels = [
            LabelSpec(index=k, name=v, color=DEFAULT_COLORS[(k - 1) % len(DEFAULT_COLORS)])
            for k, v in plan.label_names.items()
            if k > 0
        ]
    labels = apply_meanings(labels, meanings or {})  # before training: a misspelt name fails now
    regions = check_regions(config.regions, plan.label_names) if config.regions else None
    say = log or (lambda s: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    latest, best_file = out / "checkpoint_latest.pt", out / "checkpoint_best.pt"
    if config.resume and latest.is_file():
        _check_same_run(out, config, plan)  # before plan.json is overwritten
    plan.save(out / PLAN_FILE)
    train_idx, val_idx = data.part("train"), data.part("val")
    if not train_idx or not val_idx:
        raise InvalidInputError("splits", "need at least one training and one validation case")
    device = select_device(config.device)
    rng = seed_everything(config.seed, deterministic=device.type == "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    register_segmentation_networks()
    in_ch = int(data.images[0].shape[0])
    net_args = plan.network_args(in_ch)
    if regions:
        net_args["out_channels"] = len(regions)  # one sigmoid output per region
    arch = ArchitectureSpec(name=plan.network, args=net_args)
    net = build_network(arch).to(device)
    opt = torch.optim.SGD(
        net.parameters(),
        lr=config.lr,
        momentum=0.99,
        nesterov=True,
        weight_decay=config.weight_decay,
    )
    loss_fn = (
        _region_loss(regions, device)
        if regions
        else DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    )
    sampler = _Sampler(
        [data.images[i] for i in train_idx],
        [data.labels[i] for i in train_idx],
        plan.patch_size,
        config.fg_oversample,
        rng,
        device,
    )
    batch_size = config.batch_size or plan.batch_size
    n_cls = plan.n_classes
    refs = [data.labels[i] for i in val_idx]
    step, best, best_step, history, spent = 0, -1.0, -1, [], 0.0
    with atomic_path(out / RUN_CONFIG_FILE) as tmp:
        Path(tmp).write_text(json.dumps(_run_settings(config, plan), indent=2), encoding="utf-8")
    if config.resume and latest.is_file():
        state = load_checkpoint(latest, model=net, optimizer=opt)
        step, best, best_step = state["step"], state["best"], state["best_step"]
        history, spent = state["history"], state["seconds"]
        say(f"resumed at step {step}")
    resumed_at = step
    autocast = device.type == "cuda" and config.amp
    t0 = time.monotonic() - spent
    budget = resolve_time_budget(config.time_budget_s, device.type)
    planned, val_every = config.max_steps, config.val_every
    last_line = time.monotonic()

    def elapsed() -> float:
        return time.monotonic() - t0

    def progress() -> float:
        frac = step / planned
        if budget:  # the hard stop, whatever the plan says
            frac = max(frac, elapsed() / budget)
        return frac

    def replan(first: bool) -> None:
        """Steps that fit the time budget at the speed measured so far."""
        nonlocal planned, val_every
        if not budget or step == 0:
            return
        rate = elapsed() / step
        planned = min(config.max_steps, max(step + 1, int(budget / rate)))
        if first:
            if planned < config.max_steps:
                val_every = min(config.val_every, max(1, planned // 5))
            say(
                f"measured {rate:.3g} s a step: {config.max_steps} steps would take "
                f"{_duration(rate * config.max_steps)}; the time budget of {_duration(budget)} "
                f"fits {planned} steps (validation every {val_every}); ETA "
                f"{_duration(max(0.0, budget - elapsed()))}"
                + (" (--time-budget none trains every step)" if planned < config.max_steps else "")
            )

    def eta() -> str:
        rate = elapsed() / max(step, 1)
        left = rate * max(planned - step, 0)
        if budget:
            left = min(left, max(0.0, budget - elapsed()))
        return f"{step}/{planned} steps, {rate:.3g} s a step, ETA {_duration(left)}"

    if budget:
        say(f"training for at most {_duration(budget)} (time budget) or {config.max_steps} steps")
    net.train()
    while progress() < 1.0:
        for group in opt.param_groups:
            group["lr"] = config.lr * (1 - min(progress(), 0.999)) ** 0.9
        x, y = sampler.batch(batch_size)
        if config.augment:
            x, y = _augment(x, y, rng)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            outp = net(x)
        if outp.ndim == x.ndim + 1:  # deep supervision: (B, heads, C, *S)
            heads = outp.shape[1]
            w = torch.tensor([0.5**k for k in range(heads)])
            w = w / w.sum()
            loss = sum(w[k] * loss_fn(outp[:, k].float(), y) for k in range(heads))
        else:
            loss = loss_fn(outp.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
        opt.step()
        step += 1
        if step == resumed_at + _WARMUP_STEPS:
            replan(first=True)
        if time.monotonic() - last_line > _PROGRESS_EVERY_S:
            last_line = time.monotonic()
            say(f"step {eta()}")
        if step % val_every == 0 or progress() >= 1.0:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                preds = _validate(net, data, val_idx, plan, device, regions)
            dice = _mean_dice(preds, refs, n_cls)
            mean = float(dice.mean())
            history.append(
                {"step": step, "loss": loss.item(), "val_dice": mean, "s": time.monotonic() - t0}
            )
            replan(first=False)
            last_line = time.monotonic()
            say(f"step {eta()}; loss {loss.item():.4f} val dice {np.round(dice, 4).tolist()}")
            if mean > best:
                best, best_step = mean, step
                with atomic_path(best_file) as tmp:
                    torch.save(net.state_dict(), tmp)
            save_checkpoint(
                latest,
                model=net,
                optimizer=opt,
                step=step,
                best=best,
                best_step=best_step,
                history=history,
                seconds=time.monotonic() - t0,
            )
    seconds = time.monotonic() - t0
    stopped_by = "max_steps" if step >= config.max_steps else "time_budget"
    if stopped_by == "time_budget":
        say(f"stopped by the time budget of {_duration(budget or 0)} at step {step}")
    net.load_state_dict(torch.load(best_file, map_location=device, weights_only=True))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        preds = _validate(net, data, val_idx, plan, device, regions)
    dice = _mean_dice(preds, refs, n_cls)
    region_metrics = []
    if regions:  # nested labels are judged by their regions too (BraTS: WT, TC, ET)
        from medsight.models.seg_regions import region_dice, region_names

        by_case = [region_dice(p, r, regions) for p, r in zip(preds, refs, strict=True)]
        names = region_names(regions, plan.label_names)
        region_metrics = [
            MetricValue(name=f"dice_region_{nm}", value=float(d), n=len(val_idx))
            for nm, d in zip(names, np.mean(by_case, 0), strict=True)
        ]
        say(
            "validation region dice "
            + ", ".join(f"{m.name[12:]} {m.value:.4f}" for m in region_metrics)
        )
    rules = _choose_postprocessing(preds, refs, n_cls)
    ood_meta, ood_file = _ood_reference(net, data, train_idx, val_idx, plan, device)
    info = dataset_info or {}
    reference = _input_reference(data, train_idx)
    spec = ModelSpec(
        name=name,
        version=version,
        task=Task.SEGMENTATION,
        architecture=arch,
        input=InputSpec(
            modalities=[plan.modality] if plan.modality else [],
            spatial_ndim=plan.spatial_ndim,
            channels=in_ch,
            grey_only=in_ch == 1,  # trained on grey images: colour content is outside its use
            roles=list(roles) if roles and len(roles) == in_ch > 1 else [],
        ),
        preprocessing=plan.preprocessing(in_ch),
        labels=list(labels),
        training_data=TrainingDataSummary(
            dataset=info.get("dataset", plan.dataset),
            source=info.get("source", ""),
            license=info.get("license", ""),
            n_cases={"train": len(train_idx), "val": len(val_idx)},
            spacing_median=plan.target_spacing,
            size_median=plan.median_shape,
        ),
        metrics=[
            MetricValue(name=f"dice_{plan.label_names[c + 1]}", value=float(d), n=len(val_idx))
            for c, d in enumerate(dice)
        ]
        + region_metrics,
        intended_use=info.get("intended_use", "Research use only; not a medical device."),
        limitations=info.get("limitations", ""),
        seed=config.seed,
        extra={
            **({"regions": regions} if regions else {}),
            "postprocessing": rules,
            "best_step": best_step,
            "steps": step,
            "training": {
                "max_steps": config.max_steps,
                "time_budget_s": budget,
                "stopped_by": stopped_by,
                "seconds": round(seconds, 1),
                "seconds_per_step": round(seconds / max(step, 1), 4),
                "device": device.type,
                "batch_size": batch_size,
                "val_every": val_every,
                "seed": config.seed,
            },
            **({"ood": ood_meta} if ood_meta else {}),
            **({"input_reference": reference} if reference else {}),
        },
    )
    # weights stored as float16 (half the size; loading casts back to float32)
    state = {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
        for k, v in net.state_dict().items()
    }
    pkg = ModelPackage.save(
        out / "package",
        spec,
        state,
        extra_files={
            PLAN_FILE: plan.model_dump_json(indent=2) + "\n",
            **({OOD_FILE: ood_file} if ood_file else {}),
        },
        overwrite=True,
    )
    say(f"saved {pkg.path} (best step {best_step}, val dice {np.round(dice, 4).tolist()})")
    return SegTrainResult(
        package=str(pkg.path),
        best_step=best_step,
        steps=step,
        seconds=round(seconds, 2),
        val_dice={plan.label_names[c + 1]: float(d) for c, d in enumerate(dice)},
        postprocessing=rules,
        history=history,
        stopped_by=stopped_by,
        time_budget_s=budget,
    )
