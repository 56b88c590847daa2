"""Validate a classification ModelPackage on a data set: JSON + HTML report with plots.

Stage by stage: pick the cases (the ``test`` split where the data set has one, else every
case), run the :class:`~medsight.inference.classify.Predictor`, compute metrics with
patient-level bootstrap CIs, calibration (ECE and reliability diagram) and subgroup results,
then write ``report.json``, ``report.html`` (plots embedded) and the plots as PNG files into
the output folder.  A package whose calibration gives every image the same probability is
named in the report's ``warnings``, shown at the top of the HTML page.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core import Split
from medsight.core.errors import InvalidInputError
from medsight.evaluation.calibration import expected_calibration_error
from medsight.evaluation.claim import claim_checklist, failure_cases
from medsight.evaluation.classification import confusion_matrix
from medsight.evaluation.classification_report import (
    calibration_inputs,
    classification_metrics,
    subgroup_metrics,
)
from medsight.evaluation.plots import pr_plot, reliability_plot, roc_plot
from medsight.inference.decision import predict_labels
from medsight.io.atomic import atomic_path, write_text_atomic
from medsight.io.html import render

__all__ = ["calibration_warnings", "evaluate_classifier", "select_cases"]


def select_cases(dataset: Any, split: str | None) -> tuple[list[Any], str]:
    """Cases of ``split`` (``None``: ``test`` when the data set has one, else all).

    Examples
    --------
    >>> from medsight.core import Case
    >>> cases = [Case("a", label=0, split="train"), Case("b", label=1, split="test")]
    >>> [c.case_id for c in select_cases(cases, None)[0]], select_cases(cases[:1], None)[1]
    (['b'], 'all')
    """
    cases = list(dataset)
    if split in (None, "auto"):
        test = [c for c in cases if c.split is Split.TEST]
        return (test, "test") if test else (cases, "all")
    if split == "all":
        return cases, "all"
    try:
        wanted = Split(split)
    except ValueError:
        raise InvalidInputError("--split", f"{split!r} is not train, val, test or all") from None
    chosen = [c for c in cases if c.split is wanted]
    if not chosen:
        raise InvalidInputError("--split", f"the data set has no {split!r} cases")
    return chosen, wanted.value


def evaluate_classifier(
    package: Any,
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    by: Sequence[str] = (),
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate ``package`` on ``dataset`` and write the report into ``out``.

    Returns the report as plain data (the content of ``report.json``).
    """
    from medsight.inference.classify import Predictor
    from medsight.transforms.arrays import encode_label

    predictor = Predictor(package)
    spec = predictor.package.spec
    task = spec.task.value
    multilabel = task == "multilabel"
    cases, split_name = select_cases(dataset, split)
    names = spec.label_names
    y = np.array([encode_label(c, len(names), multilabel) for c in cases])
    x = np.stack([predictor.preprocess(c.image()) for c in cases])
    proba = predictor.predict_arrays(x)
    groups = [str(c.patient_id) for c in cases]
    metrics = classification_metrics(
        task,
        y,
        proba,
        spec.thresholds,
        label_names=names,
        groups=groups,
        n_resamples=n_resamples,
        seed=seed,
    )
    outcome, confidence = calibration_inputs(task, y, proba)
    subgroups = {}
    for column in by:
        values = [c.attributes.get(column) for c in cases]
        if all(v is None for v in values):
            raise InvalidInputError(f"--by {column}", "no case has this attribute")
        subgroups[column] = subgroup_metrics(
            task,
            y,
            proba,
            values,
            spec.thresholds,
            label_names=names,
            groups=groups,
            n_resamples=n_resamples,
            seed=seed,
        )
    if task == "binary":
        curves = {names[1]: (y, proba[:, 1])}
    elif multilabel:
        curves = {n: (y[:, k], proba[:, k]) for k, n in enumerate(names)}
    else:
        curves = {n: (y == k, proba[:, k]) for k, n in enumerate(names)}
    points = []
    if task == "binary":
        d = predict_labels(task, proba, spec.thresholds, names)
        pos, neg = y == 1, y == 0
        if pos.any() and neg.any():
            points.append((float(d[neg].mean()), float(d[pos].mean()), "operating point"))
    plots = {
        "roc.png": roc_plot(curves, points),
        "pr.png": pr_plot(curves),
        "reliability.png": reliability_plot(outcome, confidence),
    }
    report: dict[str, Any] = {
        "model": predictor.package.id,
        "model_sha256": predictor.package.sha256,
        "task": task,
        "data": getattr(dataset, "name", ""),
        "split": split_name,
        "n_cases": len(cases),
        "n_patients": len(set(groups)),
        "labels": names,
        "thresholds": spec.thresholds,
        "temperature": spec.temperature,
        "bootstrap": {"n_resamples": n_resamples, "seed": seed, "level": "patient"},
        "metrics": [m.as_dict() for m in metrics],
        "calibration": {"ece": expected_calibration_error(outcome, confidence)},
        "confusion_matrix": (
            None
            if multilabel
            else confusion_matrix(
                y, predict_labels(task, proba, spec.thresholds, names), len(names)
            ).tolist()
        ),  # rows: true label, columns: decision at the operating point
        "subgroups": subgroups,
        "group_operating_points": _group_operating_points(
            predictor, cases, y, proba, groups, n_resamples, seed
        ),
        "plots": sorted(plots),
        "warnings": calibration_warnings(spec),
    }
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    # CLAIM checklist: the worst errors as thumbnails (failures/*.png), then the 42 items
    decisions = predict_labels(task, proba, spec.thresholds, names)
    ids = [c.case_id for c in cases]
    report["failure_cases"] = failure_cases(task, ids, x, y, proba, decisions, names, root)
    report["claim_checklist"] = claim_checklist(spec, report)
    thumbs = {
        row["image"]: (root / row["image"]).read_bytes()
        for rows in report["failure_cases"]["groups"].values()
        for row in rows
    }
    for name, png in plots.items():
        with atomic_path(root / name) as tmp:
            tmp.write_bytes(png)
    write_text_atomic(root / "report.json", json.dumps(report, indent=2))
    write_text_atomic(root / "report.html", render_html(report, plots, thumbs))
    return report


def calibration_warnings(spec: Any) -> list[str]:
    """Warnings for the report's top: a calibration that gives every image one probability.

    The whole map constant: ``analyze`` withholds the model's findings (the reason of
    :func:`medsight.models.scope.package_problems`).  Multi-label labels with a constant map
    of their own: ``analyze`` withholds those labels' findings.
    """
    from medsight.models.calibration import constant_outputs
    from medsight.models.scope import package_problems

    whole = package_problems(spec)
    if whole:
        return [f"WARNING: {whole[0]}; medsight analyze withholds its findings"]
    flat = constant_outputs(spec.calibration, spec.task, len(spec.labels))
    return [
        f"WARNING: the model's calibration maps every image to p={p:.3g} for "
        f"{spec.label_names[k]}; it cannot rank cases on this label (see its model card); "
        "medsight analyze withholds that label's findings"
        for k, p in sorted(flat.items())
    ]


def _group_operating_points(
    predictor: Any,
    cases: list[Any],
    y: np.ndarray,
    proba: np.ndarray,
    patients: list[str],
    n_resamples: int,
    seed: int,
) -> dict[str, Any] | None:
    """With per-group thresholds in the package: which cases got them (only those whose group
    is known), and the gaps at the global vs the group-aware operating point (paired CIs)."""
    from medsight.evaluation.fairness import compare_methods

    gt = predictor.package.spec.group_thresholds
    if gt is None:
        return None
    values = [c.attributes.get(gt.attribute) for c in cases]
    d_group, used = predictor.decide_by_group(proba, values)
    d_global = predictor.decide(proba)
    out: dict[str, Any] = {
        "attribute": gt.attribute,
        "thresholds": gt.thresholds,
        "global_threshold": gt.global_threshold,
        "target_sensitivity": gt.target_sensitivity,
        "skipped": gt.skipped,
        "n_group_threshold": sum(u.startswith("group") for u in used),
        "n_global_threshold": sum(not u.startswith("group") for u in used),
        "note": "metrics above use the global threshold; a case gets its group's threshold "
        "only when its group is known and has one",
    }
    try:
        out["comparison"] = compare_methods(
            y,
            {"global": (proba[:, 1], d_global), "group": (proba[:, 1], d_group)},
            values,
            patients,
            reference="global",
            n_resamples=n_resamples,
            seed=seed,
        )
    except InvalidInputError as err:
        out["comparison"] = None
        out["comparison_note"] = str(err)
    return out


def _fmt(m: dict[str, Any]) -> str:
    """``value (low to high)``; a CI that cannot be estimated says so instead."""
    value = "undefined" if m.get("value") is None else f"{m['value']:.3f}"
    if m.get("estimable") is False:
        return f"{value} ({m.get('ci_note') or 'CI not estimable'})"
    ci = "" if m.get("ci_low") is None else f" ({m['ci_low']:.3f} to {m['ci_high']:.3f})"
    return f"{value}{ci}"


def render_html(
    report: dict[str, Any], plots: dict[str, bytes], thumbs: dict[str, bytes] | None = None
) -> str:
    """A self-contained HTML page (plots and failure-case ``thumbs`` embedded as PNG data
    URIs)."""
    labels = report["labels"]
    matrix = report.get("confusion_matrix")
    subgroups = [
        (
            column,
            sub,
            sorted(
                {k for g in sub["groups"].values() for k, m in g.items() if isinstance(m, dict)}
            ),
        )
        for column, sub in report["subgroups"].items()
    ]
    return render(
        "classification_eval.html.j2",
        r=report,
        thresholds=json.dumps(report["thresholds"]),
        confusion=list(zip(labels, matrix, strict=True)) if matrix else [],
        subgroups=subgroups,
        plots=[(n, base64.b64encode(png).decode("ascii")) for n, png in plots.items()],
        thumbs={n: base64.b64encode(png).decode("ascii") for n, png in (thumbs or {}).items()},
        fmt=_fmt,
    )
