"""Train a 2D or 3D lesion detector: MONAI RetinaNet with ATSS matching and hard negatives.

The runner of the detection family (``medsight train detect``).  The data set is a detection
data set (:mod:`medsight.data.detection`: ``mias:``, ``coco:``, ``voc:``, ``boxes:``); it is
split by patient (:func:`medsight.data.detection.detection_splits`: a woman's two breasts stay
together) unless ``splits`` names a ``splits.json``; the split is written to ``out/splits.json``
and test cases are never read.  Every image is preprocessed once as the package will at
inference (:func:`medsight.transforms.preprocess.to_network_input`: resize to ``size``,
intensity normalisation), its lesions mapped to MONAI corner boxes in network pixels
(:func:`medsight.inference.detect.regions_to_boxes`).

Each step draws a batch (half lesion-positive images when the data have both), flips each image
along each axis with probability 1/2 (boxes with MONAI's ``FlipBox``), jitters contrast and
brightness a little, and takes one AdamW step on MONAI's RetinaNet losses (focal-free BCE on
ATSS-matched anchors with MONAI's hard-negative sampler, smooth-L1 box regression through its
box coder; :func:`medsight.models.retinanet.build_detector`).  Every ``val_every`` steps the
validation images are detected and scored by FROC (:func:`medsight.evaluation.detection.froc`);
the checkpoint with the best sensitivity at ``select_fp_rate`` false positives per image (ties:
the higher CPM) becomes the package.  Its operating threshold (``thresholds["score"]``) is the
lowest score at which validation stays at or below ``threshold_fp_rate`` false positives per
image.  Files in ``out``: ``config.json``, ``splits.json``, ``checkpoint.pt`` (latest, for
``resume``; a changed config is refused), ``best.pt`` and ``package/``.  Each step's randomness
comes from ``(seed, step)``, so a resumed run continues the uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medsight.core.case import Split
from medsight.core.errors import InvalidInputError
from medsight.core.task import Task
from medsight.models.spec import Intensity

__all__ = ["DetectConfig", "train_detector"]

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
SPLITS = "splits.json"
#: Config fields a resumed run may change (they do not change what was trained so far).
MAY_CHANGE_ON_RESUME = frozenset({"resume", "steps", "device", "threads", "out"})


class DetectConfig(BaseModel):
    """The typed configuration of one detector training run."""

    model_config = ConfigDict(extra="forbid")

    data: str
    out: Path
    splits: Path | None = None  # a splits.json; default: patient-level splits made here
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    test_fraction: float = Field(default=0.2, ge=0, lt=1)
    arch: str = "retinanet"
    size: list[int] | None = None  # network input; None: the median image size, capped
    max_size: int = Field(default=512, ge=16)  # cap of the automatic size per axis
    # train on patches of the images at their own resolution (large images: CT), detect with
    # a sliding window; ``size`` is then not used
    patch_size: list[int] | None = None
    intensity: Intensity | None = None  # None: scale_0_1 for 8-bit images, else zscore
    block_inplanes: list[int] = Field(default_factory=lambda: [16, 32, 64])
    fpn_channels: int = Field(default=32, ge=8)
    anchor_shapes: list[list[float]] | None = None  # None: from the training lesion sizes
    steps: int = Field(default=2000, ge=1)
    val_every: int = Field(default=200, ge=1)
    batch_size: int = Field(default=4, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    positive_fraction: float = Field(default=0.5, ge=0, le=1)  # of each batch's images
    flips: bool = True
    intensity_jitter: float = Field(default=0.1, ge=0, le=0.5)
    select_fp_rate: float = Field(default=1.0, gt=0)
    threshold_fp_rate: float = Field(default=1.0, gt=0)
    score_floor: float = Field(default=0.02, ge=0, lt=1)
    nms_iou: float = Field(default=0.22, gt=0, le=1)
    max_detections: int = Field(default=100, ge=1)
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(default=None, ge=1)
    max_cases: int | None = Field(default=None, ge=2)
    modality: str | None = None
    label_meanings: dict[str, str] = Field(default_factory=dict)
    resume: bool = False
    name: str | None = None
    version: str = "0.1.0"
    intended_use: str = ""
    limitations: str = ""

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str) -> str:
        if v != "retinanet":
            raise ValueError(f"arch {v!r}: the detection family trains 'retinanet'")
        return v

    @field_validator("block_inplanes")
    @classmethod
    def _levels(cls, v: list[int]) -> list[int]:
        if not 1 <= len(v) <= 4 or any(c < 8 or c % 8 for c in v):
            raise ValueError("block_inplanes: 1 to 4 ResNet layers, multiples of 8 channels")
        return v


# --- data ----------------------------------------------------------------------------------------


def _parts(ds: Any, cfg: DetectConfig, out: Path, log: Callable[[str], None]) -> tuple[list, list]:
    from medsight.data import SplitConfig, Splits
    from medsight.data.detection import detection_splits, is_detection_case

    bad = [c.case_id for c in ds if not is_detection_case(c)]
    if bad:
        raise InvalidInputError(
            f"data {cfg.data}",
            f"{len(bad)} cases carry no boxes or circles (e.g. {bad[:3]})",
            hint="use a detection adapter: mias:, coco:, voc: or boxes:",
        )
    if cfg.splits is not None:
        splits = Splits.load(cfg.splits)
    elif (out / SPLITS).is_file() and cfg.resume:
        splits = Splits.load(out / SPLITS)
    else:
        splits = detection_splits(
            ds,
            SplitConfig(
                val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed
            ),
        )
    leaks = splits.leaks(ds)
    if leaks:
        raise InvalidInputError(
            cfg.splits or out / SPLITS,
            f"{len(leaks)} patients are in several parts (e.g. {next(iter(leaks))})",
            hint="split by patient (medsight split), so a patient's images stay together",
        )
    splits.save(out / SPLITS)
    ds = splits.apply(ds)
    train = [c for c in ds if c.split is Split.TRAIN]
    val = [c for c in ds if c.split is Split.VAL]
    if cfg.max_cases:
        rng = np.random.default_rng([cfg.seed, 1])
        train = [train[i] for i in sorted(rng.permutation(len(train))[: cfg.max_cases])]
        val = [val[i] for i in sorted(rng.permutation(len(val))[: cfg.max_cases])]
    n_test = sum(c.split is Split.TEST for c in ds)
    log(
        f"detect: {len(train)} training, {len(val)} validation, {n_test} test images "
        f"(patient-level split in {out / SPLITS})"
    )
    return train, val


def _preprocessing(cfg: DetectConfig, images: Sequence[Any]) -> Any:
    from medsight.models.retinanet import size_divisible
    from medsight.models.spec import PreprocessingSpec

    multiple = size_divisible(len(cfg.block_inplanes))
    size = cfg.size
    if cfg.patch_size is not None:
        if len(cfg.patch_size) != images[0].spatial_ndim or any(
            s % multiple for s in cfg.patch_size
        ):
            raise InvalidInputError(
                "patch_size",
                f"{cfg.patch_size}: give one side per image axis, each a multiple of {multiple}",
            )
        size = None
    elif size is None:
        med = np.median([im.shape for im in images], axis=0)
        size = [int(max(multiple, min(cfg.max_size, s) // multiple * multiple)) for s in med]
    if size is not None and any(s % multiple for s in size):
        raise InvalidInputError(
            "size", f"{size}: every side must be a multiple of {multiple} for this backbone"
        )
    intensity = cfg.intensity
    if intensity is None:
        intensity = (
            Intensity.SCALE_0_1
            if all(np.asarray(im.array).dtype == np.uint8 for im in images)
            else Intensity.ZSCORE
        )
    args = {"max": 255.0} if intensity is Intensity.SCALE_0_1 else {}
    return PreprocessingSpec(
        size=list(size) if size is not None else None, intensity=intensity, intensity_args=args
    )


def _encode(
    cases: Sequence[Any], images: Sequence[Any], prep: Any, names: list[str]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(network input, boxes, labels)`` per case."""
    from medsight.data.detection import annotations_of
    from medsight.inference.detect import network_scale, regions_to_boxes
    from medsight.transforms.preprocess import to_network_input

    index = {n: i for i, n in enumerate(names)}
    out = []
    for case, image in zip(cases, images, strict=True):
        anns = annotations_of(case)
        if any(a.region.ndim != image.spatial_ndim for a in anns):
            raise InvalidInputError(
                f"case {case.case_id}", "has boxes of another dimension than its image"
            )
        x = to_network_input(image, prep)
        boxes = regions_to_boxes([a.region for a in anns], network_scale(image.shape, prep.size))
        labels = np.asarray([index[a.label] for a in anns], dtype=np.int64)
        out.append((x, boxes.reshape(-1, 2 * image.spatial_ndim), labels))
    return out


def _anchor_shapes(cfg: DetectConfig, encoded: Sequence[Any], ndim: int) -> list[list[float]]:
    """Two base anchors per level: the pyramid then spans ~1x..12x the smallest lesion."""
    if cfg.anchor_shapes is not None:
        return cfg.anchor_shapes
    sizes = [b[ndim:] - b[:ndim] for _, boxes, _ in encoded for b in boxes]
    if not sizes:
        raise InvalidInputError("data", "the training images hold no lesion")
    small = float(np.percentile(np.concatenate(sizes), 5))
    base = max(4.0, round(small))
    return [[base] * ndim, [round(base * 1.5)] * ndim]


# --- one step ------------------------------------------------------------------------------------


def _batch(
    data: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    positives: Sequence[int],
    negatives: Sequence[int],
    cfg: DetectConfig,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]]]:
    from monai.apps.detection.transforms.array import FlipBox

    images, targets = [], []
    for _ in range(cfg.batch_size):
        if positives and (not negatives or rng.random() < cfg.positive_fraction):
            i = positives[int(rng.integers(len(positives)))]
        else:
            i = negatives[int(rng.integers(len(negatives)))]
        x, boxes, labels = data[i]
        if cfg.patch_size is not None:
            x, boxes, labels = _crop(x, boxes, labels, cfg.patch_size, i in positives, rng)
        x, boxes = x.copy(), boxes.copy()
        spatial = x.shape[1:]
        if cfg.flips:
            for axis in range(len(spatial)):
                if rng.random() < 0.5:
                    x = np.flip(x, axis=axis + 1)
                    if len(boxes):
                        boxes = np.asarray(FlipBox(spatial_axis=axis)(boxes, spatial))
        if cfg.intensity_jitter:
            j = cfg.intensity_jitter
            x = x * np.float32(1 + rng.uniform(-j, j)) + np.float32(rng.uniform(-j, j) * x.std())
        images.append(np.ascontiguousarray(x, dtype=np.float32))
        targets.append({"boxes": boxes.astype(np.float32), "labels": labels})
    return images, targets


def _crop(
    x: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    patch: Sequence[int],
    positive: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``patch``-sized crop (zero-padded where the image is smaller): around a random lesion
    (shifted by up to a quarter patch) for a positive image, anywhere otherwise.  Boxes whose
    centre falls in the crop are kept, clipped to it; the others are dropped."""
    n = len(patch)
    shape = np.asarray(x.shape[1:])
    p = np.asarray(patch)
    if len(boxes) and positive:
        b = boxes[int(rng.integers(len(boxes)))]
        centre = (b[:n] + b[n:]) / 2 + rng.uniform(-0.25, 0.25, n) * p
        start = np.round(centre - p / 2).astype(int)
    else:
        start = np.asarray(
            [int(rng.integers(0, max(1, s - q + 1))) for s, q in zip(shape, p, strict=True)]
        )
    start = np.clip(start, 0, np.maximum(shape - p, 0))
    region = tuple(slice(int(a), int(a + q)) for a, q in zip(start, p, strict=True))
    crop = x[(slice(None), *region)]
    pad = [(0, 0)] + [(0, int(q - c)) for q, c in zip(p, crop.shape[1:], strict=True)]
    crop = np.pad(crop, pad) if any(b for _, b in pad) else crop
    if not len(boxes):
        return np.ascontiguousarray(crop), boxes, labels
    shifted = boxes - np.concatenate([start, start])
    centres = (shifted[:, :n] + shifted[:, n:]) / 2
    keep = np.all((centres >= 0) & (centres < p), axis=1)
    kept = np.clip(shifted[keep], 0, np.concatenate([p, p]))
    return np.ascontiguousarray(crop), kept.astype(np.float32), labels[keep]


def _predict(
    det: Any, data: Sequence[Any], device: Any, sliding: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Network-pixel ``(boxes, scores)`` per image (a sliding window for patch models)."""
    import torch

    det.eval()
    out = []
    with torch.no_grad():
        for x, _, _ in data:
            r = det([torch.from_numpy(x).to(device)], use_inferer=sliding)[0]
            out.append((r["boxes"].float().cpu().numpy(), r["labels_scores"].float().cpu().numpy()))
    return out


def _val_froc(
    preds: Sequence[tuple[np.ndarray, np.ndarray]],
    data: Sequence[Any],
    fp_rates: Sequence[float],
) -> Any:
    """FROC on validation in network pixels (hits: centre inside the true box)."""
    from medsight.core.findings import Region
    from medsight.evaluation.detection import froc

    ndim = data[0][0].ndim - 1
    truths, pairs = [], []
    for (boxes, scores), (_, true_boxes, _) in zip(preds, data, strict=True):
        truths.append(
            [
                Region(tuple((b[:ndim] + b[ndim:]) / 2), tuple(b[ndim:] - b[:ndim]))
                for b in true_boxes
            ]
        )
        centres = (boxes[:, :ndim] + boxes[:, ndim:]) / 2 if len(boxes) else np.zeros((0, ndim))
        pairs.append((centres, scores))
    return froc(pairs, truths, fp_rates)


def _threshold(result: Any, fp_rate: float, floor: float) -> float:
    """The lowest curve threshold whose false positives per image stay <= ``fp_rate``."""
    ok = [t for t, f in zip(result.thresholds, result.fps, strict=True) if f <= fp_rate]
    finite = [float(t) for t in ok if np.isfinite(t)]
    return max(floor, min(finite)) if finite else 1.0


# --- the runner ----------------------------------------------------------------------------------


def train_detector(cfg: DetectConfig, log: Callable[[str], None] = print) -> Any:
    """Train a detector as ``cfg`` says and save its ModelPackage to ``cfg.out / "package"``.

    Raises
    ------
    InvalidInputError
        A checkpoint exists and ``resume`` is false, or the resumed run's config changed; a
        data set without detection labels, without lesions in training or validation, or whose
        splits mix a patient's images across parts.
    """
    import torch

    from medsight.data import load_dataset
    from medsight.io.atomic import atomic_path
    from medsight.models.registry import build_network
    from medsight.models.retinanet import build_detector
    from medsight.models.spec import ArchitectureSpec
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
    names = [ds.label_names[k] for k in sorted(ds.label_names)]
    if not names:
        raise InvalidInputError(f"data {cfg.data}", "names no lesion class")
    train_cases, val_cases = _parts(ds, cfg, out, log)
    train_images = [c.image() for c in train_cases]
    val_images = [c.image() for c in val_cases]
    ndims = {im.spatial_ndim for im in train_images + val_images}
    if len(ndims) != 1:
        raise InvalidInputError(f"data {cfg.data}", "mixes 2D and 3D images")
    ndim = ndims.pop()
    prep = _preprocessing(cfg, train_images)
    train = _encode(train_cases, train_images, prep, names)
    val = _encode(val_cases, val_images, prep, names)
    if not any(len(b) for _, b, _ in val):
        raise InvalidInputError(
            f"data {cfg.data}", "the validation images hold no lesion: nothing to select on"
        )
    modalities = (
        [cfg.modality.upper()]
        if cfg.modality
        else sorted({str(im.modality) for im in train_images if im.modality})
    )
    anchors = _anchor_shapes(cfg, train, ndim)
    arch = ArchitectureSpec(
        name="retinanet",
        args={
            "spatial_dims": ndim,
            "in_channels": 1,
            "num_classes": len(names),
            "anchor_shapes": anchors,
            "block_inplanes": list(cfg.block_inplanes),
            "fpn_channels": cfg.fpn_channels,
        },
    )
    net = build_network(arch)
    det = build_detector(
        net,
        score_thresh=cfg.score_floor,
        nms_thresh=cfg.nms_iou,
        detections_per_img=cfg.max_detections,
        patch_size=cfg.patch_size,
    ).to(device)
    sliding = cfg.patch_size is not None
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    positives = [i for i, (_, b, _) in enumerate(train) if len(b)]
    negatives = [i for i, (_, b, _) in enumerate(train) if not len(b)]
    if not positives:
        raise InvalidInputError(f"data {cfg.data}", "the training images hold no lesion")
    log(
        f"detect: {ndim}D input {prep.size}, {prep.intensity.value} intensity; "
        f"{sum(len(b) for _, b, _ in train)} training lesions in {len(positives)} images "
        f"(+{len(negatives)} negatives); anchors {anchors} x 2^level"
    )
    step, best, best_step, history, seconds = 0, (-math.inf, -math.inf), -1, [], 0.0
    if cfg.resume and ckpt.exists():
        state = load_checkpoint(ckpt, model=net, optimizer=opt)
        step, best, best_step = state["step"], tuple(state["best"]), state["best_step"]
        history, seconds = state["history"], state["seconds"]
        log(f"resumed at step {step} (best validation sensitivity {best[0]:.3f} at {best_step})")
    (out / "config.json").write_text(cfg.model_dump_json(indent=2), encoding="utf-8")

    fp_rates = sorted({0.25, 0.5, 1.0, 2.0, 4.0, cfg.select_fp_rate})
    t0 = time.monotonic() - seconds
    t_start, start = time.monotonic(), step
    running: list[float] = []
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, 3, step])
        xs, ts = _batch(train, positives, negatives, cfg, rng)
        det.train()
        losses = det(
            [torch.from_numpy(x).to(device) for x in xs],
            [
                {
                    "boxes": torch.from_numpy(t["boxes"]).to(device),
                    "labels": torch.from_numpy(t["labels"]).to(device),
                }
                for t in ts
            ],
        )
        loss = losses[det.cls_key] + losses[det.box_reg_key]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        running.append(float(loss.item()))
        step += 1
        if step % cfg.val_every == 0 or step == cfg.steps:
            result = _val_froc(_predict(det, val, device, sliding), val, fp_rates)
            sens = result.sensitivities[fp_rates.index(cfg.select_fp_rate)]
            score = (sens, result.cpm)
            elapsed = time.monotonic() - t0
            eta = (time.monotonic() - t_start) / max(1, step - start) * (cfg.steps - step)
            history.append(
                {
                    "step": step,
                    "loss": float(np.mean(running)),
                    "val_sensitivity": sens,
                    "val_cpm": result.cpm,
                    "s": round(elapsed, 2),
                }
            )
            log(
                f"step {step}/{cfg.steps} loss {np.mean(running):.4f} val sensitivity "
                f"{sens:.3f} at {cfg.select_fp_rate:g} FP/image, CPM {result.cpm:.3f}; "
                f"ETA {eta:.0f} s"
            )
            running = []
            if score > best:
                best, best_step = score, step
                with atomic_path(out / BEST) as tmp:
                    torch.save(net.state_dict(), tmp)
            save_checkpoint(
                ckpt,
                model=net,
                optimizer=opt,
                step=step,
                best=list(best),
                best_step=best_step,
                history=history,
                seconds=elapsed,
            )
    net.load_state_dict(torch.load(out / BEST, map_location=device, weights_only=True))
    preds = _predict(det, val, device, sliding)
    return _save(
        cfg,
        out,
        arch,
        net,
        prep,
        names,
        modalities,
        preds,
        val,
        val_cases,
        train,
        ds,
        best_step,
        step,
        history,
        time.monotonic() - t0,
        len(train_cases),
        log,
    )


def _labels(names: list[str], meanings: dict[str, str]) -> list[Any]:
    from medsight.core.codes import LESION, MASS
    from medsight.models.spec import LabelSpec, apply_meanings

    def code(name: str) -> Any:
        low = name.lower()
        return MASS if "mass" in low else LESION if low in ("lesion", "nodule") else None

    labels = [LabelSpec(index=i, name=n, code=code(n)) for i, n in enumerate(names)]
    return apply_meanings(labels, meanings)


def _save(
    cfg: DetectConfig,
    out: Path,
    arch: Any,
    net: Any,
    prep: Any,
    names: list[str],
    modalities: list[str],
    preds: Sequence[tuple[np.ndarray, np.ndarray]],
    val: Sequence[Any],
    val_cases: Sequence[Any],
    train: Sequence[Any],
    ds: Any,
    best_step: int,
    steps: int,
    history: list[Any],
    seconds: float,
    n_train: int,
    log: Callable[[str], None],
) -> Any:
    from medsight.core.findings import Region
    from medsight.evaluation.detection import DEFAULT_FP_RATES, froc_bootstrap
    from medsight.models.package import ModelPackage
    from medsight.models.spec import InputSpec, MetricValue, ModelSpec, TrainingDataSummary
    from medsight.training.common import portable_config

    ndim = val[0][0].ndim - 1
    truths = [
        [Region(tuple((b[:ndim] + b[ndim:]) / 2), tuple(b[ndim:] - b[:ndim])) for b in boxes]
        for _, boxes, _ in val
    ]
    pairs = [
        ((b[:, :ndim] + b[:, ndim:]) / 2 if len(b) else np.zeros((0, ndim)), s) for b, s in preds
    ]
    groups = [c.patient_id or c.case_id for c in val_cases]
    ci = froc_bootstrap(
        pairs, truths, DEFAULT_FP_RATES, groups=groups, n_resamples=500, seed=cfg.seed
    )
    threshold = _threshold(ci.result, cfg.threshold_fp_rate, cfg.score_floor)
    sens_at, fp_at = ci.result.at_threshold(threshold)
    n_val = len(val)
    metrics = [
        MetricValue(
            name=f"sensitivity@{rate:g}fp",
            value=r.value,
            ci_low=r.low,
            ci_high=r.high,
            split="val",
            n=ci.result.n_lesions,
        )
        for rate, r in zip(DEFAULT_FP_RATES, ci.sensitivities, strict=True)
    ]
    metrics.append(
        MetricValue(
            name="cpm",
            value=ci.cpm.value,
            ci_low=ci.cpm.low,
            ci_high=ci.cpm.high,
            split="val",
            n=ci.result.n_lesions,
        )
    )
    counts: dict[str, int] = {}
    for _, _, labels in train:
        for lab in labels:
            counts[names[int(lab)]] = counts.get(names[int(lab)], 0) + 1
    what = "/".join(modalities) or "grey-scale"
    spec = ModelSpec(
        name=cfg.name or f"{ds.name}-detector".replace(" ", "_"),
        version=cfg.version,
        task=Task.DETECTION,
        architecture=arch,
        input=InputSpec(modalities=modalities, spatial_ndim=ndim, channels=1, grey_only=True),
        preprocessing=prep,
        labels=_labels(names, cfg.label_meanings),
        thresholds={"score": threshold},
        training_data=TrainingDataSummary(
            dataset=ds.name,
            source=ds.source,
            license=ds.license,
            n_cases={"train": n_train, "val": n_val},
            class_counts=counts,
            size_median=[int(s) for s in prep.size] if prep.size else None,
        ),
        metrics=metrics,
        intended_use=cfg.intended_use
        or (
            f"Research use only: localising {', '.join(names)} in {ndim}D {what} images like "
            f"those of {ds.name}. Not a medical device; not for screening or diagnosis."
        ),
        limitations=cfg.limitations
        or (
            "Trained and validated on a small data set; the validation FROC has wide intervals. "
            + (
                f"Images are resized to {prep.size} pixels, so lesions much smaller than the "
                "smallest anchor are missed. "
                if prep.size
                else f"Trained on {cfg.patch_size} patches at the images' own resolution "
                "(not resampled to a common spacing); detection runs a sliding window. "
            )
            + "A detection hits when its centre lies inside the "
            "annotated region; sizes of the predicted boxes are not validated."
        ),
        seed=cfg.seed,
        extra={
            "detector": {
                "score_floor": cfg.score_floor,
                "nms_iou": cfg.nms_iou,
                "max_detections": cfg.max_detections,
                "patch_size": cfg.patch_size,
                "matcher": "ATSS (4 candidates per level)",
                "sampler": "hard negative (64 anchors per image, 30% positive at most)",
            },
            "operating_point": {
                "threshold": threshold,
                "target_fp_per_image": cfg.threshold_fp_rate,
                "val_sensitivity": sens_at,
                "val_fp_per_image": fp_at,
                "split": "val",
            },
            "val_froc": {  # the full curve is in training_log-free evaluation reports
                k: v for k, v in ci.result.as_dict().items() if k != "curve"
            }
            | {"ci": ci.as_dict()},
            "hit_rule": "detection centre inside the annotated region (LUNA16)",
            "best_step": best_step,
            "steps": steps,
            "selection": f"best validation sensitivity at {cfg.select_fp_rate:g} FP/image",
            "config": portable_config(cfg, ["out", "splits"]),
        },
    )
    pkg = ModelPackage.save(
        out / "package",
        spec,
        net.state_dict(),
        overwrite=True,
        extra_files={
            "training_log.json": json.dumps(history, indent=1) + "\n",
            SPLITS: (out / SPLITS).read_text(encoding="utf-8"),
        },
    )
    log(
        f"saved {pkg.path} ({pkg.id}); best step {best_step}; validation CPM "
        f"{ci.cpm.value:.3f}, sensitivity {sens_at:.3f} at {fp_at:.2f} FP/image "
        f"(threshold {threshold:.3f}) in {seconds:.0f} s"
    )
    return pkg
