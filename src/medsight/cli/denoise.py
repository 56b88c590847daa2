"""``medsight train denoise`` (train a denoiser) and ``medsight denoise INPUT --out OUTPUT``.

Thin layers over :func:`medsight.training.denoise.train_denoiser` and
:class:`medsight.inference.denoise.Denoiser`.  ``medsight denoise`` writes the format its
``--out`` names: NIfTI (``.nii``, ``.nii.gz``; float32, same geometry), PNG (2D; the input's
8/16-bit pixel type) or, for a DICOM input and any other name, a folder holding a derived
DICOM series (:func:`medsight.io.dicom.derived.write_derived_series`; an enhanced multi-frame
input gives one derived multi-frame object with the source's functional groups).  The model's
intended use is checked first: a CT image given to an MR denoiser is refused with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from medsight.core.errors import InvalidInputError
from medsight.transforms.noise import NoiseModel

__all__ = ["denoise", "register", "train_denoise"]


def train_denoise(
    data: Annotated[str, typer.Option("--data", help="Data set spec of clean images.")],
    out: Annotated[
        Path, typer.Option("--out", help="Run folder; the package goes to OUT/package.")
    ],
    splits: Annotated[
        Path | None,
        typer.Option(
            "--splits",
            help="splits.json from `medsight split`: train / val cases from it; its test "
            "cases are never seen (held out for `medsight evaluate`).",
        ),
    ] = None,
    extra_data: Annotated[
        list[str] | None,
        typer.Option(
            "--extra-data",
            help="Another clean data set (repeat the option for more): its non-test cases join "
            "training and validation; each set is equally likely per patch. --splits applies "
            "to --data only.",
        ),
    ] = None,
    noise: Annotated[
        NoiseModel,
        typer.Option(
            "--noise",
            help="Noise model: rician (MR), poisson (CT/X-ray), speckle (US) or gaussian.",
        ),
    ] = NoiseModel.GAUSSIAN,
    levels: Annotated[
        tuple[float, float],
        typer.Option(
            "--levels",
            help="LOW HIGH noise level, percent of each image's "
            "p0.5-p99.5 intensity range; drawn per sample (blind denoising).",
        ),
    ] = (2.0, 10.0),
    adversarial_weight: Annotated[
        float, typer.Option("--adversarial-weight", min=0, help="0: plain L1+SSIM baseline.")
    ] = 0.005,
    ssim_weight: Annotated[float, typer.Option("--ssim-weight", min=0)] = 0.5,
    steps: Annotated[int, typer.Option("--steps", min=1)] = 4000,
    val_every: Annotated[int, typer.Option("--val-every", min=1)] = 250,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    patch_size: Annotated[int, typer.Option("--patch-size", min=8)] = 64,
    lr: Annotated[float, typer.Option("--lr")] = 5e-4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:i].")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    max_cases: Annotated[
        int | None, typer.Option("--max-cases", min=1, help="Cap cases per split (smoke tests).")
    ] = None,
    modality: Annotated[
        str | None, typer.Option("--modality", help="CT, MR, US ... when the data lacks it.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT/checkpoint.pt.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Package name.")] = None,
) -> None:
    """Train a blind 2D denoiser (conditional GAN; --adversarial-weight 0 for L1+SSIM only)."""
    from medsight.training.denoise import DenoiseConfig, train_denoiser

    cfg = DenoiseConfig(
        data=data,
        out=out,
        splits=splits,
        extra_data=list(extra_data or []),
        noise=noise,
        levels=levels,
        adversarial_weight=adversarial_weight,
        ssim_weight=ssim_weight,
        steps=steps,
        val_every=val_every,
        batch_size=batch_size,
        patch_size=patch_size,
        lr=lr,
        seed=seed,
        device=device,
        threads=threads,
        max_cases=max_cases,
        modality=modality,
        resume=resume,
        name=name,
    )
    pkg = train_denoiser(cfg, log=typer.echo)
    got = {m.name: m.value for m in pkg.spec.metrics}
    typer.echo(
        f"wrote {pkg.path} ({pkg.id}); validation PSNR {got['psnr']:.2f} dB "
        f"(noisy {got['psnr_noisy']:.2f}), SSIM {got['ssim']:.3f}"
    )


def _default_model(image: Any) -> Path:
    """The zoo's denoiser for the image's modality, or a refusal naming what exists."""
    from medsight.core.task import Task
    from medsight.models.zoo import zoo_packages

    found = [p for p in zoo_packages()[0] if p.spec.task is Task.DENOISING]
    fits = [
        p
        for p in found
        if image.modality and image.modality.upper() in {m.upper() for m in p.spec.input.modalities}
    ]
    if fits:
        return fits[0].path
    have = ", ".join(f"{p.id} ({'/'.join(p.spec.input.modalities) or 'any'})" for p in found)
    raise InvalidInputError(
        "--model",
        f"no default denoiser for {image.modality or 'images of unknown modality'}; the zoo "
        f"has {have or 'no denoiser yet'}",
        hint="pass --model PKG, a package from `medsight train denoise`",
    )


def _write(result: Any, original: Any, out: Path, derivation: str) -> list[Path]:
    from medsight.io import write_image
    from medsight.io.nifti import is_nifti

    name = out.name.lower()
    if is_nifti(out):
        return [write_image(result, out)]
    if name.endswith(".png"):
        dtype = np.asarray(original.array).dtype
        if dtype not in (np.uint8, np.uint16):
            dtype = np.dtype(np.uint16 if float(np.max(result.array)) > 255 else np.uint8)
        info = np.iinfo(dtype)
        pixels = np.clip(np.round(np.asarray(result.array)), info.min, info.max).astype(dtype)
        return [write_image(result.with_array(pixels), out)]
    if original.source is not None:
        from medsight.io.dicom.derived import write_derived_series

        return write_derived_series(result, out, derivation=derivation)
    raise InvalidInputError(
        out, "unsupported output: name a .nii, .nii.gz or .png file (a folder for DICOM input)"
    )


def denoise(
    input: Annotated[Path, typer.Argument(help="NIfTI, PNG, or a DICOM file / series folder.")],
    out: Annotated[
        Path, typer.Option("--out", help="Output .nii(.gz) / .png, or a folder for DICOM.")
    ],
    model: Annotated[
        Path | None, typer.Option("--model", help="Denoising ModelPackage (or training run).")
    ] = None,
    series: Annotated[
        str | None, typer.Option("--series", help="Series description or UID (study folders).")
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option(
            "--modality",
            help="The input's modality (CT, MR ...) when the file "
            "does not say (NIfTI, PNG); checked against the model's intended use.",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
) -> None:
    """Denoise an image with a denoising model; same format and geometry out."""
    from medsight.cli.evaluate import open_package
    from medsight.core.image import Image
    from medsight.inference.denoise import Denoiser
    from medsight.io import read_image

    image = read_image(input, series=series)
    if modality is not None:
        if image.modality and image.modality.upper() != modality.upper():
            raise InvalidInputError(
                "--modality", f"{modality} contradicts the file's modality {image.modality}"
            )
        image = Image(
            image.array,
            image.affine,
            spatial_ndim=image.spatial_ndim,
            modality=modality.upper(),
            source=image.source,
            meta=image.meta,
        )
    pkg = open_package(model if model is not None else _default_model(image))
    den = Denoiser(pkg, device=device)
    problems = den.scope_problems(image)
    if problems:
        raise InvalidInputError(
            input,
            f"outside the intended use of {pkg.id}: " + "; ".join(problems),
            hint="use a denoiser trained for this kind of image",
        )
    result = den(image, check_scope=False)
    written = _write(result, image, out, den.derivation_description)
    where = out if len(written) > 1 else written[0]
    typer.echo(f"wrote {where} ({len(written)} file(s)) with {pkg.id}")


def register(app: typer.Typer) -> None:
    """Add the top-level ``denoise`` command to ``app``."""
    app.command("denoise")(denoise)
