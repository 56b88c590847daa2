"""``medsight info PATH``: what is in a file or folder, and what is wrong with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from medsight.core.errors import MedsightError


def _fmt(values: list[float] | None, digits: int = 3) -> str:
    if not values:
        return "-"
    return " x ".join(f"{v:.{digits}g}" for v in values)


def gather(path: Path, *, show_progress: bool) -> dict[str, Any]:
    """Scan ``path`` and load each series, collecting a summary and every problem found."""
    from medsight.io import read_study, summarize

    console = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not show_progress,
    ) as bar:

        def reading(total: int) -> Callable[[], None]:
            task = bar.add_task("reading headers", total=total)
            return lambda: bar.advance(task)

        study = read_study(path, progress=reading)
        total_files = sum(len(s.files) for s in study)
        task = bar.add_task("reading pixels", total=total_files)
        series = []
        bad = [{"file": b.path, "problem": b.problem} for b in study.bad_files]
        for entry in study:
            try:
                image = entry.load(progress=lambda: bar.advance(task))
            except MedsightError as err:
                summary = summarize(entry, None)
                problem = f"{err.problem} ({err.hint})" if err.hint else err.problem
                summary["problems"].append(f"cannot load: {problem}")
                if err.where:
                    bad.append({"file": err.where, "problem": problem})
            else:
                summary = summarize(entry, image) | _geometry(image.affine)
            series.append(summary)
    return {"path": str(path), "series": series, "bad_files": bad}


def _geometry(affine: Any) -> dict[str, Any]:
    """Direction cosines (columns = the array axes i, j, k in LPS, 4 dp) and obliquity."""
    import numpy as np

    from medsight.core.geometry import direction_of, obliquity_degrees

    try:
        direction = direction_of(affine)
    except MedsightError:  # a degenerate affine: its problem is reported elsewhere
        return {}
    return {
        "direction": np.round(direction, 4).tolist(),
        "obliquity_deg": round(obliquity_degrees(affine), 2),
    }


def _orientation(s: dict[str, Any]) -> str:
    """``LPS``, or ``LPS (11.0 deg oblique)`` when the axes are not axis-aligned."""
    code = s.get("orientation", "-")
    tilt = s.get("obliquity_deg")
    return code if not tilt or tilt < 0.01 else f"{code} ({tilt:.1f} deg oblique)"


def _render_geometry(series: list[dict[str, Any]], console: Console) -> None:
    """Each series' direction cosines (3x3) and obliquity, beside its orientation code."""
    table = Table(
        title="Geometry (direction cosines in LPS, columns = i, j, k)", title_justify="left"
    )
    for col in ("series", "orient.", "oblique (deg)", "direction"):
        table.add_column(col, no_wrap=True)
    for s in series:
        if s.get("direction") is None:
            continue
        rows = "\n".join(" ".join(f"{v:+.4f}" for v in row) for row in s["direction"])
        table.add_row(
            s["description"] or s["key"],
            s.get("orientation", "-"),
            f"{s['obliquity_deg']:.2f}",
            rows,
        )
    console.print(table)


def render(report: dict[str, Any], console: Console) -> None:
    """Print the report as rich tables, one per study."""
    studies: dict[str, list[dict[str, Any]]] = {}
    for s in report["series"]:
        studies.setdefault(s.get("study_instance_uid") or "(no study UID)", []).append(s)
    for study_uid, series in studies.items():
        patient = series[0].get("patient_id") or "-"
        table = Table(title=f"Study {study_uid}  (patient {patient})", title_justify="left")
        for col in ("modality", "description", "files", "size", "spacing (mm)", "orient."):
            table.add_column(col, no_wrap=True)
        table.add_column("dtype", no_wrap=True)
        table.add_column("value range", no_wrap=True)
        table.add_column("problems", overflow="fold", min_width=20)
        for s in series:
            vr = s.get("value_range") or [None, None]
            size = _fmt(s.get("shape"), 6) + (
                f" x{s['channels']}ch" if s.get("channels", 1) > 1 else ""
            )
            table.add_row(
                s["modality"],
                s["description"] or "-",
                str(s["files"]),
                size,
                _fmt(s.get("spacing")),
                _orientation(s),
                s.get("dtype", "-"),
                "-" if vr[0] is None else f"{vr[0]:.6g} .. {vr[1]:.6g}",
                "\n".join(s["problems"]) or "none",
            )
        console.print(table)
        _render_geometry(series, console)
        for s in series:
            if s.get("segments"):
                _render_segments(s, console)
            if s.get("rois"):
                _render_rois(s, console)
    if report["bad_files"]:
        bad = Table(title="Files that could not be used", title_justify="left")
        bad.add_column("file", overflow="fold")
        bad.add_column("problem", overflow="fold")
        for b in report["bad_files"]:
            bad.add_row(b["file"], b["problem"])
        console.print(bad)


def _render_segments(summary: dict[str, Any], console: Console) -> None:
    """One table row per segment of a DICOM SEG: number, label, codes, algorithm."""
    how = summary.get("segment_values", "labels")
    title = (
        f"Segments of {summary['description'] or summary['key']} "
        f"({summary.get('segmentation_type', '?')}, "
        + ("one channel per segment" if how == "channels" else "label values = numbers")
        + (", overlapping" if summary.get("segments_overlap") else "")
        + ")"
    )
    table = Table(title=title, title_justify="left")
    for col in ("number", "label", "category", "type", "algorithm"):
        table.add_column(col, overflow="fold")

    def code(c: dict[str, str] | None) -> str:
        return f"{c['meaning']} ({c['scheme']} {c['value']})" if c else "-"

    for seg in summary["segments"]:
        alg = " ".join(
            v for v in (seg["algorithm_type"], seg["algorithm_name"], seg["algorithm_version"]) if v
        )
        table.add_row(
            str(seg["number"]),
            seg["label"] or "-",
            code(seg["category"]),
            code(seg["type"]),
            alg or "-",
        )
    console.print(table)


def _render_rois(summary: dict[str, Any], console: Console) -> None:
    """One table row per ROI of an RT Structure Set: number, name, type, colour, contours."""
    how = summary.get("roi_values", "labels")
    title = (
        f"ROIs of {summary['description'] or summary['key']} (on series "
        f"{summary.get('referenced_series_instance_uid', '?')}, "
        + ("one channel per ROI" if how == "channels" else "label values = numbers")
        + ")"
    )
    table = Table(title=title, title_justify="left")
    for col in ("number", "name", "type", "colour", "contours"):
        table.add_column(col, overflow="fold")
    for roi in summary["rois"]:
        colour = roi.get("colour")
        table.add_row(
            str(roi["number"]),
            roi["name"] or "-",
            roi["interpreted_type"] or "-",
            "/".join(str(v) for v in colour) if colour else "-",
            str(roi["contours"]),
        )
    console.print(table)


def info(
    path: Annotated[
        Path, typer.Argument(help="A DICOM file, series or study folder, NIfTI or image.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List studies and series: size, spacing, orientation and direction, values, problems."""
    report = gather(path, show_progress=not as_json)
    loaded = [s for s in report["series"] if "shape" in s]
    if not loaded:  # nothing usable: one line per bad file, no table
        for bad in report["bad_files"]:
            typer.echo(f"error: {bad['file']}: {bad['problem']}", err=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        console = Console()
        if not console.is_terminal:  # piped or captured: do not squeeze into 80 columns
            console = Console(width=max(console.width, 160))
        render(report, console)


def register(app: typer.Typer) -> None:
    """Add the ``info`` command to ``app``."""
    app.command("info")(info)
