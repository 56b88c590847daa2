"""``medsight qc DATA --out DIR``, ``medsight split`` and ``medsight fingerprint``.

``DATA`` is a data spec (``medmnist:FILE.npz``, ``msd:FOLDER``, ``folder:FOLDER``,
``csv:FILE.csv``, ``dicom:FOLDER``, optionally ``?key=value`` adapter options) or a bare path
whose kind is guessed from its layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["register"]

DataArg = Annotated[
    str,
    typer.Argument(
        help="Data spec KIND:PATH (medmnist, msd, folder, csv, dicom) or a path to guess from."
    ),
]


class FailOn(StrEnum):
    """Which findings make ``medsight qc`` exit non-zero."""

    ERROR = "error"
    WARNING = "warning"
    NEVER = "never"


@contextmanager
def _progress(total: int, label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda _i: bar.advance(task)


def qc(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for qc.json and index.html.")],
    splits: Annotated[
        Path | None, typer.Option(help="Check this splits.json instead of the data's splits.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the voxel sampling.")] = 0,
    fail_on: Annotated[
        FailOn, typer.Option(help="Exit 1 when a finding of this severity or worse exists.")
    ] = FailOn.NEVER,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Check a data set: duplicates, leakage, masks, imbalance, outliers, missing attributes."""
    from medsight.data import Splits, load_dataset
    from medsight.data.qc import QCConfig, run_qc, write_report

    dataset = load_dataset(data)
    split_obj = Splits.load(splits) if splits is not None else None
    with _progress(len(dataset), f"checking {dataset.name}", progress) as tick:
        report, scans = run_qc(dataset, QCConfig(seed=seed), splits=split_obj, progress=tick)
    paths = write_report(report, scans, dataset, out)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    table = Table(
        title=f"{dataset.name}: {len(dataset)} cases, {report.n_unreadable} unreadable",
        title_justify="left",
    )
    for col in ("severity", "kind", "files", "message"):
        table.add_column(col, overflow="fold")
    for f in report.findings:
        table.add_row(f.severity.value, f.kind.value, str(len(f.files)), f.message[:200])
    console.print(table)
    console.print(f"report: {paths['html']}  json: {paths['json']}")
    worst = {s for s in report.severities}
    if (fail_on is FailOn.ERROR and "error" in worst) or (
        fail_on is FailOn.WARNING and worst & {"error", "warning"}
    ):
        raise typer.Exit(1)


def split(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The splits.json to write.")],
    scheme: Annotated[str, typer.Option(help="holdout or kfold.")] = "holdout",
    k: Annotated[int, typer.Option(help="Number of folds (kfold).")] = 5,
    val_fraction: Annotated[float, typer.Option(help="Validation share (holdout).")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Test share.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Seed of the shuffling.")] = 0,
    keep_official: Annotated[bool, typer.Option(help="Keep the data set's own splits.")] = True,
) -> None:
    """Split a data set by patient, stratified by label, and write splits.json."""
    from pydantic import ValidationError

    from medsight.core import InvalidInputError
    from medsight.data import SplitConfig, load_dataset, make_splits

    try:
        config = SplitConfig(
            scheme=scheme, k=k, val_fraction=val_fraction, test_fraction=test_fraction,
            seed=seed, keep_official=keep_official,
        )  # fmt: skip
    except ValidationError as exc:
        raise InvalidInputError("split options", exc.errors()[0]["msg"]) from None
    dataset = load_dataset(data)
    splits = make_splits(dataset, config)
    path = splits.save(out)
    sizes = [
        f"fold {i}: {len(f.train)} train / {len(f.val)} val" for i, f in enumerate(splits.folds)
    ]
    typer.echo(f"{path}: {splits.source} splits, {len(splits.test)} test; " + "; ".join(sizes))


def fingerprint(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The fingerprint JSON to write.")],
    seed: Annotated[int, typer.Option(help="Seed of the voxel sampling.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Compute the nnU-Net style data set fingerprint and write it as JSON."""
    from medsight.data import load_dataset
    from medsight.data.fingerprint import compute_fingerprint

    dataset = load_dataset(data)
    with _progress(len(dataset), f"fingerprinting {dataset.name}", progress) as tick:
        fp = compute_fingerprint(dataset, seed=seed, progress=tick)
    path = fp.save(out)
    typer.echo(
        f"{path}: {fp.n_read}/{fp.n_cases} cases, median shape {fp.median_shape}, "
        f"median spacing {fp.median_spacing}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``qc``, ``split`` and ``fingerprint`` commands to ``app``."""
    app.command("qc")(qc)
    app.command("split")(split)
    app.command("fingerprint")(fingerprint)
