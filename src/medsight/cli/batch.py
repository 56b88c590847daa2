"""``medsight batch analyze|deid|qc ARCHIVE --out DIR [--engine local|ray] [--address ADDR]``.

One task per study of ARCHIVE (DICOM in any layout, NIfTI, PNG, JPEG; see
:mod:`medsight.batch`), run on a local process pool or a Ray cluster.  A study done in an
earlier run is skipped, a failed one is retried (``--retries``), then listed with its error.
A progress bar runs on stderr; a summary table (and ``OUT/batch_summary.json``) ends the run.
Exit code 0: every study is done; 1: some failed; 2: nothing could be run (bad arguments).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from medsight.batch.runner import BatchResult, Engine, TaskResult

__all__ = ["register"]

batch_app = typer.Typer(
    help="Run analyze, deid or qc over every study of an archive (local pool or Ray).",
    no_args_is_help=True,
)

ArchiveArg = Annotated[Path, typer.Argument(help="Archive folder (or file); only read.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder, one per study.")]
EngineOpt = Annotated[Engine, typer.Option("--engine", help="local process pool or ray.")]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster address (host:port); default: a local Ray."),
]
WorkersOpt = Annotated[
    int, typer.Option("--workers", min=1, help="Processes (local) or CPUs of a new local Ray.")
]
RetriesOpt = Annotated[int, typer.Option("--retries", min=0, help="Retries of a failed study.")]


def _run(
    operation: str,
    archive: Path,
    out: Path,
    options: dict[str, Any],
    engine: Engine,
    address: str | None,
    workers: int,
    retries: int,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from medsight.batch import discover_tasks, run_batch
    from medsight.privacy.batch import check_paths

    check_paths(archive, out)  # OUT must not overlap the archive
    tasks = discover_tasks(archive)
    err = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        bar_task = bar.add_task(f"{operation} ({engine.value})", total=len(tasks))

        def tick(result: TaskResult) -> None:
            bar.advance(bar_task)
            if result.status == "failed":
                bar.console.print(f"failed: {result.id}: {result.error}")

        batch = run_batch(
            operation,
            tasks,
            out,
            options=options,
            engine=engine,
            workers=workers,
            retries=retries,
            address=address,
            progress=tick,
        )
    _print_summary(batch)
    raise typer.Exit(1 if batch.failed else 0)


def _print_summary(batch: BatchResult) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    counts = batch.counts()
    title = (
        f"{batch.operation} on {len(batch.results)} studies ({batch.engine}, "
        f"{batch.seconds:.1f} s): {counts['done']} done, {counts['skipped']} skipped "
        f"(done before), {counts['failed']} failed"
    )
    table = Table(title=title, title_justify="left")
    for col in ("study", "folder", "status", "attempts", "seconds", "result / error"):
        table.add_column(col, overflow="fold")
    for r in batch.results:
        what = r.error or ", ".join(f"{k} {v}" for k, v in r.summary.items())
        table.add_row(r.id, r.folder, r.status, str(r.attempts), f"{r.seconds:.1f}", what[:300])
    console.print(table)
    console.print(f"summary: {batch.out_dir / 'batch_summary.json'}")


@batch_app.command("analyze")
def analyze(
    archive: ArchiveArg,
    out: OutOpt,
    model: Annotated[
        list[Path] | None, typer.Option("--model", "-m", help="Model package (default: zoo).")
    ] = None,
    modality: Annotated[
        str | None, typer.Option(help="Modality of inputs without one (PNG, NIfTI).")
    ] = None,
    explain: Annotated[bool, typer.Option(help="Heatmaps for classifiers.")] = True,
    dicom_outputs: Annotated[bool, typer.Option(help="DICOM SEG / SR / SC outputs.")] = True,
    engine: EngineOpt = Engine.LOCAL,
    address: AddressOpt = None,
    workers: WorkersOpt = 2,
    retries: RetriesOpt = 2,
) -> None:
    """Analyse every study: one report folder each (as ``medsight analyze``)."""
    options = {
        "models": [str(m.resolve()) for m in model or []],
        "modality": modality,
        "explain": explain,
        "dicom_outputs": dicom_outputs,
    }
    _run("analyze", archive, out, options, engine, address, workers, retries)


@batch_app.command("deid")
def deid(
    archive: ArchiveArg,
    out: OutOpt,
    key_file: Annotated[
        Path, typer.Option("--key-file", help="Pseudonymisation key (created if missing).")
    ],
    profile: Annotated[
        str, typer.Option(help="basic or hospital-analysis (see medsight deid).")
    ] = "basic",
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Profile option (repeatable).")
    ] = None,
    scrub_pixels: Annotated[
        bool, typer.Option("--scrub-pixels", help="OCR and black out burned-in text.")
    ] = False,
    engine: EngineOpt = Engine.LOCAL,
    address: AddressOpt = None,
    workers: WorkersOpt = 2,
    retries: RetriesOpt = 2,
) -> None:
    """De-identify every study (as ``medsight deid``); a study is written whole or not at all."""
    from medsight.privacy.errors import UnsafePathError
    from medsight.privacy.keys import PseudonymKey

    resolved = key_file.resolve()
    if resolved == out.resolve() or out.resolve() in resolved.parents:
        raise UnsafePathError(key_file, "the key file must not be inside the output folder")
    PseudonymKey.load(resolved, create=True)  # once here, so workers never race to create it
    options = {
        "key_file": str(resolved),
        "profile": profile,
        "option": list(option or []),
        "scrub_pixels": scrub_pixels,
    }
    _run("deid", archive, out, options, engine, address, workers, retries)


@batch_app.command("qc")
def qc(
    archive: ArchiveArg,
    out: OutOpt,
    engine: EngineOpt = Engine.LOCAL,
    address: AddressOpt = None,
    workers: WorkersOpt = 2,
    retries: RetriesOpt = 2,
) -> None:
    """Check every study (readable, finite, not constant, geometry): ``qc.json`` each."""
    _run("qc", archive, out, {}, engine, address, workers, retries)


def register(app: typer.Typer) -> None:
    """Add the ``batch`` command group to ``app``."""
    app.add_typer(batch_app, name="batch")
