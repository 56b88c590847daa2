"""``medsight train detect``: train a 2D / 3D lesion detector (RetinaNet) into a package.

A thin layer over :func:`medsight.training.detect.train_detector`; the command is registered
through the detection family (:mod:`medsight.families.builtin`), the package goes to
``OUT/package``.  ``--data`` takes a detection spec: ``mias:FOLDER``, ``coco:FILE.json``,
``voc:FOLDER`` or ``boxes:FILE.csv|json`` (:mod:`medsight.data.detection`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medsight.cli.train import LABEL_MEANING_HELP

__all__ = ["train_detect"]


def train_detect(
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Detection data spec, e.g. mias:FOLDER?classes=CIRC,SPIC,MISC&merge=mass.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Run folder; the package goes to OUT/package.")
    ],
    arch: Annotated[str, typer.Option("--arch", help="Network: retinanet.")] = "retinanet",
    splits: Annotated[
        Path | None,
        typer.Option("--splits", help="splits.json (default: patient-level splits made here)."),
    ] = None,
    size: Annotated[
        list[int] | None,
        typer.Option("--size", help="Network input size, once per axis (default: median, <=512)."),
    ] = None,
    patch_size: Annotated[
        list[int] | None,
        typer.Option(
            "--patch-size",
            help="Train on patches of this size at the images' own resolution and detect "
            "with a sliding window (large images, e.g. CT); once per axis.",
        ),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1)] = 2000,
    val_every: Annotated[int, typer.Option("--val-every", min=1)] = 200,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 4,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 1e-3,
    widths: Annotated[
        list[int] | None,
        typer.Option("--width", help="ResNet channels per layer (repeatable; default 16 32 64)."),
    ] = None,
    fp_rate: Annotated[
        float,
        typer.Option(
            "--fp-rate", help="False positives per image of the operating threshold (on val)."
        ),
    ] = 1.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:i].")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    max_cases: Annotated[
        int | None, typer.Option("--max-cases", min=2, help="Cap cases per split (smoke tests).")
    ] = None,
    modality: Annotated[
        str | None, typer.Option("--modality", help="MG, CT ... when the data does not say.")
    ] = None,
    label_meaning: Annotated[
        list[str] | None, typer.Option("--label-meaning", help=LABEL_MEANING_HELP)
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT/checkpoint.pt.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Package name.")] = None,
) -> None:
    """Train a lesion detector (MONAI RetinaNet, ATSS matching, hard negative sampling)."""
    from medsight.core.errors import InvalidInputError
    from medsight.training.detect import DetectConfig, train_detector

    meanings: dict[str, str] = {}
    for item in label_meaning or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError("--label-meaning", f"{item!r} is not NAME=MEANING")
        meanings[key.strip()] = value.strip()
    options: dict[str, object] = {}
    if widths:
        options["block_inplanes"] = widths
    try:
        cfg = DetectConfig(
            data=data,
            out=out,
            arch=arch,
            splits=splits,
            size=size or None,
            patch_size=patch_size or None,
            steps=steps,
            val_every=val_every,
            batch_size=batch_size,
            lr=lr,
            threshold_fp_rate=fp_rate,
            seed=seed,
            device=device,
            threads=threads,
            max_cases=max_cases,
            modality=modality,
            label_meanings=meanings,
            resume=resume,
            name=name,
            **options,  # type: ignore[arg-type]
        )
    except ValueError as exc:  # pydantic: name the option
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
        where = ".".join(str(p) for p in first["loc"]) or "options"
        raise InvalidInputError(f"--{where.replace('_', '-')}", first["msg"]) from None
    pkg = train_detector(cfg, log=typer.echo)
    got = {m.name: m.value for m in pkg.spec.metrics}
    typer.echo(
        f"wrote {pkg.path} ({pkg.id}); validation CPM {got['cpm']:.3f}, sensitivity "
        f"{got['sensitivity@1fp']:.3f} at 1 FP/image; threshold "
        f"{pkg.spec.thresholds['score']:.3f}"
    )
