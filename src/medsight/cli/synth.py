"""``medsight train synth`` and ``medsight synthesize``: train a generator, write synthetic sets.

``medsight train synth --data SPEC --out DIR`` is a thin layer over
:func:`medsight.training.synth.train_synthesizer` (the package goes to ``DIR/package``).
``medsight synthesize PKG --n N --label L --out DIR`` samples with
:class:`medsight.inference.synth.Synthesizer` and writes ``DIR/<label>/<model>-<label>-s<seed>-
<i>.png`` (the image-folder layout, ``folder:DIR``) plus ``DIR/synthetic.json`` with each
image's provenance (:mod:`medsight.data.synthetic`), so ``folder:DIR`` reads back as cases
marked ``synthetic``.  Repeated calls (other labels, other seeds) add to the same folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "synthesize", "train_synth"]


def train_synth(
    data: Annotated[str, typer.Option("--data", help="Data set spec, e.g. medmnist:PATH.npz.")],
    out: Annotated[
        Path, typer.Option("--out", help="Run folder; the package goes to OUT/package.")
    ],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="ddpm: class-conditional diffusion (DDIM sampling); gan: class-conditional GAN "
            "(MONAI Generator + PatchDiscriminator, LSGAN; one forward pass per image).",
        ),
    ] = "ddpm",
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimisation steps.")] = 3000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = 64,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 2e-4,
    size: Annotated[
        list[int] | None,
        typer.Option("--size", help="Image size, once per axis (default: the images' own)."),
    ] = None,
    widths: Annotated[
        list[int] | None, typer.Option("--width", help="U-Net channels per level (repeatable).")
    ] = None,
    timesteps: Annotated[
        int, typer.Option("--timesteps", min=10, help="DDPM noise schedule length.")
    ] = 1000,
    val_every: Annotated[int, typer.Option("--val-every", min=1)] = 250,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    max_cases: Annotated[
        int | None, typer.Option("--max-cases", min=2, help="Cap cases per split (smoke tests).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT/checkpoint.pt.")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:i].")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    name: Annotated[str | None, typer.Option("--name", help="Package name.")] = None,
    license: Annotated[
        str | None, typer.Option("--license", help="License of the training data.")
    ] = None,
) -> None:
    """Train a class-conditional 2D image generator (DDPM or GAN); write a synthesis package."""
    from medsight.core.errors import InvalidInputError
    from medsight.training.synth import SynthConfig, SynthMethod, train_synthesizer

    if method.lower() not in {m.value for m in SynthMethod}:
        raise InvalidInputError("--method", f"{method!r} is not one of: ddpm, gan")
    cfg = SynthConfig(
        data=data,
        out=out,
        method=SynthMethod(method.lower()),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        size=size or None,
        timesteps=timesteps,
        val_every=val_every,
        seed=seed,
        max_cases=max_cases,
        resume=resume,
        device=device,
        threads=threads,
        name=name,
        license=license,
        **({"widths": widths} if widths else {}),
    )
    pkg = train_synthesizer(cfg, log=typer.echo)
    typer.echo(f"wrote {pkg.path} ({pkg.id}); sample with `medsight synthesize {pkg.path}`")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "label"


def synthesize(
    model: Annotated[Path, typer.Argument(help="Synthesis package (or its training run folder).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Images to generate.")],
    label: Annotated[str, typer.Option("--label", help="Class name (or index) to generate.")],
    out: Annotated[Path, typer.Option("--out", help="Folder (image-folder layout) to add to.")],
    seed: Annotated[int, typer.Option("--seed")] = 0,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            min=1,
            help="DDIM sampling steps (DDPM; default 50, at most the schedule's --timesteps).",
        ),
    ] = None,
    guidance: Annotated[
        float, typer.Option("--guidance", help="DDPM classifier-free guidance scale (1: none).")
    ] = 1.0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:i].")] = "cpu",
) -> None:
    """Generate synthetic images of one class into a folder the `folder:` adapter reads."""
    from medsight.cli.evaluate import open_package
    from medsight.core.errors import InvalidInputError
    from medsight.data.synthetic import add_provenance
    from medsight.inference.synth import Synthesizer
    from medsight.io.raster import write_png

    pkg = open_package(model)
    synth = Synthesizer(pkg, device=device)
    index = synth.label_index(label)
    name = synth.labels[index]
    images = synth.sample(n, index, seed=seed, steps=steps, guidance=guidance)
    if images[0].array.dtype.kind == "f":
        raise InvalidInputError(
            f"model {pkg.id}", "generates floating-point images, which PNG cannot hold"
        )
    folder = out / name
    rels: dict[str, dict[str, object]] = {}
    for img in images:
        file = f"{_safe(pkg.spec.name)}-{_safe(name)}-s{seed}-{img.meta['index']:04d}.png"
        rels[f"{name}/{file}"] = {
            k: img.meta[k] for k in ("seed", "index", "label", "label_index", "steps", "guidance")
        }
    if any((out / rel).exists() for rel in rels):
        raise InvalidInputError(
            out, f"already holds images of {name!r} with seed {seed}",
            hint="choose another --seed or another --out",
        )  # fmt: skip
    # provenance first: a folder never holds an image its synthetic.json does not describe
    add_provenance(out, {"name": pkg.spec.name, "version": pkg.spec.version,
                         "sha256": pkg.sha256}, rels)  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for rel, img in zip(rels, images, strict=True):
        write_png(img, out / rel)
    typer.echo(f"wrote {n} synthetic {name!r} images to {folder} (provenance in synthetic.json)")


def register(app: typer.Typer) -> None:
    """Add the ``synthesize`` command to ``app`` (``train synth`` comes from the registry)."""
    app.command("synthesize")(synthesize)
