"""Risk training: image + record (one visit or a sequence) -> a binary or time-to-event model.

The run folder (``RiskConfig.out``) holds, stage by stage::

    config.json        the typed config of the run
    timelines.json     patients, visits and what was left out (rows / patients without target)
    embeddings.npz     the frozen encoder's embedding of every image (computed once, reused)
    splits.json        patient ids per part (patient-level, stratified by outcome, seeded)
    training_log.csv   epoch, loss, validation AUC / C-index
    package/           the ModelPackage (RiskNet with its encoder, clinical encoding, card)

The image encoder is a frozen classifier package (default: the zoo's PneumoniaMNIST
classifier, a chest X-ray model; or any classification package, e.g. one fine-tuned from an
SSL encoder of :mod:`medsight.training.ssl`); its penultimate features are the embeddings.
Training is full-batch AdamW on the (small) patient set (binary: BCE loss; time-to-event: Cox
partial likelihood with Breslow ties, :func:`medsight.models.survival.cox_ph_loss`) with early
stopping on the validation loss by default (``stop_on="metric"``: on the validation AUC /
C-index instead; with a handful of validation events the rank metric is a step function of
few pairs and often picks an untrained early epoch, the loss is smoother).  A binary model's
scores are then calibrated on validation
(:func:`~medsight.evaluation.calibration.fit_calibration`) and its validation metrics get
patient-level bootstrap CIs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medsight.core import Case
from medsight.core.errors import InvalidInputError
from medsight.data import Dataset, SplitConfig, load_dataset, make_splits
from medsight.data.timeline import TimelineSet, timelines_from_dataset
from medsight.evaluation.calibration import fit_calibration
from medsight.evaluation.risk import discrimination, outcome_metrics
from medsight.inference.risk import RiskBatch, image_embeddings, visit_arrays
from medsight.io.atomic import write_text_atomic
from medsight.models.clinical_encoding import ClinicalEncoder
from medsight.models.fusion import ARCHS, SEQUENCE_ARCHS, RiskNet
from medsight.models.package import ModelPackage
from medsight.models.spec import (
    ArchitectureSpec,
    InputSpec,
    LabelSpec,
    MetricValue,
    ModelSpec,
    PreprocessingSpec,
    Task,
    TrainingDataSummary,
)
from medsight.training.common import portable_config, seed_everything, write_training_log

__all__ = ["DEFAULT_ENCODER", "RiskConfig", "fit_risk_net", "train_risk"]

#: The zoo package whose penultimate features embed chest X-rays by default.
DEFAULT_ENCODER = "pneumoniamnist-smallcnn"


class RiskConfig(BaseModel):
    """Everything that defines a risk training run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: str  # data set spec, e.g. "csv:../shared/data/covid_cxr/metadata.csv"
    out: Path
    target: str | None = None  # binary outcome column
    features: list[str] = Field(default_factory=list)  # "age", "sex:categorical" ...
    time: str | None = None  # time-to-event: days to event / censoring column
    event: str | None = None  # time-to-event: event indicator column
    positive: str | None = None  # the target's (event's) value meaning 1; default Y/yes/1/true
    time_column: str | None = "offset"  # visit times (day offsets or dates)
    arch: str = "late"
    encoder: str = DEFAULT_ENCODER  # zoo package name or package folder
    max_visits: int | None = Field(None, ge=1)  # default: 1 (single-visit), 8 (sequence)
    hidden: int = Field(16, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    epochs: int = Field(300, ge=1)
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    patience: int = Field(40, ge=1)
    stop_on: str = Field("loss", pattern="^(loss|metric)$")  # early stopping on val loss / AUC
    seed: int = 0
    split_seed: int | None = None  # default: seed
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)
    n_resamples: int = Field(1000, ge=10)
    threads: int | None = Field(None, ge=1)
    name: str | None = None
    license: str | None = None
    embeddings: Path | None = None  # embedding cache; default OUT/embeddings.npz

    @model_validator(mode="after")
    def _outcome(self) -> RiskConfig:
        if self.arch not in ARCHS:
            raise ValueError(f"arch {self.arch!r} is not one of {', '.join(ARCHS)}")
        if (self.time is None) != (self.event is None):
            raise ValueError("a time-to-event outcome needs both time and event")
        if self.target is None and self.event is None:
            raise ValueError("give target (binary) or time and event (time-to-event)")
        if self.target is not None and self.event is not None:
            raise ValueError("give either target or time and event, not both")
        return self

    @property
    def survival(self) -> bool:
        """Whether the outcome is time-to-event."""
        return self.event is not None

    @property
    def visits(self) -> int:
        """How many of the latest visits the model reads."""
        return self.max_visits or (8 if self.arch in SEQUENCE_ARCHS else 1)


def _encoder_package(name: str) -> ModelPackage:
    path = Path(name)
    if path.is_dir():
        return ModelPackage.load(path)
    from medsight.models.zoo import zoo_folders

    for folder in zoo_folders():  # load only the one named (verifying every package is slow)
        if (folder / name / "model.json").is_file():
            return ModelPackage.load(folder / name)
    raise InvalidInputError(
        f"--encoder {name!r}",
        "is neither a package folder nor a zoo package",
        hint=f"e.g. {DEFAULT_ENCODER}",
    )


def _split(timelines: TimelineSet, cfg: RiskConfig) -> dict[str, list[str]]:
    """Patient ids per part: patient-level, stratified by the outcome, seeded."""
    cases = [
        Case(
            t.patient_id,
            patient_id=t.patient_id,
            label=int(t.outcome.event if cfg.survival else t.outcome.label or 0),
        )
        for t in timelines
    ]
    seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    splits = make_splits(
        Dataset(timelines.name, cases),
        SplitConfig(val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=seed),
    )
    return {
        "train": sorted(splits.folds[0].train),
        "val": sorted(splits.folds[0].val),
        "test": sorted(splits.test),
    }


def _tensors(batch: RiskBatch) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(batch.emb),
        torch.from_numpy(batch.clin),
        torch.from_numpy(batch.gaps),
        torch.from_numpy(batch.mask),
    )


def _loss(score: torch.Tensor, batch: RiskBatch, survival: bool) -> torch.Tensor:
    if survival:
        from medsight.models.survival import cox_ph_loss

        return cox_ph_loss(score, torch.from_numpy(batch.time), torch.from_numpy(batch.event))
    y = torch.from_numpy(batch.label).to(score.dtype)
    return torch.nn.functional.binary_cross_entropy_with_logits(score, y)


def _safe_metric(batch: RiskBatch, score: np.ndarray, survival: bool) -> float:
    try:
        return discrimination(batch, score, survival)
    except (InvalidInputError, ValueError):
        return float("nan")


def fit_risk_net(
    net: RiskNet,
    train: RiskBatch,
    val: RiskBatch,
    cfg: RiskConfig,
    log: Callable[[str], Any] | None = None,
) -> list[dict[str, float]]:
    """Full-batch training with early stopping on validation; the best weights are restored."""
    survival = cfg.survival
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, xv = _tensors(train), _tensors(val)
    best, best_state, since, history = -np.inf, None, 0, []
    on_loss = cfg.stop_on == "loss"
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        net.train()
        if net.encoder is not None:
            net.encoder.eval()
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout
        loss = _loss(net(*xt), train, survival)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        net.eval()
        with torch.no_grad():
            val_score = net(*xv)
            val_loss = float(_loss(val_score, val, survival))
            metric = _safe_metric(val, val_score.numpy().astype(np.float64), survival)
        history.append(
            {
                "epoch": epoch,
                "loss": float(loss.detach()),
                "val_loss": val_loss,
                "val_metric": metric,
                "seconds": time.perf_counter() - t0,
            }
        )
        watched = -val_loss if on_loss else metric
        if np.isfinite(watched) and watched > best + 1e-6:
            best, since = watched, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            since += 1
        if log is not None and (epoch % 50 == 0 or epoch == cfg.epochs - 1):
            log(
                f"epoch {epoch}: loss {float(loss.detach()):.4f}, val loss {val_loss:.4f}, val "
                f"{'C-index' if survival else 'AUC'} {metric:.3f}"
            )
        if since >= cfg.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return history


def train_risk(cfg: RiskConfig, log: Callable[[str], Any] | None = print) -> ModelPackage:
    """Build timelines, embed images once, split by patient, train, calibrate, package.

    Returns
    -------
    ModelPackage
        ``cfg.out / "package"``, verified.

    Raises
    ------
    InvalidInputError
        Unknown columns, no patient with an outcome, an encoder that is not a classifier.
    """
    started = time.process_time()
    say = log or (lambda _msg: None)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    ds = load_dataset(cfg.data)
    timelines = timelines_from_dataset(
        ds,
        target=cfg.target,
        features=cfg.features,
        time_column=cfg.time_column,
        event=cfg.event,
        event_time=cfg.time,
        positive=cfg.positive,
    )
    summary = timelines.summary()
    say(
        f"{summary['patients']} patients, {summary['visits']} visits with the outcome; left out "
        f"for lack of it: {summary['excluded'] or 'none'}"
    )
    write_text_atomic(out / "config.json", cfg.model_dump_json(indent=2))
    write_text_atomic(
        out / "timelines.json",
        json.dumps(summary | {"patients_ids": [t.patient_id for t in timelines]}, indent=1),
    )
    uses_images = cfg.arch != "clinical"
    encoder = _encoder_package(cfg.encoder) if uses_images else None
    if encoder is not None and encoder.spec.task not in (
        Task.BINARY,
        Task.MULTICLASS,
        Task.ORDINAL,
        Task.MULTILABEL,
    ):
        raise InvalidInputError(f"--encoder {cfg.encoder}", "is not a classification package")
    embeddings = None
    if encoder is not None:
        visits = [v for t in timelines for v in t.visits[-cfg.visits :]]
        say(f"embedding {len(visits)} images with {encoder.id} (cached)")
        embeddings = image_embeddings(
            encoder, visits, cache=cfg.embeddings or out / "embeddings.npz"
        )
    parts = _split(timelines, cfg)
    write_text_atomic(out / "splits.json", json.dumps(parts, indent=1))
    train_tl = list(timelines.subset(parts["train"]))
    val_tl = list(timelines.subset(parts["val"]))
    kinds = [(v.name, v.kind.value) for v in timelines.variables]
    records = [v.values for t in train_tl for v in t.visits[-cfg.visits :]]
    clinical = ClinicalEncoder.fit(records, kinds)
    train = visit_arrays(train_tl, clinical, embeddings, max_visits=cfg.visits)
    val = visit_arrays(val_tl, clinical, embeddings, max_visits=cfg.visits)
    if cfg.survival and (np.nansum(train.event) == 0 or np.nansum(val.event) == 0):
        raise InvalidInputError("outcome", "the training or validation part has no event")
    embed_dim = train.emb.shape[-1]
    args: dict[str, Any] = {
        "arch": cfg.arch,
        "embed_dim": int(embed_dim),
        "clin_dim": len(clinical.columns),
        "hidden": cfg.hidden,
        "dropout": cfg.dropout,
        "encoder": encoder.spec.architecture.model_dump(mode="json") if encoder else None,
    }
    net = RiskNet(**args)
    if encoder is not None and net.encoder is not None:
        net.encoder.load_state_dict(encoder.state_dict())
    valid = train.emb[train.mask]
    net.set_embedding_stats(torch.from_numpy(valid.mean(0)), torch.from_numpy(valid.std(0)))
    history = fit_risk_net(net, train, val, cfg, say)
    return _package(
        cfg, ds, timelines, parts, net, args, clinical, encoder, train, val, history, started, say
    )


def _package(
    cfg: RiskConfig,
    ds: Dataset,
    timelines: TimelineSet,
    parts: dict[str, list[str]],
    net: RiskNet,
    args: dict[str, Any],
    clinical: ClinicalEncoder,
    encoder: ModelPackage | None,
    train: RiskBatch,
    val: RiskBatch,
    history: list[dict[str, float]],
    started: float,
    say: Callable[[str], Any],
) -> ModelPackage:
    with torch.no_grad():
        val_scores = net(*_tensors(val)).numpy().astype(np.float64)
    target = cfg.target or str(cfg.event)
    outcome_name = f"{target}={cfg.positive}" if cfg.positive else target
    calibration = None
    thresholds: dict[str, float] = {}
    if cfg.survival:
        labels = [LabelSpec(index=0, name=outcome_name)]
        prediction = val_scores
    else:
        labels = [
            LabelSpec(index=0, name=f"not {outcome_name}"),
            LabelSpec(index=1, name=outcome_name),
        ]
        logits = np.stack([np.zeros_like(val_scores), val_scores], axis=1)
        cal = fit_calibration(logits, val.label.astype(np.int64), Task.BINARY, seed=cfg.seed)
        calibration = cal.to_spec()
        prediction = cal.probabilities(logits)[:, 1]
    found = outcome_metrics(
        val, prediction, cfg.survival, n_resamples=cfg.n_resamples, seed=cfg.seed
    )
    metrics = [
        MetricValue(
            name=name,
            value=m["value"],
            ci_low=m.get("ci_low"),
            ci_high=m.get("ci_high"),
            split="val",
            n=m.get("n"),
        )
        for name, m in found.items()
        if m.get("value") is not None
    ]
    main = metrics[0] if metrics else None
    if main is not None:
        say(
            f"validation {main.name} {main.value:.3f} ({main.ci_low} to {main.ci_high}), "
            f"{len(val)} patients"
        )
    summary = timelines.summary()
    n_cases = {"train": len(train), "val": len(val), "test": len(parts["test"])}
    n_cases |= {f"excluded_{k}": v for k, v in summary["excluded"].items()}
    outcome_counts = (
        {
            "events": int(np.nansum(train.event)),
            "censored": int(len(train) - np.nansum(train.event)),
        }
        if cfg.survival
        else {
            outcome_name: int(train.label.sum()),
            f"not {outcome_name}": int(len(train) - train.label.sum()),
        }
    )
    enc_spec = encoder.spec if encoder is not None else None
    name = cfg.name or re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{ds.name}-{target}-{cfg.arch}")
    key = "val_loss" if cfg.stop_on == "loss" else "val_metric"
    sign = -1.0 if cfg.stop_on == "loss" else 1.0
    best = max(
        (h for h in history if np.isfinite(h[key])),
        key=lambda h: sign * h[key],
        default=history[-1],
    )
    spec = ModelSpec(
        name=name,
        version="0.1.0",
        task=Task.RISK,
        architecture=ArchitectureSpec(name="risk_fusion", args=args),
        input=enc_spec.input if enc_spec else InputSpec(spatial_ndim=2),
        preprocessing=enc_spec.preprocessing if enc_spec else PreprocessingSpec(),
        labels=labels,
        thresholds=thresholds,
        calibration=calibration,
        training_data=TrainingDataSummary(
            dataset=ds.name,
            source=f"{cfg.data.split(':', 1)[0]} adapter (patient-level generated splits)"
            + (f"; {ds.source}" if ds.source else ""),
            license=cfg.license or ds.license,
            n_cases=n_cases,
            class_counts=outcome_counts,
        ),
        metrics=metrics,
        intended_use=(
            "Research on outcome prediction from chest images plus a few clinical variables; "
            "not for clinical decisions."
        ),
        limitations=(
            "Trained on a small set of patients; validation metrics come from the split that "
            "also chose the epoch and the calibration, so they are optimistic. Judge the model "
            "on its test split (medsight evaluate) and on external data before any use."
        ),
        seed=cfg.seed,
        extra={
            "risk": {
                "target": cfg.target,
                "positive": cfg.positive,
                "event": cfg.event,
                "event_time": cfg.time,
                "survival": cfg.survival,
                "time_column": cfg.time_column,
                "max_visits": cfg.visits,
                "variables": [v.to_dict() for v in timelines.variables],
                "clinical_encoding": clinical.to_dict(),
                "encoder": {"id": encoder.id, "sha256": encoder.sha256} if encoder else None,
                "excluded": summary["excluded"],
            },
            "best_epoch": best["epoch"],
            "epochs_run": len(history),
            "cpu_seconds": time.process_time() - started,
        },
    )
    log_text = write_training_log(cfg.out, history)
    return ModelPackage.save(
        Path(cfg.out) / "package",
        spec,
        net.state_dict(),
        overwrite=True,
        extra_files={
            "training_log.csv": log_text,
            "splits.json": json.dumps(parts, indent=1),
            "config.json": json.dumps(portable_config(cfg, ("out", "embeddings")), indent=2),
        },
    )
