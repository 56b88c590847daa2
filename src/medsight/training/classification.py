"""Classification training: a data set spec in, a validated ModelPackage out.

The run folder (``ClassifyConfig.out``) holds, stage by stage::

    config.json        the typed config of the run
    checkpoint.pt      model, optimiser, scheduler, early stopping, best weights (each epoch)
    training_log.csv   epoch, loss, validation metric, learning rate, seconds
    val_logits.npz     the best epoch's validation logits by case (for ensembles)
    model/             the ModelPackage (weights, model.json, MODEL_CARD.md)

Each epoch draws its shuffling, augmentation and dropout from generators seeded by
``(seed, epoch)``, so a resumed run reproduces an uninterrupted one exactly.  Early stopping
watches the validation AUC (macro over classes where there are several), never the test split.
After training, the best epoch's weights are restored, a calibration is fitted on validation
logits (:func:`~medsight.evaluation.calibration.fit_calibration`: temperature, or vector
scaling / isotonic where the temperature fit fails or they do better on held-out folds, with
the out-of-fold reliability of the reported probability), the operating threshold is chosen on
the calibrated validation probabilities, and validation metrics get patient-level bootstrap
CIs.  Before the calibration, test-time flips (those the training augmentation declares) are
enabled or not by their validation gain (:mod:`medsight.training.tta`, ``--tta``); the
calibration, threshold and metrics are of the probabilities the package then produces.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from medsight.core import Split
from medsight.core.errors import InvalidInputError, short_reason
from medsight.data import Dataset, SplitConfig, Splits, load_dataset, make_splits
from medsight.evaluation import classification as cm
from medsight.evaluation.calibration import fit_calibration
from medsight.evaluation.classification_report import classification_metrics
from medsight.inference.classify import logits_of
from medsight.models.arch_defaults import MAX_DEFAULT_EDGE as MAX_DEFAULT_EDGE
from medsight.models.arch_defaults import default_arch_args, default_size
from medsight.models.arch_defaults import stem_stride as _stem_stride  # noqa: F401 (old name)
from medsight.models.device import select_device
from medsight.models.ood import OOD_FILE
from medsight.models.package import ModelPackage
from medsight.models.registry import build_network
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
    apply_meanings,
)
from medsight.models.tta import mean_probability_logits, transform_name, view_logits
from medsight.training.balance import Balance, cell_counts, cell_weights, group_sample_order
from medsight.training.common import (
    EarlyStopping,
    channels_last_format,
    load_checkpoint,
    open_run_folder,
    portable_config,
    save_checkpoint,
    seed_everything,
    write_training_log,
)
from medsight.training.config import ClassifyConfig, Imbalance, ThresholdMethod
from medsight.training.distributed import (
    all_reduce_mean,
    barrier,
    broadcast,
    epoch_shard,
    gather_rows,
    init_from_env,
    shutdown,
)
from medsight.training.transfer import init_from_package, init_from_ssl, set_encoder_frozen
from medsight.training.tta import tta_decision
from medsight.transforms.arrays import CaseArrays, case_arrays
from medsight.transforms.augment import (
    AugmentConfig,
    apply_params,
    augmentation_for,
    sample_params,
    tta_flips,
)

log = logging.getLogger(__name__)

__all__ = [
    "CLASSIFICATION_TASKS",
    "VAL_LOGITS_FILE",
    "default_arch_args",
    "operating_thresholds",
    "predict_logits",
    "train_classifier",
    "validation_metrics",
]

CLASSIFICATION_TASKS = (Task.BINARY, Task.MULTICLASS, Task.ORDINAL, Task.MULTILABEL)

#: The run folder's validation logits of the best epoch (case ids, patient ids, logits, y).
VAL_LOGITS_FILE = "val_logits.npz"


def _provenance(cfg: ClassifyConfig, ds: Dataset) -> tuple[str, str]:
    """``(source, license)`` of the package's training data, from the Dataset's provenance.

    The source names the adapter and the splits, then the Dataset's ``source`` unless the
    license text already cites it; ``cfg.license`` overrides the Dataset's license, which stays
    empty when the adapter does not know it.
    """
    license_ = cfg.license or ds.license
    source = f"{cfg.data.split(':', 1)[0]} adapter" + (
        " (official splits)" if ds.official_splits else " (generated splits)"
    )
    if ds.source and ds.source not in license_:
        source += f"; {ds.source}"
    return source, license_


def _with_splits(ds: Dataset, seed: int) -> Dataset:
    parts = Counter(c.split for c in ds)
    if parts.get(Split.TRAIN) and parts.get(Split.VAL):
        return ds
    return make_splits(ds, SplitConfig(seed=seed)).apply(ds)


def _take(cases: list[Any], limit: int | None, seed: int) -> list[Any]:
    if limit is None or len(cases) <= limit:
        return cases
    # stratified by label, reproducible: keep every class represented
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Any]] = {}
    for c in cases:
        by_label.setdefault(str(c.label), []).append(c)
    picked: list[Any] = []
    keys = sorted(by_label)
    while len(picked) < limit:
        for k in keys:
            if by_label[k] and len(picked) < limit:
                picked.append(by_label[k].pop(int(rng.integers(len(by_label[k])))))
    return sorted(picked, key=lambda c: c.case_id)


def _preprocessing(cfg: ClassifyConfig, sample: Any, n_channels: int) -> PreprocessingSpec:
    arr = sample.array
    size = cfg.size or default_size(list(sample.shape[: sample.spatial_ndim]))
    if arr.dtype == np.uint8:
        return PreprocessingSpec(
            size=size,
            intensity=Intensity.SCALE_0_1,
            channels=n_channels,
            intensity_args={"max": 255.0},
        )
    if (sample.modality or "").upper() == "CT":
        return PreprocessingSpec(
            size=size,
            intensity=Intensity.CT_WINDOW,
            channels=n_channels,
            intensity_args={"lower": -1000.0, "upper": 1000.0},
        )
    return PreprocessingSpec(size=size, intensity=Intensity.ZSCORE, channels=n_channels)


def _loss_fn(task: Task, y: NDArray[np.int64], n_classes: int, mode: Imbalance) -> nn.Module:
    if task is Task.MULTILABEL:
        if mode is Imbalance.NONE:
            return nn.BCEWithLogitsLoss()
        pos = y.sum(axis=0).clip(1)
        neg = (len(y) - y.sum(axis=0)).clip(1)
        return nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(np.sqrt(neg / pos), dtype=torch.float32)
        )
    if mode is not Imbalance.WEIGHTED_LOSS:
        return nn.CrossEntropyLoss()
    counts = np.bincount(y, minlength=n_classes).clip(1).astype(np.float64)
    w = 1.0 / np.sqrt(counts)
    w = w / (w * counts).sum() * counts.sum()
    return nn.CrossEntropyLoss(weight=torch.tensor(w, dtype=torch.float32))


def _order(
    n: int, y: NDArray[np.int64], task: Task, mode: Imbalance, rng: np.random.Generator
) -> NDArray[np.int64]:
    if mode is Imbalance.BALANCED_SAMPLER and task is not Task.MULTILABEL:
        freq = np.bincount(y)[y].astype(np.float64)
        return rng.choice(n, size=n, replace=True, p=(1 / freq) / (1 / freq).sum())
    return rng.permutation(n)


@torch.no_grad()
def predict_logits(
    net: nn.Module, x: NDArray[np.float32], batch_size: int = 256
) -> NDArray[np.float64]:
    """Logits of ``net`` (eval mode) for a batch array ``(N, C, *spatial)``."""
    net.eval()
    device = next(net.parameters()).device
    outs = [
        logits_of(net(torch.from_numpy(x[i : i + batch_size]).to(device))).float().cpu()
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(outs).numpy().astype(np.float64)


def _val_metric(task: Task, y: NDArray[np.int64], logits: NDArray[np.float64]) -> float:
    try:
        if task is Task.BINARY:
            return cm.roc_auc(y, logits[:, 1] - logits[:, 0])
        return cm.macro_auc(y, logits)
    except ValueError:  # one class only in a tiny validation set: fall back to accuracy
        pred = (logits > 0).astype(int) if task is Task.MULTILABEL else logits.argmax(1)
        return cm.accuracy(y, pred)


def operating_thresholds(
    method: ThresholdMethod | str,
    task: Task,
    y: NDArray[np.int64],
    proba: NDArray[np.float64],
    names: list[str],
) -> dict[str, float]:
    """Operating thresholds keyed by label name, chosen on calibrated validation probabilities.

    Binary: the positive (index 1) label's; multi-label: one per label; otherwise none (arg-max).
    """
    method = ThresholdMethod(method)
    thresholds: dict[str, float] = {}
    if task is Task.BINARY:
        thresholds[names[1]] = _threshold(method, y, proba[:, 1])
    elif task is Task.MULTILABEL:
        for k in range(proba.shape[1]):
            thresholds[names[k]] = _threshold(method, y[:, k], proba[:, k])
    return thresholds


def validation_metrics(
    task: Task,
    y: NDArray[np.int64],
    proba: NDArray[np.float64],
    thresholds: dict[str, float],
    names: list[str],
    groups: list[str] | None,
    n_resamples: int,
    seed: int | None,
    split: str = "val",
) -> list[MetricValue]:
    """The task's metrics with patient-level bootstrap CIs, as the package stores them."""
    results = classification_metrics(
        task.value,
        y,
        proba,
        thresholds,
        label_names=names,
        groups=groups,
        n_resamples=n_resamples,
        seed=seed,
    )
    return [
        MetricValue(
            name=m.name, value=m.value, ci_low=m.ci_low, ci_high=m.ci_high, split=split, n=m.n
        )
        for m in results
    ]


def _threshold(method: ThresholdMethod, y: NDArray[np.int64], score: NDArray[np.float64]) -> float:
    if method is ThresholdMethod.HALF or len(np.unique(y)) < 2:
        return 0.5
    if method is ThresholdMethod.YOUDEN:
        return cm.youden_threshold(y, score)
    candidates = np.unique(score)
    accs = [cm.accuracy(y, (score >= t).astype(int)) for t in candidates]
    return float(candidates[int(np.argmax(accs))])


_MAY_CHANGE_ON_RESUME = {
    "resume", "progress", "epochs", "threads", "device", "n_resamples", "label_meanings",
    "tta",
}  # fmt: skip


def _labels(names: list[str], meanings: dict[str, str]) -> list[LabelSpec]:
    """The package's labels with the clinical meanings given in the config."""
    return apply_meanings([LabelSpec(index=i, name=n) for i, n in enumerate(names)], meanings)


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        transient=False,
        disable=not enabled,
    )


def _check_input_fits(net: torch.nn.Module, arch: ArchitectureSpec, x: np.ndarray) -> None:
    """One forward pass on a training input, so a network that cannot take this input size
    fails here with a clear error instead of a torch traceback in the first epoch."""
    net.eval()
    try:
        with torch.no_grad():
            net(torch.from_numpy(np.ascontiguousarray(x)))
    except RuntimeError as exc:
        raise InvalidInputError(
            f"architecture {arch.name!r}",
            f"cannot take inputs of shape {tuple(x.shape[1:])}: {short_reason(exc)}",
            hint="choose smallcnn or classifier for small images, or a larger preprocessing size",
        ) from None
    net.train()


def train_classifier(cfg: ClassifyConfig) -> ModelPackage:
    """Train, calibrate, choose the operating point, validate, and write the ModelPackage.

    Returns
    -------
    ModelPackage
        ``cfg.out / "package"`` (the run-folder layout of every family), verified.

    Raises
    ------
    InvalidInputError
        The data set is not a classification task, lacks labels, or options conflict.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> arrays = {}
    >>> for split in ("train", "val", "test"):
    ...     y = np.arange(16) % 2
    ...     x = rng.integers(0, 50, (16, 8, 8)).astype(np.uint8)
    ...     x[y == 1, 2:5, 2:5] = 250                        # positives carry a bright square
    ...     arrays |= {f"{split}_images": x, f"{split}_labels": y[:, None]}
    >>> np.savez(d / "toy.npz", **arrays)
    >>> cfg = ClassifyConfig(data=f"medmnist:{d / 'toy.npz'}?task=binary", out=d / "run",
    ...     epochs=2, batch_size=8, threads=1, progress=False, n_resamples=20,
    ...     arch_args={"channels": [4, 8]})
    >>> pkg = train_classifier(cfg)
    >>> pkg.spec.task.value, sorted(pkg.spec.thresholds), pkg.spec.calibration.reliability.n
    ('binary', ['1'], 16)
    >>> sorted(p.name for p in (d / "run").iterdir())
    ['checkpoint.pt', 'config.json', 'package', 'training_log.csv', 'val_logits.npz']
    """
    started = time.process_time()
    out, ckpt_path = open_run_folder(cfg, _MAY_CHANGE_ON_RESUME)
    device = select_device(cfg.device)  # on CPU: one torch thread per core
    # under torchrun: join the process group (gloo on CPU, nccl on cuda:LOCAL_RANK)
    dinfo, device = init_from_env(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif dinfo.distributed and device.type == "cpu":  # the node's cores shared by its processes
        torch.set_num_threads(max(1, torch.get_num_threads() // dinfo.local_world))
    if dinfo.distributed and cfg.batch_size % dinfo.world:
        raise InvalidInputError(
            "--batch-size",
            f"{cfg.batch_size} (the global batch) is not divisible by {dinfo.world} processes",
            hint=f"use a multiple of {dinfo.world}",
        )
    seed_everything(cfg.seed)
    ds = load_dataset(cfg.data)
    task = ds.task if ds.task in CLASSIFICATION_TASKS else None
    if task is None:
        raise InvalidInputError(f"data {cfg.data}", f"task {ds.task.value!r} is not classification")
    ds, n_unlabelled = _labelled_only(ds)
    if cfg.splits is not None:
        ds = Splits.load(cfg.splits).apply(ds)
    ds = _with_splits(ds, cfg.seed)
    n_classes = len(ds.label_names) or 1 + max(
        max(c.label) if isinstance(c.label, tuple) else int(c.label)
        for c in ds  # type: ignore[arg-type]
    )
    names = [ds.label_names.get(i, str(i)) for i in range(n_classes)]
    _labels(names, cfg.label_meanings)  # a misspelt label name fails now, not after training
    multilabel = task is Task.MULTILABEL
    train_cases = _take([c for c in ds if c.split is Split.TRAIN], cfg.max_cases, cfg.seed)
    val_cases = _take([c for c in ds if c.split is Split.VAL], cfg.max_cases, cfg.seed + 1)
    synthetic = None
    if cfg.synthetic is not None:  # synthetic images join the training split only
        from medsight.training.synthetic_data import synthetic_training_cases

        extra_cases, synthetic = synthetic_training_cases(
            cfg.synthetic, names, len(train_cases), cfg.synthetic_ratio, cfg.seed
        )
        train_cases = train_cases + extra_cases
    sample = train_cases[0].image()
    in_channels = sample.n_channels
    prep = _preprocessing(cfg, sample, in_channels)
    train = case_arrays(train_cases, prep, n_classes=n_classes, multilabel=multilabel)
    if prep.intensity is not Intensity.ZSCORE:
        # dataset-level standardisation from training data only, folded into the spec; the
        # arrays are rebuilt from the final spec so training sees exactly what inference sees
        mean, std = float(train.x.mean()), float(train.x.std()) or 1.0
        prep = _add_dataset_stats(prep, mean, std)
        train = case_arrays(train_cases, prep, n_classes=n_classes, multilabel=multilabel)
    val = case_arrays(val_cases, prep, n_classes=n_classes, multilabel=multilabel)

    n_out = n_classes
    args = (
        default_arch_args(cfg.arch, sample.spatial_ndim, in_channels, n_out, prep.size)
        | cfg.arch_args
    )
    arch = ArchitectureSpec(name=cfg.arch.lower(), args=args)
    net = build_network(arch)
    _check_input_fits(net, arch, train.x[:1])
    if cfg.init is not None:
        init_from_package(net, cfg.init)
    elif cfg.pretrained is not None:
        init_from_ssl(net, cfg.pretrained)
    fmt = channels_last_format(sample.spatial_ndim)
    net.to(device=device, memory_format=fmt)
    loss_fn = _loss_fn(task, train.y, n_classes, cfg.imbalance).to(device)
    cells, sample_w = _balance(cfg, task, train)
    if cells is not None:  # (group, label) cells replace the class-imbalance handling
        loss_fn = nn.CrossEntropyLoss(reduction="none" if sample_w is not None else "mean")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    stopper = EarlyStopping(patience=cfg.patience, mode="max")
    aug = augmentation_for(sample.modality, sample.spatial_ndim) if cfg.augment else None
    start, best_state, log, stopped = 0, None, [], False
    if cfg.resume and ckpt_path.exists():
        state = load_checkpoint(
            ckpt_path, model=net, optimizer=opt, scheduler=sched, stopper=stopper
        )
        start, best_state, log = state["epoch"] + 1, state["best_state"], state["log"]
        stopped = state["stopped"]
    model: nn.Module = net
    if dinfo.distributed:  # gradients averaged over the processes; rank 0's weights to all
        if device.type == "cuda":  # batch-norm statistics over the global batch (CUDA only)
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)  # in place: same parameters
        model = nn.parallel.DistributedDataParallel(
            net,
            device_ids=[device] if device.type == "cuda" else None,
            find_unused_parameters=cfg.freeze_epochs > 0,
        )
    if dinfo.is_main:
        (out / "config.json").write_text(cfg.model_dump_json(indent=2), encoding="utf-8")

    n = len(train)
    step = cfg.batch_size // dinfo.world  # per-process share of the global batch
    draw_offset = 1_000_003 * dinfo.rank  # other augmentation / dropout draws per process
    with _progress(cfg.progress and dinfo.is_main) as bar:
        job = bar.add_task("training", total=cfg.epochs, completed=start, info="")
        for epoch in range(start, cfg.epochs):
            if stopped:
                break
            spent = sum(r["seconds"] for r in log)
            if cfg.time_budget_s is not None and log and spent >= cfg.time_budget_s:
                break  # a wall-clock budget (architecture search): spent by the last epoch
            t0 = time.perf_counter()
            set_encoder_frozen(net, epoch < cfg.freeze_epochs)
            torch.manual_seed(cfg.seed * 100_003 + epoch + draw_offset)  # dropout
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch + draw_offset)
            order = _order(
                n, train.y, task, cfg.imbalance, np.random.default_rng([cfg.seed, epoch])
            )
            if cells is not None and cfg.balance is Balance.GROUP_SAMPLE:
                draw = int(np.random.default_rng([cfg.seed, epoch, 1]).integers(2**62))
                order = group_sample_order(cells, torch.Generator().manual_seed(draw))
            net.train()
            total, seen = 0.0, 0
            shard = epoch_shard(order, dinfo)  # the same order on every process, split
            for i in range(0, len(shard), step):
                idx = np.asarray(shard[i : i + step], dtype=np.int64)
                if len(idx) < 2:  # batch norm needs two samples (equal on every process)
                    continue
                x = torch.from_numpy(train.x[idx])
                if aug is not None:
                    x = apply_params(x, sample_params(aug, x.shape, gen))
                yb = torch.from_numpy(train.y[idx])
                yb = yb.float() if multilabel else yb
                x = x.to(device).contiguous(memory_format=fmt)
                loss = loss_fn(logits_of(model(x)), yb.to(device))
                if sample_w is not None:  # --balance reweight: per-case cell weights
                    loss = (loss * sample_w[idx].to(device)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
                if cfg.progress and (i // step) % 10 == 0:
                    bar.update(job, info=f"epoch {epoch}  loss {total / seen:.3f}")
            sched.step()
            total, seen = all_reduce_mean(total), all_reduce_mean(seen)  # over processes
            # each process predicts its share of validation; the metric is computed once, on
            # the whole set, by rank 0 and sent to all (so early stopping agrees everywhere)
            part = predict_logits(net, val.x[dinfo.rank :: dinfo.world])
            val_logits = gather_rows(part, len(val), dinfo)
            metric = broadcast(_val_metric(task, val.y, val_logits) if dinfo.is_main else 0.0)
            stopped = stopper.step(metric)
            if stopper.improved:
                best_state = {k: v.cpu().clone(memory_format=torch.contiguous_format)
                              for k, v in net.state_dict().items()}  # fmt: skip
            log.append(
                {
                    "epoch": epoch,
                    "loss": total / max(seen, 1),
                    "val_auc": metric,
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - t0,
                }
            )
            if dinfo.is_main:  # one writer; every process resumes from this file
                save_checkpoint(
                    ckpt_path,
                    model=net,
                    optimizer=opt,
                    scheduler=sched,
                    stopper=stopper,
                    epoch=epoch,
                    best_state=best_state,
                    log=log,
                    stopped=stopped,
                )
            bar.update(
                job,
                advance=1,
                info=f"loss {log[-1]['loss']:.3f}  val AUC {metric:.3f}"
                f"  best {stopper.best:.3f} @ {stopper.best_epoch}",
            )

    assert best_state is not None
    net.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors
    net.load_state_dict(best_state)
    if dinfo.is_main:  # rank 0 calibrates, validates and writes the package
        pkg = _package(
            cfg, ds, task, net, arch, prep, train, val, log, started, synthetic,
            unlabelled=n_unlabelled, aug=aug,
        )  # fmt: skip
    barrier()
    if not dinfo.is_main:
        pkg = ModelPackage.load(out / "package")
    shutdown(dinfo)
    return pkg


def _labelled_only(ds: Dataset) -> tuple[Dataset, int]:
    """The data set without the cases that have no label, and how many were left out.

    A manifest row whose label is empty or a placeholder (``todo``, ``?``; ``qc`` flags them)
    has ``label=None``: it cannot be trained on, so it is left out with a count in the log and
    in the package's training-data summary instead of stopping the run.
    """
    labelled = [c for c in ds if c.label is not None]
    n_out = len(ds) - len(labelled)
    if not labelled:
        raise InvalidInputError(f"data set {ds.name}", "no case has a label")
    if n_out:
        logging.getLogger(__name__).warning(
            "%s: %d of %d cases have no label and are left out", ds.name, n_out, len(ds)
        )
        ds = ds.with_cases(labelled)
    return ds, n_out


def _balance(
    cfg: ClassifyConfig, task: Task, train: CaseArrays
) -> tuple[NDArray[np.float64] | None, torch.Tensor | None]:
    """``(cell weights, loss weights)`` for ``cfg.balance`` (:mod:`medsight.training.balance`):
    ``(None, None)`` without balancing; loss weights only for ``reweight``."""
    if cfg.balance is Balance.NONE:
        return None, None
    if task is Task.MULTILABEL:
        raise InvalidInputError("--balance", "is for single-label tasks, not multi-label")
    groups = train.attribute(str(cfg.group))
    if all(g is None for g in groups):
        raise InvalidInputError(
            f"--group {cfg.group}", "no training case has this attribute", hint="check the name"
        )
    w = cell_weights(groups, train.y)
    if cfg.balance is Balance.REWEIGHT:
        return w, torch.tensor(w, dtype=torch.float32)
    return w, None


def _add_dataset_stats(prep: PreprocessingSpec, mean: float, std: float) -> PreprocessingSpec:
    """Fold the training mean/std into the spec so inference sees the same numbers."""
    args = dict(prep.intensity_args)
    if prep.intensity is Intensity.SCALE_0_1:
        # x/max then (.-mean)/std  ==  (x - mean*max) / (std*max): a dataset z-score
        m = args.get("max", 255.0)
        return prep.model_copy(
            update={
                "intensity": Intensity.DATASET_ZSCORE,
                "intensity_args": {"mean": mean * m, "std": std * m},
            }
        )
    if prep.intensity is Intensity.CT_WINDOW:
        old_mean = args.get("mean", (args["lower"] + args["upper"]) / 2)
        old_std = args.get("std", (args["upper"] - args["lower"]) / 2)
        args |= {"mean": old_mean + mean * old_std, "std": std * old_std}
        return prep.model_copy(update={"intensity_args": args})
    if prep.intensity is Intensity.NONE:
        return prep.model_copy(
            update={
                "intensity": Intensity.DATASET_ZSCORE,
                "intensity_args": {"mean": mean, "std": std},
            }
        )
    return prep  # ZSCORE: already zero mean, unit variance per image


def _package(
    cfg: ClassifyConfig,
    ds: Dataset,
    task: Task,
    net: nn.Module,
    arch: ArchitectureSpec,
    prep: PreprocessingSpec,
    train: CaseArrays,
    val: CaseArrays,
    log: list[dict[str, Any]],
    started: float,
    synthetic: dict[str, Any] | None = None,
    unlabelled: int = 0,
    aug: AugmentConfig | None = None,
) -> ModelPackage:
    multilabel = task is Task.MULTILABEL
    # the identity view first, then the test-time flips the training augmentation declares
    views = tta_flips(aug)
    per_view = view_logits(lambda x: predict_logits(net, x), val.x, views)
    logits = per_view[0]
    # the validation logits by case, for ensembles (medsight.training.ensemble) and audits
    ids = {"case_ids": np.asarray(val.case_ids, dtype=str),
           "patient_ids": np.asarray(val.patient_ids, dtype=str)}  # fmt: skip
    by_view = {"view_logits": per_view, "views": np.asarray([transform_name(v) for v in views])}
    np.savez(Path(cfg.out) / VAL_LOGITS_FILE, logits=logits, y=val.y, **ids,
             **(by_view if len(views) > 1 else {}))  # fmt: skip
    averaged = mean_probability_logits(per_view, multilabel=multilabel)
    tta = tta_decision(
        cfg.tta,
        views,
        without=_val_metric(task, val.y, logits),
        with_=_val_metric(task, val.y, averaged) if len(views) > 1 else None,
        decided_on=f"validation split (n={len(val)})",
    )
    if tta.enabled:  # calibration, threshold and metrics of what the package will produce
        logits = averaged
    calibration = fit_calibration(logits, val.y, task, seed=cfg.seed or 0)
    proba = calibration.probabilities(logits)
    names = [ds.label_names.get(i, str(i)) for i in range(proba.shape[1])]
    thresholds = operating_thresholds(cfg.threshold, task, val.y, proba, names)
    group_thresholds = None
    if cfg.group_thresholds:  # fitted on validation, applied only where a group is known
        from medsight.evaluation.fairness import fit_group_thresholds

        if task is not Task.BINARY:
            raise InvalidInputError("--group-thresholds", "is for binary models only")
        group_thresholds = fit_group_thresholds(
            val.y, proba[:, 1], val.attribute(str(cfg.group)), thresholds[names[1]],
            attribute=str(cfg.group), label=names[1],
        )  # fmt: skip
    metrics = validation_metrics(
        task, val.y, proba, thresholds, names, val.patient_ids, cfg.n_resamples, cfg.seed
    )
    real = _real_only(train)  # references and counts describe the real training images
    counts = Counter(
        names[k] for row in real.y for k in (np.flatnonzero(row) if multilabel else [row])
    )
    sample_mod = next(iter(ds)).image().modality
    # input statistics of the training images, for the analysis' plausibility (OOD) check
    from medsight.models.plausibility import input_statistics, reference_statistics

    reference = reference_statistics(input_statistics(x) for x in real.x)
    ood_meta, ood_file = _ood_reference(net, task, real, val)
    best = max(log, key=lambda r: r["val_auc"])
    source, license_ = _provenance(cfg, ds)
    n_synthetic = synthetic["n_used"] if synthetic else 0
    if synthetic:
        source += (
            f"; plus {n_synthetic} SYNTHETIC training images from {', '.join(synthetic['models'])}"
            f" (folder {synthetic['folder']}; none in validation)"
        )
    spec = ModelSpec(
        name=cfg.name or f"{ds.name}-{arch.name}",
        version="0.1.0",
        task=task,
        architecture=arch,
        input=InputSpec(
            modalities=[sample_mod] if sample_mod else [],
            spatial_ndim=len(prep.size or []),
            channels=train.x.shape[1],
            # trained on grey images: colour content (Doppler overlays) is outside its use
            grey_only=next(iter(ds)).image().n_channels == 1,
        ),
        preprocessing=prep,
        labels=_labels(names, cfg.label_meanings),
        thresholds=thresholds,
        group_thresholds=group_thresholds,
        temperature=calibration.params.get("temperature"),  # for temperature-only readers
        calibration=calibration.to_spec(),
        tta=tta,
        training_data=TrainingDataSummary(
            dataset=ds.name,
            source=source,
            license=license_,
            n_cases={"train": len(train) - n_synthetic, "val": len(val)}
            | ({"train_synthetic": n_synthetic} if synthetic else {})
            | ({"excluded_no_label": unlabelled} if unlabelled else {}),
            class_counts=dict(sorted(counts.items())),
            intensity_mean=float(real.x.mean()),
            intensity_std=float(real.x.std()),
            size_median=list(prep.size or []),
        ),
        metrics=metrics,
        intended_use=(
            "Research and benchmarking on low-resolution images like its training data; not "
            "for clinical decisions."
        ),
        limitations=(
            "Validation metrics are measured on the validation split that also chose the "
            "epoch, the calibration and the threshold, so they are optimistic; judge the model "
            "on a held-out test split (medsight evaluate)."
        ),
        seed=cfg.seed,
        extra={
            "best_epoch": best["epoch"],
            "epochs_run": len(log),
            "cpu_seconds": time.process_time() - started,
            "threshold_method": cfg.threshold.value,
            "init": Path(cfg.init).name if cfg.init else None,
            "pretrained": Path(cfg.pretrained).name if cfg.pretrained else None,
            "freeze_epochs": cfg.freeze_epochs,
            "input_reference": reference,
            **({"balance": _balance_record(cfg, train)} if cfg.balance is not Balance.NONE else {}),
            **({"synthetic": synthetic} if synthetic else {}),
            **({"ood": ood_meta} if ood_meta else {}),
        },
    )
    log_text = write_training_log(cfg.out, log)
    return ModelPackage.save(
        Path(cfg.out) / "package",
        spec,
        net.state_dict(),
        overwrite=True,
        extra_files={
            "training_log.csv": log_text,
            "config.json": json.dumps(
                portable_config(cfg, ("out", "init", "pretrained", "splits", "synthetic")), indent=2
            ),
            **({OOD_FILE: ood_file} if ood_file else {}),
        },
    )


def _balance_record(cfg: ClassifyConfig, train: CaseArrays) -> dict[str, Any]:
    """What ``--balance`` did, for the package: method, attribute and training cell counts."""
    return {
        "method": cfg.balance.value,
        "group": cfg.group,
        "cells": cell_counts(train.attribute(str(cfg.group)), train.y),
        "note": "(group, label) cells balanced; this replaces the --imbalance setting "
        f"({cfg.imbalance.value}); cases without the attribute form the group ''",
    }


def _real_only(arrays: CaseArrays) -> CaseArrays:
    """The rows of ``arrays`` that are not synthetic images (``attributes["synthetic"]``)."""
    keep = [i for i, a in enumerate(arrays.attributes) if not a.get("synthetic")]
    if len(keep) == len(arrays):
        return arrays
    return CaseArrays(
        x=arrays.x[keep],
        y=arrays.y[keep],
        case_ids=[arrays.case_ids[i] for i in keep],
        patient_ids=[arrays.patient_ids[i] for i in keep],
        attributes=[arrays.attributes[i] for i in keep],
    )


def _ood_reference(
    net: nn.Module, task: Task, train: CaseArrays, val: CaseArrays
) -> tuple[dict[str, Any] | None, bytes | None]:
    """The package's OOD reference: Mahalanobis on the penultimate features, fitted on the
    training images, thresholded at 5% false rejection on the validation images."""
    from medsight.inference.features import capture
    from medsight.models.ood import fit_reference

    try:
        with capture(net, "classifier") as grab:
            predict_logits(net, train.x)
            f_train = grab.vectors()
            grab.clear()
            predict_logits(net, val.x)
            f_val = grab.vectors()
        labels = None if task is Task.MULTILABEL else train.y
        ref = fit_reference(
            f_train, f_val, train_labels=labels, layer="penultimate (input of last linear)"
        )
    except InvalidInputError as err:  # too few images, or a network without a linear head
        log.warning("no OOD reference for this package: %s", err)
        return None, None
    return ref.packaged()
