"""Validate a detection ModelPackage on a data set: FROC, CPM with CIs, ``report.json/html``.

``medsight evaluate`` of a detection package (the detection family's evaluator): each image
goes through :class:`medsight.inference.detect.Detector`, its detections are matched to the
case's annotated lesions and scored with :mod:`medsight.evaluation.detection` (FROC as LUNA16,
per-lesion sensitivities with patient-bootstrap CIs), per class, at the package's operating
threshold and per subgroup.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core.findings import Region
from medsight.evaluation.detection import (
    DEFAULT_FP_RATES,
    FrocCI,
    FrocResult,
    froc,
    froc_bootstrap,
    froc_plot,
    match_image,
)
from medsight.io.atomic import atomic_path, write_text_atomic
from medsight.io.html import write_html

__all__ = ["evaluate_detector"]


def _truth_regions(case: Any) -> tuple[list[tuple[Region, str | None]], list[Region]]:
    """A case's lesions as ``(Region, class name)`` and its irrelevant regions (annotations
    marked ``difficult``, as PASCAL VOC's evaluation ignores them), from
    :func:`medsight.data.detection.annotations_of` (Annotations, or Boxes in pixel-edge
    corners; ``()`` is a normal image)."""
    from medsight.data.detection import annotations_of

    lesions, irrelevant = [], []
    for a in annotations_of(case):
        if str(a.attributes.get("difficult", "0")).strip().lower() in {"1", "true", "yes"}:
            irrelevant.append(a.region)
        else:
            lesions.append((a.region, a.label))
    return lesions, irrelevant


def _select(dataset: Any, split: str | None) -> tuple[list[Any], str]:
    from medsight.evaluation.segmentation import _select as select

    cases, chosen = select(dataset, split)
    return list(cases), chosen


def _foreground(package: Any) -> list[Any]:
    """The package's labels in index order: a detector's labels are its foreground classes,
    and ``Detection.label`` indexes them."""
    return sorted(package.spec.labels, key=lambda lab: lab.index)


def _operating_threshold(package: Any) -> float | None:
    """The operating score threshold chosen on validation (``thresholds["score"]``)."""
    th = package.spec.thresholds
    return float(th["score"]) if "score" in th else None


def _subgroups(
    cases: Sequence[Any],
    preds: Sequence[Any],
    truths: Sequence[Sequence[Region]],
    irrelevant: Sequence[Sequence[Region]],
    patients: Sequence[str],
    by: Sequence[str],
    fp_rates: Sequence[float],
    n_resamples: int,
    seed: int,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """CPM per value of each ``by`` attribute with its patient-bootstrap CI where the rule of
    :mod:`medsight.evaluation.estimability` allows one; groups without any lesion (CPM
    undefined) are listed apart."""
    from medsight.evaluation.estimability import check_ci, with_estimability

    out: dict[str, dict[str, Any]] = {}
    lesion_free: list[dict[str, Any]] = []
    for attr in by:
        values = [str(c.attributes.get(attr)) for c in cases]
        for v in sorted(set(values)):
            pick = [i for i, x in enumerate(values) if x == v]
            sub = [truths[i] for i in pick]
            who = [patients[i] for i in pick]
            n_lesions = sum(len(t) for t in sub)
            if n_lesions == 0:
                lesion_free.append({"group": f"{attr}={v}", "n": len(pick)})
                continue
            ci = froc_bootstrap(
                [preds[i] for i in pick],
                sub,
                fp_rates,
                groups=who,
                irrelevant=[irrelevant[i] for i in pick],
                n_resamples=n_resamples,
                seed=seed,
            )
            entry = {
                "metric": "cpm",
                "value": ci.result.cpm,
                "ci_low": ci.cpm.low,
                "ci_high": ci.cpm.high,
                "n": len(pick),
                "patients": len(set(who)),
                "n_lesions": n_lesions,
            }
            verdict = check_ci(
                len(pick),
                patients=len(set(who)),
                positives=n_lesions,
                needs="positives",
                n_valid=ci.cpm.n_valid,
                n_resamples=ci.cpm.n_resamples,
                low=ci.cpm.low,
                high=ci.cpm.high,
            )
            out[f"{attr}={v}"] = with_estimability(entry, verdict)
    return out, lesion_free


def evaluate_detector(
    package: Any,
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    by: Sequence[str] = (),
    n_resamples: int = 1000,
    seed: int = 0,
    fp_rates: Sequence[float] = DEFAULT_FP_RATES,
    device: str = "auto",
    detector: Any = None,
) -> dict[str, Any]:
    """``medsight evaluate`` for detection packages: FROC, CPM with CIs, ``report.json/html``.

    Each case's image goes through :class:`medsight.inference.detect.Detector` (or
    ``detector``, any object with ``detect(image) -> list[Detection]``); its lesions are the
    case's annotations (:func:`medsight.data.detection.annotations_of`; ``()`` for a normal
    image, while an unlabelled case is refused); annotations marked ``difficult`` are
    irrelevant regions (neither lesions nor false positives, as PASCAL VOC's evaluation).
    The bootstrap resamples patients (the cases' patient ids).  Written into ``out``:
    ``report.json``, ``report.html`` and ``froc.png``.

    Reported beside the class-agnostic FROC: one FROC per class when the package has several
    foreground classes and the truths name them (a detection then counts only for its own
    class), the sensitivity and false positives per image at the package's operating
    threshold, and the CPM per value of each ``by`` attribute (with a patient-bootstrap CI
    where :mod:`medsight.evaluation.estimability` allows one).
    """
    cases, chosen = _select(dataset, split)
    if detector is None:
        from medsight.inference.detect import Detector

        detector = Detector(package) if device == "auto" else Detector(package, device=device)
    fg = _foreground(package)
    names = [lab.name for lab in fg]
    preds: list[list[Any]] = []
    truths: list[list[tuple[Region, str | None]]] = []
    irrelevant: list[list[Region]] = []
    for case in cases:
        lesions_of, irrelevant_of = _truth_regions(case)
        truths.append(lesions_of)
        irrelevant.append(irrelevant_of)
        preds.append(list(detector.detect(case.image())))
    plain_truths = [[r for r, _ in t] for t in truths]
    groups = [c.patient_id or c.case_id for c in cases]
    ci = froc_bootstrap(
        preds,
        plain_truths,
        fp_rates,
        groups=groups,
        irrelevant=irrelevant,
        n_resamples=n_resamples,
        seed=seed,
    )
    curves: dict[str, FrocResult | FrocCI] = {"all classes": ci}
    per_class: dict[str, Any] = {}
    if len(fg) > 1 and any(name is not None for t in truths for _, name in t):
        for k, name in enumerate(names):
            cls_truths = [[r for r, n in t if n == name] for t in truths]
            if not any(cls_truths):
                continue
            cls_preds = [[d for d in p if d.label == k] for p in preds]
            r = froc(cls_preds, cls_truths, fp_rates, irrelevant=irrelevant)
            per_class[name] = r.as_dict()
            curves[name] = r
    threshold = _operating_threshold(package)
    operating = None
    if threshold is not None:
        s, f = ci.result.at_threshold(threshold)
        operating = {"threshold": threshold, "sensitivity": s, "fp_per_image": f}
    subgroups, lesion_free = _subgroups(
        cases, preds, plain_truths, irrelevant, groups, by, fp_rates, n_resamples, seed
    )
    metrics = [{"name": "cpm", **ci.cpm.as_dict()}] + [
        {"name": f"sensitivity@{rate:g}fp", **c.as_dict()}
        for rate, c in zip(fp_rates, ci.sensitivities, strict=True)
    ]
    lesions = []
    for case, pred, truth in zip(cases, preds, truths, strict=True):
        match = match_image(pred, [r for r, _ in truth])
        for n, ((region, name), score) in enumerate(zip(truth, match.lesion_scores, strict=True)):
            lesions.append(
                {
                    "case_id": case.case_id,
                    "lesion": n + 1,
                    "class": name,
                    "center": list(region.center),
                    "size": list(region.size),
                    "detected": bool(np.isfinite(score)),
                    "score": float(score) if np.isfinite(score) else None,
                }
            )
    report = {
        "model": package.id if hasattr(package, "id") else str(package),
        "task": "detection",
        "split": chosen,
        "n_cases": len(cases),
        "n_lesions": ci.result.n_lesions,
        "n_irrelevant_regions": sum(len(x) for x in irrelevant),
        "hit_rule": "detection centre inside the annotated region; one hit per lesion "
        "(its highest score), extra hits ignored (LUNA16); detections on regions marked "
        "difficult count neither way",
        "fp_rates": [float(r) for r in fp_rates],
        "metrics": metrics,
        "froc": ci.result.as_dict() | {"ci": ci.as_dict()},
        "per_class": per_class,
        "operating_point": operating,
        "subgroups": subgroups,
        "subgroups_without_lesions": lesion_free,
        "lesions": lesions,
        "plots": ["froc.png"],
    }
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    png = froc_plot(curves)
    with atomic_path(target / "froc.png") as tmp:
        tmp.write_bytes(png)
    write_text_atomic(target / "report.json", json.dumps(report, indent=1, default=float))
    write_html(
        target / "report.html",
        "detection_eval.html.j2",
        r=report,
        froc_png=base64.b64encode(png).decode("ascii"),
    )
    return report
