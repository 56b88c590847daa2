"""What a batch does to one study: ``analyze``, ``deid`` or ``qc``.

An operation is a function ``op(task, staging, options) -> dict``: it writes the study's
outputs into the empty folder ``staging`` and returns a small JSON-able summary (shown in the
summary table).  It raises on failure; a :class:`~medsight.core.errors.MedsightError` (bad
input, the same on every try) is not retried, anything else is.  Operations are named by a
short name or by ``"module:attr"`` (as the task families name their parts), so a worker
process or a Ray worker imports only what it runs.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medsight.batch.tasks import StudyTask
from medsight.core.errors import InvalidInputError
from medsight.io.atomic import write_text_atomic

__all__ = ["OPERATIONS", "PRELOAD", "Operation", "output_folder", "resolve"]

#: ``op(task, staging, options) -> summary``.
Operation = Callable[[StudyTask, Path, dict[str, Any]], dict[str, Any]]

OPERATIONS = {
    "analyze": "medsight.batch.ops:analyze_study",
    "deid": "medsight.batch.ops:deid_study",
    "qc": "medsight.batch.ops:qc_study",
}


#: Modules a local worker pool imports once for an operation (then forks per study).
PRELOAD = {
    "analyze": ("medsight.analysis.pipeline", "medsight.models.package", "torch", "monai"),
    "deid": ("medsight.privacy.batch",),
}


def resolve(name: str) -> Operation:
    """The operation called ``name`` (a key of :data:`OPERATIONS` or ``"module:attr"``)."""
    ref = OPERATIONS.get(name, name)
    module, sep, attr = ref.partition(":")
    if not sep:
        raise InvalidInputError(
            "batch operation", f"unknown operation {name!r}", hint=f"use one of {list(OPERATIONS)}"
        )
    op: Operation = getattr(importlib.import_module(module), attr)
    return op


def output_folder(task: StudyTask, name: str, options: dict[str, Any]) -> str:
    """The folder name of a task's outputs under OUT.

    De-identified outputs must not be named by the original study (its date and UID): their
    folder is a keyed hash (HMAC-SHA256 with the pseudonymisation key) of the task id, stable
    for one key.
    """
    if name != "deid":
        return task.folder
    secret = _deid_key(options).secret
    return "study_" + hmac.new(secret, task.id.encode(), hashlib.sha256).hexdigest()[:16]


def analyze_study(task: StudyTask, staging: Path, options: dict[str, Any]) -> dict[str, Any]:
    """``medsight analyze`` on one study: its report folder (options: ``models``, a list of
    package paths, default the zoo; ``modality``; ``explain``; ``dicom_outputs``)."""
    from medsight.analysis.pipeline import analyze
    from medsight.models.package import ModelPackage

    models = options.get("models") or []
    packages = [ModelPackage.load(p) for p in models] if models else None
    with task.input_path() as path:
        result = analyze(
            path,
            staging,
            packages,
            explain=bool(options.get("explain", True)),
            dicom_outputs=bool(options.get("dicom_outputs", True)),
            modality=options.get("modality"),
        )
    ran = sum(r.status == "ran" for r in result.report.models)
    return {"findings": len(result.report.findings), "models_ran": ran}


def _deid_key(options: dict[str, Any]) -> Any:
    from medsight.privacy.keys import PseudonymKey

    if not options.get("key_file"):
        raise InvalidInputError("--key-file", "a key file is needed to de-identify")
    return PseudonymKey.load(options["key_file"], create=False)


def deid_study(task: StudyTask, staging: Path, options: dict[str, Any]) -> dict[str, Any]:
    """De-identify every file of one study (options: ``key_file``, ``profile``, ``option``
    list, ``scrub_pixels``); files are named by their new UIDs, as ``medsight deid`` does."""
    from medsight.privacy.batch import deidentify_file
    from medsight.privacy.profile import DeidConfig, PixelScrub, Profile, profile_defaults

    key = _deid_key(options)
    preset = profile_defaults(Profile(options.get("profile", "basic")))
    scrub = PixelScrub.FLAGGED if options.get("scrub_pixels") else preset.get("scrub_pixels")
    config = DeidConfig.from_options(
        options=frozenset(options.get("option") or []) | preset["options"],
        scrub_pixels=scrub or PixelScrub.OFF,
    )
    root = Path(task.root)
    written, errors = 0, []
    for rel in task.files:
        outcome = deidentify_file(root / rel, staging, key, config, rel=Path(rel))
        if outcome.error is not None:
            errors.append(outcome.error)
        elif outcome.output is not None:
            written += 1
    if errors:  # a study is delivered whole or not at all
        raise InvalidInputError(task.folder, f"{len(errors)} file(s) failed: {errors[0]}")
    return {"files": written}


def qc_study(task: StudyTask, staging: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Check one study: every series readable, finite, not constant, with known geometry.

    Writes ``qc.json`` (per series: modality, shape, spacing, intensity range, problems; no
    patient data).  A study with problems is still checked (that is the result); only a
    study that cannot be read at all fails.
    """
    from medsight.io.study import read_study

    with task.input_path() as path:
        study = read_study(path)
        series = [_qc_series(entry) for entry in study]
        bad = [f"unreadable file: {Path(b.path).name}" for b in study.bad_files]
    problems = ([task.problem] if task.problem else []) + bad
    problems += [f"series {s['series']}: {p}" for s in series for p in s["problems"]]
    report = {"study": task.folder, "series": series, "problems": problems}
    write_text_atomic(staging / "qc.json", json.dumps(report, indent=2) + "\n")
    return {"series": len(series), "problems": len(problems)}


def _qc_series(entry: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "series": entry.description or Path(entry.key).name,
        "modality": entry.modality,
        "files": len(entry.files),
        "problems": list(entry.problems),
    }
    try:
        image = entry.load()
    except Exception as exc:  # a QC lists an unreadable series, it does not stop
        out["problems"].append(f"pixels unreadable: {type(exc).__name__}: {exc}")
        return out
    arr = np.asarray(image.array, dtype=np.float64)
    out["shape"] = list(arr.shape)
    out["spacing_mm"] = [round(float(np.linalg.norm(image.affine[:3, k])), 6) for k in range(3)]
    finite = np.isfinite(arr)
    if not finite.all():
        out["problems"].append(f"{int((~finite).sum())} non-finite voxels")
    values = arr[finite]
    if values.size:
        out["range"] = [float(values.min()), float(values.max())]
        if values.min() == values.max():
            out["problems"].append("constant image (every voxel the same)")
    else:
        out["problems"].append("no finite voxel")
    return out
