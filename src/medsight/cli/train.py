"""``medsight train``: a sub-app with one command per task family plus ``pretrain``.

Each family registered in :mod:`medsight.families` names its command (``classify`` here,
``segment`` in :mod:`medsight.cli.segment`); :func:`register` adds them all, so a new family's
trainer appears here by its registration alone.  The runners live in :mod:`medsight.training`;
the commands only parse options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medsight.core import Split
from medsight.training.config import Balance, ClassifyConfig, Imbalance, ThresholdMethod, TTAMode

__all__ = ["SSL_ENCODER_FILE", "register", "train_app"]

#: The encoder checkpoint ``medsight train pretrain`` writes into its ``--out`` folder.
SSL_ENCODER_FILE = "encoder.pt"

LABEL_MEANING_HELP = (
    "NAME=MEANING, repeatable: what a label means clinically (normal, benign, anatomy, "
    "indeterminate, actionable[:routine|urgent|stat]), e.g. 'malignant=actionable:urgent'. "
    "Labels left out are 'not stated' and shown on the worklist as of unknown significance."
)

train_app = typer.Typer(
    help="Train a model and write a ModelPackage.", no_args_is_help=True, add_completion=False
)


def classify(
    data: Annotated[str, typer.Option("--data", help="Data set spec, e.g. medmnist:PATH.npz.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder; package in OUT/package.")],
    arch: Annotated[
        str,
        typer.Option(
            "--arch",
            help="Network registry name, or 'auto': chosen among --candidates by validation "
            "AUC, each trained for an equal share of --budget-minutes.",
        ),
    ] = "smallcnn",
    splits: Annotated[
        Path | None, typer.Option("--splits", help="splits.json from `medsight split`.")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Maximum epochs.")] = 40,
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", min=2, help="Train this many seeds; write ONE ensemble package."),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option(
            "--folds",
            min=2,
            help="K-fold ensemble on train+val (patient-grouped, stratified); threshold on the "
            "pooled out-of-fold predictions.",
        ),
    ] = None,
    budget_minutes: Annotated[
        float, typer.Option("--budget-minutes", min=0.01, help="--arch auto: search budget.")
    ] = 10.0,
    candidates: Annotated[
        str,
        typer.Option("--candidates", help="--arch auto: comma-separated registry names."),
    ] = "smallcnn,resnet18,densenet121,efficientnet,vit",
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed (the run is deterministic).")
    ] = 0,
    init: Annotated[
        Path | None, typer.Option("--init", help="Start from this ModelPackage's weights.")
    ] = None,
    pretrained: Annotated[
        Path | None,
        typer.Option("--pretrained", help="Start from a self-supervised encoder checkpoint."),
    ] = None,
    freeze_epochs: Annotated[
        int, typer.Option("--freeze-epochs", min=0, help="Epochs with the encoder frozen.")
    ] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT/checkpoint.pt.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 2e-3,
    patience: Annotated[
        int, typer.Option("--patience", min=1, help="Early stopping on the validation AUC.")
    ] = 10,
    imbalance: Annotated[Imbalance, typer.Option("--imbalance")] = Imbalance.WEIGHTED_LOSS,
    threshold: Annotated[ThresholdMethod, typer.Option("--threshold")] = ThresholdMethod.YOUDEN,
    no_augment: Annotated[bool, typer.Option("--no-augment")] = False,
    tta: Annotated[
        TTAMode,
        typer.Option(
            "--tta",
            help="Test-time flips (those the modality's training augmentation uses): auto = "
            "only if they raise the validation AUC by more than 0.002; on; off.",
        ),
    ] = TTAMode.AUTO,
    max_cases: Annotated[
        int | None, typer.Option("--max-cases", min=2, help="Cap cases per split (smoke tests).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:i].")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    name: Annotated[str | None, typer.Option("--name", help="Package name.")] = None,
    license: Annotated[
        str | None, typer.Option("--license", help="License of the training data.")
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
    label_meaning: Annotated[
        list[str] | None, typer.Option("--label-meaning", help=LABEL_MEANING_HELP)
    ] = None,
    synthetic: Annotated[
        Path | None,
        typer.Option("--synthetic", help="Folder from `medsight synthesize`: training split only."),
    ] = None,
    synthetic_ratio: Annotated[
        float, typer.Option("--synthetic-ratio", min=0.0, help="Synthetic per real training image.")
    ] = 0.5,
    group: Annotated[
        str | None,
        typer.Option("--group", help="Case attribute for --balance / --group-thresholds."),
    ] = None,
    balance: Annotated[
        Balance,
        typer.Option(
            "--balance",
            help="Balance the (group, label) cells of --group: reweight the loss, or "
            "group-sample (WeightedRandomSampler). Default none: a measured trade-off, not a "
            "default (see benchmarks/fairness_mitigation.py).",
        ),
    ] = Balance.NONE,
    group_thresholds: Annotated[
        bool,
        typer.Option(
            "--group-thresholds",
            help="Binary: fit per-group thresholds for equal sensitivity on validation; used "
            "only where a case's --group value is known.",
        ),
    ] = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            help="Data-parallel processes on this node (torchrun; gloo on CPU, one GPU each "
            "on CUDA). --batch-size stays the global batch, split over the processes.",
        ),
    ] = 1,
    nnodes: Annotated[
        str, typer.Option("--nnodes", help="torchrun --nnodes (needs --rdzv-endpoint).")
    ] = "1",
    node_rank: Annotated[
        int | None, typer.Option("--node-rank", help="torchrun --node-rank.")
    ] = None,
    rdzv_endpoint: Annotated[
        str | None, typer.Option("--rdzv-endpoint", help="torchrun rendezvous HOST:PORT.")
    ] = None,
    rdzv_backend: Annotated[
        str | None, typer.Option("--rdzv-backend", help="torchrun rendezvous backend (c10d).")
    ] = None,
    rdzv_id: Annotated[str | None, typer.Option("--rdzv-id", help="torchrun job id.")] = None,
) -> None:
    """Train a classifier (2D/3D; binary, multi-class, ordinal, multi-label).

    With ``--nproc N`` (or ``--nnodes``) the command re-launches itself under torchrun
    (``python -m torch.distributed.run``); ``torchrun -m medsight.cli.app train classify ...``
    works as well.  Rank 0 writes the run folder; rerun with ``--resume`` after a failure.
    """
    from medsight.core.errors import InvalidInputError
    from medsight.core.significance import parse_label_meanings
    from medsight.training.classification import train_classifier
    from medsight.training.config import ClassifyConfig

    if (balance is not Balance.NONE or group_thresholds) and not group:
        raise InvalidInputError("--balance / --group-thresholds", "need --group COLUMN")
    cfg = ClassifyConfig(
        data=data,
        out=out,
        arch=arch,
        splits=splits,
        epochs=epochs,
        seed=seed,
        init=init,
        pretrained=pretrained,
        freeze_epochs=freeze_epochs,
        resume=resume,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        imbalance=imbalance,
        threshold=threshold,
        augment=not no_augment,
        tta=tta,
        max_cases=max_cases,
        device=device,
        threads=threads,
        name=name,
        license=license,
        progress=not no_progress,
        label_meanings=parse_label_meanings(label_meaning or []),
        synthetic=synthetic,
        synthetic_ratio=synthetic_ratio,
        group=group,
        balance=balance,
        group_thresholds=group_thresholds,
    )
    from medsight.training import distributed

    if arch.lower() == "auto" or seeds or folds:
        if nproc > 1 or nnodes != "1":
            raise InvalidInputError("--nproc / --nnodes", "not with --arch auto, --seeds, --folds")
        _search_and_ensemble(cfg, budget_minutes, candidates, seeds, folds)
        return
    if (nproc > 1 or nnodes != "1") and not distributed.under_torchrun():
        import subprocess

        from medsight.models.package import ModelPackage

        cmd = distributed.launch_command(
            ["-m", "medsight.cli.train", cfg.model_dump_json()],
            nproc,
            nnodes=nnodes,
            node_rank=node_rank,
            rdzv_endpoint=rdzv_endpoint,
            rdzv_backend=rdzv_backend,
            rdzv_id=rdzv_id,
        )
        code = subprocess.run(cmd, check=False).returncode
        if code:
            typer.echo(f"torchrun failed (exit {code}); rerun with --resume to continue", err=True)
            raise typer.Exit(code)
        if not (out / "package").is_dir():  # another node held rank 0
            return
        pkg = ModelPackage.load(out / "package")
    else:
        pkg = train_classifier(cfg)
        if not distributed.is_main():
            return
    summary = ", ".join(
        f"{m.name} {m.value:.3f}"
        for m in pkg.spec.metrics
        if m.name in {"auc", "auc_macro", "accuracy"}
    )
    typer.echo(f"wrote {pkg.path} ({pkg.id}); validation {summary}")
    _echo_tta(pkg)


@train_app.command("pretrain")
def pretrain(
    data: Annotated[
        list[str],
        typer.Option("--data", help="Data set spec (repeatable); only images are read."),
    ],
    out: Annotated[Path, typer.Option("--out", help=f"Run folder; gets {SSL_ENCODER_FILE}.")],
    arch: Annotated[str, typer.Option("--arch", help="Network registry name.")] = "smallcnn",
    arch_args: Annotated[
        str | None,
        typer.Option("--arch-args", help="JSON object of extra network arguments."),
    ] = None,
    split: Annotated[
        list[Split] | None,
        typer.Option("--split", help="Splits whose images are used (default train and val)."),
    ] = None,
    size: Annotated[
        list[int] | None,
        typer.Option("--size", help="Input size, once per axis (default: the first image's)."),
    ] = None,
    channels: Annotated[int, typer.Option("--channels", min=1)] = 1,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 30,
    batch_size: Annotated[int, typer.Option("--batch-size", min=4)] = 128,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 1e-3,
    temperature: Annotated[
        float, typer.Option("--temperature", help="NT-Xent temperature (> 0).")
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    max_cases: Annotated[
        int | None, typer.Option("--max-cases", min=1, help="Cap images per data set.")
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
) -> None:
    """Self-supervised (SimCLR) pre-training of an encoder for `train classify --pretrained`."""
    import json

    from medsight.core.errors import InvalidInputError
    from medsight.training.ssl import SSLConfig
    from medsight.training.ssl import pretrain as run_pretrain

    if temperature <= 0:
        raise InvalidInputError("--temperature", f"must be > 0, got {temperature}")
    extra: dict[str, object] = {}
    if arch_args is not None:
        try:
            extra = json.loads(arch_args)
        except ValueError as exc:
            raise InvalidInputError("--arch-args", f"is not JSON ({exc})") from None
        if not isinstance(extra, dict):
            raise InvalidInputError("--arch-args", "must be a JSON object")
    cfg = SSLConfig(
        data=data,
        out=out / SSL_ENCODER_FILE,
        splits=split or [Split.TRAIN, Split.VAL],
        arch=arch,
        arch_args=extra,
        size=size,
        channels=channels,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        temperature=temperature,
        seed=seed,
        max_cases=max_cases,
        threads=threads,
    )

    def progress(row: dict[str, float]) -> None:
        typer.echo(
            f"epoch {int(row['epoch']) + 1}/{epochs}: loss {row['loss']:.4f} "
            f"({row['seconds']:.1f} s)"
        )

    path = run_pretrain(cfg, on_epoch=progress)
    typer.echo(f"wrote {path}; use it with `medsight train classify --pretrained {path}`")


def _search_and_ensemble(
    cfg: ClassifyConfig,
    budget_minutes: float,
    candidates: str,
    seeds: int | None,
    folds: int | None,
) -> None:
    """``--arch auto`` and / or ``--seeds`` / ``--folds``: search, then train, then record."""
    from medsight.training.arch_search import choose_architecture, record_in_package
    from medsight.training.classification import train_classifier
    from medsight.training.ensemble import train_ensemble

    record = None
    if cfg.arch.lower() == "auto":
        names = [c.strip() for c in candidates.split(",") if c.strip()]
        chosen, record = choose_architecture(cfg, budget_minutes, names)
        for s in record["candidates"]:
            score = f"{s['val_auc']:.4f}" if s["val_auc"] is not None else f"skipped ({s['note']})"
            typer.echo(f"candidate {s['arch']}: validation AUC {score}")
        typer.echo(f"chosen architecture: {chosen} ({record['criterion']})")
        cfg = cfg.model_copy(update={"arch": chosen})
    ensemble = bool(seeds or folds)
    pkg = train_ensemble(cfg, seeds=seeds, folds=folds) if ensemble else train_classifier(cfg)
    if record is not None:
        pkg = record_in_package(pkg, "arch_search", record)
    summary = ", ".join(
        f"{m.name} {m.value:.3f}" for m in pkg.spec.metrics if m.name in {"auc", "auc_macro"}
    )
    kind = f" ({pkg.spec.ensemble.method} ensemble)" if pkg.spec.ensemble else ""
    typer.echo(f"wrote {pkg.path} ({pkg.id}){kind}; validation {summary}")
    _echo_tta(pkg)


def _echo_tta(pkg: Any) -> None:
    """One line on the package's test-time augmentation choice (``--tta``)."""
    tta = pkg.spec.tta
    if tta is None:
        return
    state = f"on ({', '.join(tta.transforms)})" if tta.enabled else "off"
    typer.echo(f"test-time augmentation: {state}; {tta.reason}")


def register(app: typer.Typer) -> None:
    """Add the ``train`` sub-app, with every registered family's command, to ``app``."""
    from medsight.families import all_families

    have = {c.name for c in train_app.registered_commands}
    for family in all_families():
        if family.cli_name not in have:
            train_app.command(family.cli_name)(family.load("command"))
    app.add_typer(train_app, name="train")


def _worker(argv: list[str]) -> None:
    """torchrun's entry for ``--nproc``: one process of ``train classify`` (config JSON)."""
    from medsight.training.classification import train_classifier
    from medsight.training.config import ClassifyConfig

    train_classifier(ClassifyConfig.model_validate_json(argv[0]))


if __name__ == "__main__":
    import sys

    _worker(sys.argv[1:])
