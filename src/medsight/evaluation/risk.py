"""Evaluating a risk package: AUC or C-index with patient-level CIs, calibration, subgroups,
per-variable contributions; JSON plus an HTML page.

* **Discrimination**: binary outcomes, ROC AUC; time-to-event, Harrell's C-index
  (:mod:`medsight.evaluation.survival`); percentile bootstrap 95% CIs over patients (one
  timeline per patient, so resampling rows resamples patients).
* **Calibration** (binary): Brier score, ECE and a reliability diagram of the calibrated
  probabilities (:mod:`medsight.evaluation.calibration`, :func:`~medsight.evaluation.plots.
  reliability_plot`).
* **Subgroups**: age bands, sex and view (of the last visit) by default; a subgroup's CI
  follows the shared rule of :mod:`medsight.evaluation.estimability` (too few patients or
  too few of either outcome / events says *not estimable* with the reason, instead of a
  degenerate interval).
* **Contributions**: permutation importance: the drop in AUC / C-index when one clinical
  variable's encoded columns (or the image embeddings) are shuffled across patients, mean and
  spread over repeats, as a bar plot.  This is model-agnostic and needs no extra library
  (``sklearn.inspection.permutation_importance`` wants a 2-D estimator input, which sequences
  are not).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.evaluation.bootstrap import bootstrap_ci
from medsight.evaluation.calibration import expected_calibration_error
from medsight.evaluation.classification import roc_auc
from medsight.evaluation.survival import concordance_index
from medsight.inference.risk import RiskBatch, RiskPredictor, timelines_for_package

__all__ = [
    "discrimination",
    "evaluate_risk",
    "outcome_metrics",
    "permutation_importance",
    "subgroup_metrics",
]


def discrimination(batch: RiskBatch, score: NDArray[np.float64], survival: bool) -> float:
    """AUC (binary) or C-index (time-to-event) of ``score`` on ``batch``'s outcomes."""
    if survival:
        return concordance_index(batch.time, score, batch.event)
    return roc_auc(batch.label.astype(np.int64), score)


def _ci(
    metric: Callable[..., float], arrays: Sequence[NDArray[Any]], n_resamples: int, seed: int
) -> dict[str, Any]:
    r = bootstrap_ci(metric, *arrays, n_resamples=n_resamples, seed=seed)
    low = None if np.isnan(r.low) else r.low
    high = None if np.isnan(r.high) else r.high
    return {"value": r.value, "ci_low": low, "ci_high": high, "n_valid_resamples": r.n_valid}


def outcome_metrics(
    batch: RiskBatch,
    prediction: NDArray[np.float64],
    survival: bool,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Metrics with patient-level bootstrap CIs: ``auc``, ``brier``, ``ece`` or ``c_index``."""
    out: dict[str, dict[str, Any]] = {}
    n = len(batch)
    if survival:
        out["c_index"] = _ci(
            lambda t, e, s: concordance_index(t, s, e),
            [batch.time, batch.event, prediction],
            n_resamples,
            seed,
        ) | {"n": n, "events": int(np.nansum(batch.event))}
        return out
    y = batch.label.astype(np.int64)
    extra = {"n": n, "positives": int(y.sum())}
    try:
        out["auc"] = _ci(roc_auc, [y, prediction], n_resamples, seed) | extra
    except InvalidInputError:
        out["auc"] = {"value": float("nan"), "note": "not estimable: one outcome class only"}
        out["auc"] |= extra
    out["brier"] = (
        _ci(lambda a, p: float(np.mean((p - a) ** 2)), [y, prediction], n_resamples, seed) | extra
    )
    out["ece"] = {"value": expected_calibration_error(y, prediction)} | extra
    return out


def _age_band(age: Any) -> str:
    if age is None:
        return "missing"
    a = float(age)
    return "<50" if a < 50 else ("50-69" if a < 70 else ">=70")


def subgroup_metrics(
    batch: RiskBatch,
    prediction: NDArray[np.float64],
    last_values: Sequence[dict[str, Any]],
    survival: bool,
    by: Sequence[str],
    *,
    n_resamples: int = 500,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """AUC / C-index per subgroup, keyed ``"attr=group"`` (``age_band=<50``, ``sex=F`` ...).

    The point estimate is given where defined (NaN otherwise); the CI follows the shared rule
    of :mod:`medsight.evaluation.estimability` (enough patients, enough of each outcome or
    events, defined in enough resamples, not of zero width), else ``estimable: false`` with
    the reason in ``ci_note``.
    """
    from medsight.evaluation.estimability import check_ci, with_estimability

    out: dict[str, dict[str, Any]] = {}
    for attr in by:
        if attr == "age_band":
            keys = [_age_band(v.get("age")) for v in last_values]
        else:
            keys = [str(v.get(attr)) if v.get(attr) is not None else "missing" for v in last_values]
        if all(k == "missing" for k in keys):
            continue
        for key in sorted(set(keys)):
            idx = [i for i, k in enumerate(keys) if k == key]
            sub = batch.take(idx)
            outcome = sub.event if survival else sub.label
            pos = int(np.nansum(outcome))
            entry: dict[str, Any] = {"n": len(idx), "positives": pos, "negatives": len(idx) - pos}
            arrays = [sub.label, sub.time, sub.event, prediction[idx]]
            try:
                entry["value"] = _discriminate(*arrays, survival)
            except (InvalidInputError, ValueError):
                entry |= {"value": float("nan"), "ci_low": None, "ci_high": None}
                verdict = check_ci(
                    len(idx),
                    positives=pos,
                    negatives=len(idx) - pos,
                    needs="both",
                    n_valid=0,
                    n_resamples=n_resamples,
                )
                out[f"{attr}={key}"] = with_estimability(entry, verdict)
                continue
            verdict = check_ci(len(idx), positives=pos, negatives=len(idx) - pos, needs="both")
            if verdict.estimable:
                r = bootstrap_ci(
                    lambda y, t, e, p: _discriminate(y, t, e, p, survival),
                    *arrays,
                    n_resamples=n_resamples,
                    seed=seed,
                )
                entry |= {"ci_low": r.low, "ci_high": r.high}
                verdict = check_ci(
                    len(idx),
                    positives=pos,
                    negatives=len(idx) - pos,
                    needs="both",
                    n_valid=r.n_valid,
                    n_resamples=r.n_resamples,
                    low=r.low,
                    high=r.high,
                )
            else:
                entry |= {"ci_low": None, "ci_high": None}
            out[f"{attr}={key}"] = with_estimability(entry, verdict)
    return out


def _discriminate(
    label: NDArray[Any],
    time: NDArray[Any],
    event: NDArray[Any],
    score: NDArray[Any],
    survival: bool,
) -> float:
    if survival:
        return concordance_index(time, score, event)
    return roc_auc(label.astype(np.int64), score)


def permutation_importance(
    predictor: RiskPredictor,
    batch: RiskBatch,
    *,
    n_repeats: int = 20,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Drop in AUC / C-index when a variable (or the image) is shuffled across patients.

    Each clinical variable's encoded columns are permuted together (all visits of a patient
    move with it); ``image`` permutes the embeddings.  Sorted by mean drop, largest first.
    """
    survival = predictor.survival
    base = discrimination(batch, predictor.scores(batch), survival)
    rng = np.random.default_rng(seed)
    groups = {name: cols for name, cols in predictor.encoder.column_groups().items()}
    targets: list[tuple[str, list[int] | None]] = list(groups.items())
    if predictor.uses_images:
        targets.append(("image", None))
    out = []
    for name, cols in targets:
        drops = []
        for _ in range(n_repeats):
            perm = rng.permutation(len(batch))
            if cols is None:
                shuffled = batch.replace(emb=batch.emb[perm])
            else:
                clin = batch.clin.copy()
                clin[:, :, cols] = batch.clin[perm][:, :, cols]
                shuffled = batch.replace(clin=clin)
            drops.append(base - discrimination(batch, predictor.scores(shuffled), survival))
        out.append(
            {
                "variable": name,
                "mean_drop": float(np.mean(drops)),
                "std_drop": float(np.std(drops)),
                "n_repeats": n_repeats,
            }
        )
    return sorted(out, key=lambda r: -r["mean_drop"])


def _importance_plot(rows: list[dict[str, Any]], metric: str) -> bytes:
    from medsight.evaluation.plots import _figure, _png

    fig, ax = _figure()
    names = [r["variable"] for r in rows][::-1]
    means = [r["mean_drop"] for r in rows][::-1]
    spread = [r["std_drop"] for r in rows][::-1]
    ax.barh(names, means, xerr=spread, color="C0", alpha=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(xlabel=f"drop in {metric} when shuffled", title="Permutation importance")
    return _png(fig)


def _subgroup_plot(groups: dict[str, dict[str, Any]], metric: str) -> bytes:
    """Point estimates with their CIs; a group whose CI is not estimable shows its point (if
    any) without bars and the words "CI not estimable"."""
    from medsight.evaluation.plots import _figure, _png

    fig, ax = _figure()
    labels = [f"{key} (n={g['n']})" for key, g in groups.items()]
    v = np.asarray([g["value"] for g in groups.values()], float)
    low = np.asarray([g["ci_low"] if g.get("estimable") else np.nan for g in groups.values()])
    high = np.asarray([g["ci_high"] if g.get("estimable") else np.nan for g in groups.values()])
    y = np.arange(len(labels))[::-1]
    ax.errorbar(v, y, xerr=np.vstack([v - low.astype(float), high.astype(float) - v]), fmt="o")
    for yi, g in zip(y, groups.values(), strict=True):
        if not g.get("estimable"):
            ax.text(0.02, yi, "CI not estimable", fontsize=6, va="center", color="grey")
    ax.axvline(0.5, color="grey", ls=":")
    ax.set_yticks(y, labels, fontsize=6)
    ax.set(xlim=(0, 1), xlabel=f"{metric} (95% CI)", title="Subgroups")
    return _png(fig)


def _split_patients(pkg: Any, dataset: Any, split: str | None) -> tuple[list[str] | None, str]:
    """The patient ids of ``split`` from the package's ``splits.json`` (None: every patient).

    ``split=None``: the test part when the data set is the one the package was trained on
    (same name) and the package has its splits, otherwise every patient; ``"all"``: every one.
    """
    splits_file = pkg.path / "splits.json"
    trained_on = pkg.spec.training_data.dataset if pkg.spec.training_data else None
    if split is None:
        same = splits_file.is_file() and getattr(dataset, "name", None) == trained_on
        split = "test" if same else "all"
    if split == "all":
        return None, "all"
    if not splits_file.is_file():
        raise InvalidInputError(pkg.path, "has no splits.json", hint="use --split all")
    parts = json.loads(splits_file.read_text(encoding="utf-8"))
    if split not in parts:
        raise InvalidInputError(f"split {split!r}", f"is not one of {sorted(parts)} or all")
    return list(parts[split]), split


def evaluate_risk(
    package: Any,
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    by: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    n_repeats: int = 20,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate a risk package on a data set; writes ``report.json`` and ``report.html``.

    Parameters
    ----------
    package : ModelPackage
    dataset : Dataset
        Built into timelines as the package's training did (target, variables, times).
    split : str or None
        ``test`` / ``val`` / ``train``: the patients of that part of the package's own
        patient-level split (its ``splits.json``); ``all``: every patient with an outcome (an
        external set); None: ``test`` on the training data set, ``all`` on another.
    by : sequence of str
        Subgroup attributes (default, also for an empty list: ``age_band``, ``sex``, ``view``
        where the data has them).
    n_repeats : int
        Permutations per variable for the contributions.

    Returns
    -------
    dict
        ``metrics`` (list of name, value, CI, n), ``subgroups`` (``attr=group`` -> value, CI
        or why not estimable), ``permutation_importance``, ``n_cases`` (patients),
        ``excluded`` (rows / patients without the outcome).
    """
    if options:
        raise InvalidInputError("risk evaluation", f"unknown options {sorted(options)}")
    from medsight.models.package import ModelPackage

    pkg = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
    predictor = RiskPredictor(pkg)
    timelines = timelines_for_package(pkg, dataset)
    ids, split_name = _split_patients(pkg, dataset, split)
    if ids is not None:
        timelines = timelines.subset(ids)
    if len(timelines) == 0:
        raise InvalidInputError(f"split {split_name}", "holds no patient with an outcome")
    batch = predictor.batch(list(timelines))
    prediction = predictor.from_scores(predictor.scores(batch))
    survival = predictor.survival
    metric = "C-index" if survival else "AUC"
    found = outcome_metrics(batch, prediction, survival, n_resamples=n_resamples, seed=seed)
    metrics = [{"name": name} | m for name, m in found.items()]
    last_values = [_case_attrs(t) | dict(t.last.values) for t in timelines]
    by = list(by) if by else ["age_band", "sex", "view"]
    groups = subgroup_metrics(
        batch, prediction, last_values, survival, by, n_resamples=n_resamples, seed=seed
    )
    importance = permutation_importance(predictor, batch, n_repeats=n_repeats, seed=seed)
    plots = {"importance": _importance_plot(importance, metric)}
    if groups:
        plots["subgroups"] = _subgroup_plot(groups, metric)
    if not survival:
        from medsight.evaluation.plots import reliability_plot

        plots["reliability"] = reliability_plot(batch.label, prediction)
    report = {
        "model": pkg.id,
        "task": "risk",
        "split": split_name,
        "target": timelines.target,
        "survival": survival,
        "n_cases": len(timelines),
        "patients": len(timelines),
        "excluded": timelines.excluded,
        "metrics": metrics,
        "subgroups": groups,
        "permutation_importance": importance,
        "n_resamples": n_resamples,
    }
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    from medsight.io.atomic import write_text_atomic
    from medsight.io.html import write_html

    write_text_atomic(folder / "report.json", json.dumps(report, indent=1, default=float))
    images = {k: base64.b64encode(v).decode("ascii") for k, v in plots.items()}
    write_html(
        folder / "report.html", "risk_eval.html.j2", report=report, plots=images, metric=metric
    )
    return report


def _case_attrs(timeline: Any) -> dict[str, Any]:
    case = timeline.last.case
    if case is None:
        return {}
    return {k: case.attributes.get(k) for k in ("sex", "view", "age") if k in case.attributes}
