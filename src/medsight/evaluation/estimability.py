"""When a subgroup's confidence interval can be estimated, and what to say when it cannot.

A percentile bootstrap on a handful of cases gives intervals such as ``0.000 (0.000 to
0.000)``: formally an interval, in fact no information.  Every evaluator that prints subgroup
CIs applies one rule, so a report says "not estimable (n=4, positives=1)" instead.

The rule (constants below):

- a subgroup needs at least :data:`MIN_CASES` cases (and :data:`MIN_PATIENTS` patients, as
  the bootstrap resamples patients) for any CI;
- a metric that needs positives (sensitivity, and AUC) needs at least :data:`MIN_PER_CLASS`
  positives; one that needs negatives (specificity, and AUC) at least as many negatives;
  multi-class AUC / kappa need two classes with that many cases each;
- the metric must be defined in at least :data:`MIN_VALID_FRACTION` of the bootstrap
  resamples (otherwise the interval describes only the resamples that happened to contain
  both classes);
- an interval of zero width (every resample gave the same value, e.g. a group whose scores
  are all equal) is reported as not estimable by the percentile bootstrap.

The point estimate is still reported where it is defined; only the CI fields become ``None``
with ``estimable: false`` and a ``ci_note``.

Examples
--------
>>> check_ci(4, positives=1, negatives=3, needs="positives").note
'not estimable (n=4, positives=1): fewer than 10 cases'
>>> check_ci(40, positives=20, negatives=20, needs="both", n_valid=1000, n_resamples=1000,
...          low=0.7, high=0.9).estimable
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = [
    "MIN_CASES",
    "MIN_PATIENTS",
    "MIN_PER_CLASS",
    "MIN_VALID_FRACTION",
    "Estimability",
    "check_ci",
    "class_needs",
    "subgroup_mean",
    "with_estimability",
]

MIN_CASES = 10
MIN_PATIENTS = 5
MIN_PER_CLASS = 5
MIN_VALID_FRACTION = 0.9


@dataclasses.dataclass(frozen=True)
class Estimability:
    """Whether a CI can be given; ``note`` says why not (empty when it can)."""

    estimable: bool
    note: str = ""


def class_needs(metric: str) -> str:
    """Which classes metric ``metric`` needs: ``"positives"``, ``"negatives"``, ``"both"``,
    ``"classes"`` (two classes, multi-class) or ``""`` (none: accuracy, means).

    Examples
    --------
    >>> class_needs("sensitivity"), class_needs("auc"), class_needs("accuracy")
    ('positives', 'both', '')
    """
    name = metric.split("[", 1)[0]
    if name == "sensitivity":
        return "positives"
    if name == "specificity":
        return "negatives"
    if name == "auc":
        return "both"
    if name in {"auc_macro", "qwk"}:
        return "classes"
    return ""


def check_ci(
    n: int,
    *,
    patients: int | None = None,
    positives: int | None = None,
    negatives: int | None = None,
    class_counts: list[int] | None = None,
    needs: str = "",
    n_valid: int | None = None,
    n_resamples: int | None = None,
    low: float | None = None,
    high: float | None = None,
) -> Estimability:
    """Apply the rule of this module to one subgroup metric.

    Parameters
    ----------
    n, patients : int
        Cases and patients (clusters) in the subgroup.
    positives, negatives : int, optional
        Binary class counts (what ``needs`` checks).
    class_counts : list of int, optional
        Cases per class (multi-class ``needs="classes"``).
    needs : str
        From :func:`class_needs`.
    n_valid, n_resamples : int, optional
        Resamples where the metric was defined, out of how many.
    low, high : float, optional
        The interval, to catch one of zero width or NaN.
    """
    counts = f"n={n}"
    if positives is not None:
        counts += f", positives={positives}"
    if needs in {"negatives", "both"} and negatives is not None:
        counts += f", negatives={negatives}"

    def no(why: str) -> Estimability:
        return Estimability(False, f"not estimable ({counts}): {why}")

    if n < MIN_CASES:
        return no(f"fewer than {MIN_CASES} cases")
    if patients is not None and patients < MIN_PATIENTS:
        return no(f"fewer than {MIN_PATIENTS} patients")
    if needs in {"positives", "both"} and positives is not None and positives < MIN_PER_CLASS:
        return no(f"fewer than {MIN_PER_CLASS} positives")
    if needs in {"negatives", "both"} and negatives is not None and negatives < MIN_PER_CLASS:
        return no(f"fewer than {MIN_PER_CLASS} negatives")
    enough = sum(c >= MIN_PER_CLASS for c in class_counts or [])
    if needs == "classes" and class_counts is not None and enough < 2:
        return no(f"fewer than two classes with {MIN_PER_CLASS} cases each")
    if n_valid is not None and n_resamples and n_valid < MIN_VALID_FRACTION * n_resamples:
        return no(f"the metric was defined in only {n_valid} of {n_resamples} bootstrap resamples")
    if low is None or high is None or low != low or high != high:
        if n_valid is not None or low is not None:
            return no("no bootstrap interval")
    elif high - low <= 0:
        return no("every bootstrap resample gave the same value (zero-width interval)")
    return Estimability(True)


def with_estimability(entry: dict[str, Any], verdict: Estimability) -> dict[str, Any]:
    """``entry`` (a metric as plain data with ``ci_low`` / ``ci_high``) with ``estimable`` and
    ``ci_note``; the CI fields set to ``None`` when not estimable.

    Examples
    --------
    >>> e = with_estimability({"value": 0.0, "ci_low": 0.0, "ci_high": 0.0},
    ...                       Estimability(False, "not estimable (n=3)"))
    >>> e["value"], e["ci_low"], e["estimable"], e["ci_note"]
    (0.0, None, False, 'not estimable (n=3)')
    """
    out = dict(entry)
    if not verdict.estimable:
        out["ci_low"] = out["ci_high"] = None
    out["estimable"] = verdict.estimable
    out["ci_note"] = verdict.note
    return out


def subgroup_mean(
    values: Any, clusters: Any, *, n_resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Mean of a per-case quantity (Dice, PSNR) in one subgroup with its patient-level
    bootstrap CI, or ``estimable: false`` with the reason (the rule of this module).

    Undefined values (NaN, e.g. a Dice with neither mask nor prediction) are left out and
    counted in ``n_undefined``.

    Examples
    --------
    >>> r = subgroup_mean([0.8, 0.9, 0.7], ["a", "b", "c"], n_resamples=20)
    >>> round(r["value"], 3), r["ci_low"], r["ci_note"]
    (0.8, None, 'not estimable (n=3): fewer than 10 cases')
    """
    import numpy as np

    from medsight.evaluation.bootstrap import bootstrap_ci

    raw = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(raw)
    vals, ids = raw[keep], [c for c, k in zip(clusters, keep, strict=True) if k]
    n, patients = int(vals.size), len(set(ids))
    size = check_ci(n, patients=patients)
    out: dict[str, Any] = {"value": float(vals.mean()) if n else None}
    out |= {"ci_low": None, "ci_high": None, "n": n, "patients": patients}
    if n < raw.size:
        out["n_undefined"] = int(raw.size - n)
    if not size.estimable:
        return with_estimability(out, size)
    r = bootstrap_ci(np.mean, vals, groups=ids, n_resamples=n_resamples, seed=seed)
    out["ci_low"], out["ci_high"] = r.low, r.high
    verdict = check_ci(
        n, patients=patients, n_valid=r.n_valid, n_resamples=r.n_resamples, low=r.low, high=r.high
    )
    return with_estimability(out, verdict)
