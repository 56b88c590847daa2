"""``medsight analyze INPUT [--model PKG ...] --out DIR``: findings, report, SEG/SR, FHIR."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape


def analyze(
    path: Annotated[Path, typer.Argument(help="DICOM file/series/study folder, NIfTI or image.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report and objects.")],
    model: Annotated[
        list[Path] | None,
        typer.Option("--model", "-m", help="Model package folder (repeatable); default: the zoo."),
    ] = None,
    no_explain: Annotated[bool, typer.Option("--no-explain", help="Skip heatmaps.")] = False,
    no_dicom: Annotated[
        bool, typer.Option("--no-dicom", help="Do not write DICOM SEG / SR / SC.")
    ] = False,
    modality: Annotated[
        str | None,
        typer.Option(help="Modality of a PNG/JPEG/NIfTI input (e.g. OP, US, CR, MR)."),
    ] = None,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta", help="Segmentation: mirror test-time augmentation (4x/8x slower, as nnU-Net)."
        ),
    ] = False,
    denoise: Annotated[
        bool,
        typer.Option(
            "--denoise",
            help="Also run the zoo's denoiser for the study's modality: before / after / "
            "difference in the report and the denoised volume as NIfTI (no findings).",
        ),
    ] = False,
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role",
            help="Pin a series role of a multi-input model: ROLE=SERIES (series number, "
            "SeriesInstanceUID or description), e.g. --role FLAIR=7 (repeatable).",
        ),
    ] = None,
    prior: Annotated[
        Path | None,
        typer.Option(
            "--prior",
            help="An earlier study of the same patient to compare with (change, doubling time, "
            "RECIST-style category). Default: an earlier study of the same Patient ID given in "
            "the same input, if any.",
        ),
    ] = None,
    allow_identity_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-identity-mismatch",
            help="Compare with --prior although its Patient ID / name / birth date differ or "
            "cannot be checked (only when you have verified the identity yourself; the report "
            "says so).",
        ),
    ] = False,
    events: Annotated[
        Path | None,
        typer.Option(
            "--events",
            help="fMRI: a BIDS events.tsv; adds a first-level GLM of the study's 4D BOLD "
            "series (z-map, clusters, activation picture, DICOM SEG) to the report.",
        ),
    ] = None,
    contrast: Annotated[
        list[str] | None,
        typer.Option(
            "--contrast",
            help="fMRI contrast (nilearn syntax, e.g. 'face - house'; repeatable). Default: "
            "each trial_type vs baseline.",
        ),
    ] = None,
    fmri_threshold: Annotated[
        str,
        typer.Option(
            "--fmri-threshold",
            help="fMRI voxel threshold: 'z=3.1' (uncorrected z), 'fdr=0.05', 'fpr=0.001' or "
            "'bonferroni=0.05'; then clusters of at least --cluster-extent voxels.",
        ),
    ] = "z=3.1",
    cluster_extent: Annotated[
        int, typer.Option("--cluster-extent", help="fMRI: smallest cluster kept, in voxels.")
    ] = 10,
    attribute: Annotated[
        list[str] | None,
        typer.Option(
            "--attribute",
            help="What you know about the patient, KEY=VALUE (repeatable), e.g. --attribute "
            "sex=F --attribute age=71: a classifier's group threshold, a risk model's "
            "clinical variables.",
        ),
    ] = None,
    fhir: Annotated[
        Path | None,
        typer.Option(
            "--fhir",
            help="The patient's record as a FHIR Bundle JSON (age, sex, smoking, conditions); "
            "used only when one Patient's identifier equals the study's DICOM Patient ID "
            "(and birth date / sex agree), refused otherwise.",
        ),
    ] = None,
    fhir_identifier_system: Annotated[
        str | None,
        typer.Option(
            "--fhir-identifier-system",
            help="Match the DICOM Patient ID only with Patient identifiers of this system "
            "(the URI of your medical record numbers); default: any system.",
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="torch, onnx or onnx-int8 (every family but risk; int8 for classifiers and "
            "segmentation; after medsight export; a model without that export is skipped "
            "with the reason). "
            "Default: each package's measured default, else torch.",
        ),
    ] = None,
    timings: Annotated[
        bool,
        typer.Option("--timings", help="Print the wall time of each stage (also in timings.json)."),
    ] = False,
) -> None:
    """Run model packages on a study and write an explained, preliminary report."""
    from medsight.analysis.pipeline import analyze_studies
    from medsight.analysis.record import parse_attributes
    from medsight.analysis.roles import parse_pins
    from medsight.models.package import ModelPackage
    from medsight.reporting.report import DISCLAIMER

    console = Console(stderr=True)
    packages = [ModelPackage.load(p) for p in model] if model else None
    pins = parse_pins(role or [])
    attributes = parse_attributes(attribute or [])
    glm = None
    if events is not None:
        from medsight.analysis.functional import glm_options

        glm = glm_options(contrast or [], fmri_threshold, cluster_extent)
    from medsight.inference.onnx_backend import use_backend

    with console.status("analysing") as status, use_backend(backend):
        outcomes = analyze_studies(
            path,
            out,
            packages,
            explain=not no_explain,
            dicom_outputs=not no_dicom,
            modality=modality,
            tta=tta,
            progress=lambda msg: status.update(msg),
            denoise=denoise,
            roles=pins,
            prior=prior,
            allow_identity_mismatch=allow_identity_mismatch,
            events=events,
            glm=glm,
            attributes=attributes,
            fhir=fhir,
            fhir_identifier_system=fhir_identifier_system,
        )
    out_console = Console()
    invalid = False
    for outcome in outcomes:
        if len(outcomes) > 1:
            out_console.print(f"[bold]== {outcome.group.label}[/bold] -> {outcome.out_dir}")
        if outcome.result is None:
            out_console.print(f"  [red]not analysed:[/red] {outcome.error}")
            continue
        result = outcome.result
        report = result.report
        out_console.print(f"[bold]Impression:[/bold] {report.impression}")
        for g in report.guidelines:  # decision support, shown apart from the impression
            what = f"{g.result.display} ({g.result.label})" if g.result else "not applied"
            out_console.print(
                f"[bold]Guideline suggestion[/bold] (decision support, not a diagnosis) "
                f"{escape(g.name)}: {escape(what)}"
            )
        for run_ in report.models:
            detail = run_.series if run_.status == "ran" else run_.reason
            out_console.print(f"  {run_.status:8s} {run_.model_id}: {detail}")
        for warning in report.warnings:
            out_console.print(f"  [yellow]warning:[/yellow] {warning}")
        if timings and result.timings:
            stages = ", ".join(f"{k} {v:.2f}" for k, v in result.timings["stages"].items())
            out_console.print(
                f"Timings (s): {escape(stages)}; total {result.timings['total_s']:.2f}"
            )
        out_console.print(f"Report: {result.out_dir / 'report.html'}")
        invalid |= bool(result.dicom_errors and any(k != "dciodvfy" for k in result.dicom_errors))
    if len(outcomes) > 1:
        done = sum(o.result is not None for o in outcomes)
        out_console.print(
            f"{done} of {len(outcomes)} studies analysed, one report each: {out / 'index.html'}"
        )
    out_console.print(f"[dim]{DISCLAIMER}[/dim]")
    if invalid:
        raise typer.Exit(3)
    if not any(o.result is not None for o in outcomes):
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add the ``analyze`` command to ``app``."""
    app.command("analyze")(analyze)
