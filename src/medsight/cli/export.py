"""``medsight export PKG --format onnx``: an ONNX file beside the package's weights.

Every family but risk exports: classifiers, segmentation, denoisers, detectors (RetinaNet's
head outputs) and synthesis packages (one DDPM U-Net step, or a GAN generator).  The export
(opset, dynamic axes), its parity with torch on the package's reference inputs (max absolute
difference and the family's decision: labels, voxels, boxes after NMS, a few sampling steps)
and the optional int8 model (classifiers and segmentation) are recorded in ``model.json`` (see
:mod:`medsight.inference.onnx_backend`); an export that fails parity, or that the exporter
cannot trace, is refused and writes nothing.  Run it with ``medsight evaluate ... --backend
onnx`` or ``medsight analyze ... --backend onnx``; without ``--backend`` the backend measured
faster at export is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medsight.core.errors import InvalidInputError

__all__ = ["export", "register"]


def export(
    package: Annotated[
        Path, typer.Argument(help="ModelPackage folder (or a training run folder).")
    ],
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write a new package folder (default: into PACKAGE)."),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance",
            min=0.0,
            help="Largest max abs output difference accepted, per unit of output scale.",
        ),
    ] = 1e-4,
    quantize: Annotated[
        str | None,
        typer.Option(
            "--quantize",
            help="int8: also a dynamic-quantised model, kept only within the accuracy bound.",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="ONNX Runtime intra-op threads.")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Classifiers: data set spec on which --quantize's AUC drop "
            "is measured (default: decision agreement on the reference inputs).",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --data to measure on.")] = "val",
) -> None:
    """Export a model package to ONNX and check it against torch."""
    from medsight.cli.evaluate import open_package
    from medsight.inference.onnx_backend import export_onnx

    if fmt != "onnx":
        raise InvalidInputError("--format", f"{fmt!r} is not supported", hint="use --format onnx")
    pkg = open_package(package)
    evaluation = None
    if data is not None:
        if quantize is None:
            raise InvalidInputError("--data", "measures the int8 model: pass --quantize int8")
        evaluation = _evaluation_set(pkg, data, split)
    result = export_onnx(
        pkg, out, tolerance=tolerance, quantize=quantize, threads=threads, evaluation=evaluation
    )
    rec = result.record["onnx"]
    par = rec["parity"]
    first_axes = rec["dynamic_axes"].get(rec.get("inputs", ["input"])[0], {})
    spatial = any("spatial" in v for v in first_axes.values())
    agreement = par["decision_agreement"]
    decided = (
        f"decision agreement {agreement:.4f} ({par['decision']})"
        if agreement is not None
        else f"decision: {par['decision']}"
    )
    typer.echo(
        f"wrote {result.package / rec['file']} (opset {rec['opset']}, dynamic batch"
        f"{' and spatial axes' if spatial else ''}): max abs difference "
        f"{par['max_abs_diff']:.3g}, {decided} on {par['inputs']}"
    )
    q = result.record.get("onnx_int8")
    if q is not None:
        verdict = "kept" if q["kept"] else f"not kept: {q.get('reason', '')}"
        typer.echo(f"int8: {verdict} ({q['measured_on']})")
    typer.echo(f"default backend: {result.record['default_reason']}")


def _evaluation_set(pkg: Any, data: str, split: str) -> tuple[Any, Any]:
    """Preprocessed inputs and labels of ``split`` of ``data`` for a classifier package."""
    import numpy as np

    from medsight.data import load_dataset
    from medsight.inference.classify import Predictor
    from medsight.models.spec import Task
    from medsight.transforms.arrays import encode_label

    if pkg.spec.task not in (Task.BINARY, Task.MULTICLASS, Task.ORDINAL, Task.MULTILABEL):
        raise InvalidInputError(
            "--data", f"the int8 drop is measured for classifiers only, not {pkg.spec.task.value}"
        )
    cases = [c for c in load_dataset(data) if c.split is not None and c.split.value == split]
    if not cases:
        raise InvalidInputError(f"--data {data}", f"has no {split!r} cases")
    predictor = Predictor(pkg, backend="torch")
    n, multi = len(pkg.spec.label_names), pkg.spec.task is Task.MULTILABEL
    x = np.stack([predictor.preprocess(c.image()) for c in cases])
    y = np.array([encode_label(c, n, multi) for c in cases])
    return x, y


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""
    app.command("export")(export)
