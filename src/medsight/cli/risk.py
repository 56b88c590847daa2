"""``medsight train risk``: image + record risk models (a thin layer over
:func:`medsight.training.risk.train_risk`).

Examples of use::

    medsight train risk --data csv:../shared/data/covid_cxr/metadata.csv?patient=patientid \\
        --target survival --positive N --features age,sex,view --arch late --out runs/death
    medsight train risk --data ... --time days_to_event --event died --arch gru --out runs/cox
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["train_risk_command"]


def train_risk_command(
    data: Annotated[str, typer.Option("--data", help="Data set spec (e.g. csv:meta.csv).")],
    out: Annotated[
        Path, typer.Option("--out", help="Run folder; the package goes to OUT/package.")
    ],
    target: Annotated[
        str | None, typer.Option("--target", help="Binary outcome column (Y/N, yes/no, 1/0).")
    ] = None,
    features: Annotated[
        str, typer.Option("--features", help="Clinical columns, e.g. age,sex:categorical,view.")
    ] = "",
    time: Annotated[
        str | None, typer.Option("--time", help="Time-to-event: days to event or censoring.")
    ] = None,
    event: Annotated[
        str | None, typer.Option("--event", help="Time-to-event: event indicator column.")
    ] = None,
    positive: Annotated[
        str | None, typer.Option("--positive", help="The target's value meaning 1 (e.g. N).")
    ] = None,
    visit_time: Annotated[
        str | None,
        typer.Option("--visit-time", help="Visit time column: day offsets or dates (StudyDate)."),
    ] = "offset",
    arch: Annotated[
        str, typer.Option("--arch", help="late|film|gru|lstm|attention|clinical|image.")
    ] = "late",
    encoder: Annotated[
        str, typer.Option("--encoder", help="Image encoder: zoo package name or package folder.")
    ] = "pneumoniamnist-smallcnn",
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 300,
    lr: Annotated[float, typer.Option("--lr")] = 1e-2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    max_visits: Annotated[int | None, typer.Option("--max-visits", min=1)] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    n_resamples: Annotated[int, typer.Option("--n-resamples", min=10)] = 1000,
    name: Annotated[str | None, typer.Option("--name", help="Package name.")] = None,
) -> None:
    """Train a risk model from images + clinical variables (binary or time-to-event)."""
    from pydantic import ValidationError

    from medsight.core.errors import InvalidInputError
    from medsight.training.risk import RiskConfig, train_risk

    try:
        cfg = RiskConfig(
            data=data,
            out=out,
            target=target,
            features=[f for f in features.split(",") if f.strip()],
            time=time,
            event=event,
            positive=positive,
            time_column=visit_time or None,
            arch=arch,
            encoder=encoder,
            epochs=epochs,
            lr=lr,
            seed=seed,
            max_visits=max_visits,
            threads=threads,
            n_resamples=n_resamples,
            name=name,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInputError("medsight train risk", str(first["msg"])) from None
    pkg = train_risk(cfg, log=typer.echo)
    main = pkg.spec.metrics[0] if pkg.spec.metrics else None
    got = f"; validation {main.name} {main.value:.3f}" if main else ""
    typer.echo(f"wrote {pkg.path} ({pkg.id}){got}")
