"""What a reported probability is worth: one honest sentence for the report (numpy only).

A calibrated probability is only as good as the evidence behind it.  Training (and
``scripts/finalize_zoo.py`` for the zoo) stores, with the calibration, the validation
reliability of the probability the report shows (``spec.calibration.reliability``: equal-width
bins with their case counts and observed frequencies, computed out-of-fold) next to the
validated metrics with 95% CIs.  :func:`reliability_statement` turns these into one sentence::

    calibrated probability 0.93; on validation, predictions at 0.9-1.0 were right 11 of 14
    times (79%); model accuracy 0.49 [0.44 to 0.54], AUC 0.74 [0.70 to 0.78] on the test
    split; the model is weak (lower 95% bound of accuracy 0.44 is below 0.70 and lower 95%
    bound of AUC 0.70 is below 0.80)

Probabilities are never printed as ``1.00`` or ``0.00`` (``>0.99`` / ``<0.01``), and a bin
with fewer than :data:`MIN_BIN_CASES` validation cases is said to have unknown reliability.
:func:`weakness` / :func:`is_weak` flag a model whose accuracy or AUC lower 95% bound (test
split where measured, else validation) is below :data:`WEAK_ACCURACY` / :data:`WEAK_AUC`.

The probability passed is the one the report shows: binary, the positive (last) label's;
multi-class / ordinal, the predicted class's; multi-label, that label's.

Examples
--------
>>> from medsight.models.spec import (ArchitectureSpec, CalibrationSpec, InputSpec, LabelSpec,
...     MetricValue, ModelSpec, PreprocessingSpec, ReliabilitySpec)
>>> rel = ReliabilitySpec(kind="top-label", edges=[0.0, 0.5, 1.0], count=[30, 14],
...     confidence=[0.4, 0.95], observed=[0.4, 11 / 14], ece=0.05, n=44)
>>> spec = ModelSpec(name="m", version="1", task="multiclass",
...     architecture=ArchitectureSpec(name="smallcnn"), input=InputSpec(spatial_ndim=2),
...     preprocessing=PreprocessingSpec(), labels=[LabelSpec(index=i, name=str(i))
...     for i in range(3)], metrics=[MetricValue(name="accuracy", value=0.53, ci_low=0.44,
...     ci_high=0.63)], calibration=CalibrationSpec(method="isotonic",
...     params={"x": [[0, 1]] * 3, "y": [[0, 1]] * 3}, reliability=rel))
>>> reliability_statement(spec, 0.9993)  # doctest: +NORMALIZE_WHITESPACE
'calibrated probability >0.99; on validation, predictions at 0.5-1.0 were right 11 of 14
times (79%); model accuracy 0.53 [0.44 to 0.63] on validation; the model is weak (lower 95%
bound of accuracy 0.44 is below 0.70)'
>>> is_weak(spec), format_probability(0.004)
(True, '<0.01')
"""

from __future__ import annotations

import numpy as np

from medsight.core.display import format_probability
from medsight.models.spec import MetricValue, ModelSpec, Task

__all__ = [
    "MIN_BIN_CASES",
    "WEAK_ACCURACY",
    "WEAK_AUC",
    "format_probability",
    "is_weak",
    "reliability_statement",
    "validated_metric",
    "weakness",
]

#: A reliability bin with fewer validation cases than this says nothing (reliability unknown).
MIN_BIN_CASES = 10
#: A model whose accuracy lower 95% bound is below this is weak.
WEAK_ACCURACY = 0.70
#: A model whose AUC lower 95% bound is below this is weak.
WEAK_AUC = 0.80

_ACCURACY = ("accuracy", "subset_accuracy")
_AUC = ("auc", "auc_macro")


def validated_metric(spec: ModelSpec, names: tuple[str, ...]) -> MetricValue | None:
    """The first of ``names`` measured on the test split, else on validation, else ``None``."""
    for split in ("test", "val"):
        for name in names:
            for m in spec.metrics:
                if m.name == name and m.split == split:
                    return m
    return None


def _ci(m: MetricValue) -> str:
    text = format_probability(m.value)
    if m.ci_low is not None and m.ci_high is not None:
        text += f" [{format_probability(m.ci_low)} to {format_probability(m.ci_high)}]"
    return text


def weakness(
    spec: ModelSpec, accuracy_level: float = WEAK_ACCURACY, auc_level: float = WEAK_AUC
) -> str | None:
    """Why the model is weak (a phrase), or ``None`` when its validated bounds clear the levels.

    A model without a validated accuracy or AUC with CI is not called weak here (nothing to
    judge by); the report should say that it is unvalidated.
    """
    reasons = []
    for names, label, level in ((_ACCURACY, "accuracy", accuracy_level), (_AUC, "AUC", auc_level)):
        m = validated_metric(spec, names)
        if m is not None and m.ci_low is not None and m.ci_low < level:
            reasons.append(
                f"lower 95% bound of {label} {format_probability(m.ci_low)} is below {level:.2f}"
            )
    return " and ".join(reasons) if reasons else None


def is_weak(
    spec: ModelSpec, accuracy_level: float = WEAK_ACCURACY, auc_level: float = WEAK_AUC
) -> bool:
    """True when the validated accuracy or AUC lower 95% bound is below its level."""
    return weakness(spec, accuracy_level, auc_level) is not None


def _bin_sentence(spec: ModelSpec, probability: float, label: int | None = None) -> str:
    cal = spec.calibration
    rel = cal.reliability if cal is not None else None
    if rel is None:
        return "its validation reliability was not recorded, so it is unknown"
    edges = np.asarray(rel.edges, dtype=np.float64)
    positive = max(spec.labels, key=lambda lab: lab.index)
    # a binary model's bins are of its last label; another label's probability is 1 - that
    flipped = rel.kind == "positive-class" and label is not None and label != positive.index
    look = 1.0 - probability if flipped else probability
    b = int(np.clip(np.digitize(look, edges[1:-1], right=True), 0, len(rel.count) - 1))
    lo, hi = (1 - edges[b + 1], 1 - edges[b]) if flipped else (edges[b], edges[b + 1])
    span = f"{lo:.1f}-{hi:.1f}"
    count = int(rel.count[b])
    where = "on validation" if rel.split == "val" else f"on the {rel.split} split"
    if count < MIN_BIN_CASES or rel.observed[b] is None:
        few = f"only {count} case{'s' if count != 1 else ''}" if count else "no case"
        return f"{where}, {few} got {span}, so the reliability there is unknown"
    observed = 1.0 - float(rel.observed[b]) if flipped else float(rel.observed[b])
    hits = round(observed * count)
    share = 100 * hits / count
    pct = ">99" if 99 < share < 100 else "<1" if 0 < share < 1 else f"{share:.0f}"
    pct = f"{hits} of {count} times ({pct}%)"
    if rel.kind == "top-label":
        return f"{where}, predictions at {span} were right {pct}"
    if rel.kind == "positive-class":
        named = positive.name
        if flipped:
            named = next(lab.name for lab in spec.labels if lab.index == label)
        return f"{where}, cases given {span} had {named!r} {pct}"
    return f"{where}, labels given {span} were present {pct}"


def reliability_statement(spec: ModelSpec, probability: float, label: int | None = None) -> str:
    """One sentence: the probability, its validated reliability, the model's metrics, weakness.

    Parameters
    ----------
    spec : ModelSpec
        A classification package's spec.
    probability : float
        The probability the report shows (see the module docs for which one).
    label : int, optional
        The label index that probability is of (binary models: when it is not the last
        label, e.g. BreastMNIST's "malignant" at index 0, the bins are read as 1 - p).
    """
    if spec.task is Task.SEGMENTATION:
        raise ValueError("reliability statements are for classification packages")
    p = float(probability)
    cal = spec.calibration
    if cal is not None and cal.method.value != "none":
        head = f"calibrated probability {format_probability(p)}"
        if not cal.converged:
            head += " (the calibration fit did not converge)"
    elif cal is None and spec.temperature:
        head = f"calibrated probability {format_probability(p)} (temperature only)"
    elif cal is not None:
        head = (
            f"probability {format_probability(p)} (uncalibrated: no calibration beat it on "
            "held-out validation cases)"
        )
    else:
        head = f"uncalibrated probability {format_probability(p)}"
    parts = [head, _bin_sentence(spec, p, label)]
    shown = [
        (label, m)
        for label, names in (("accuracy", _ACCURACY), ("AUC", _AUC))
        if (m := validated_metric(spec, names)) is not None
    ]
    if shown:
        split = shown[0][1].split
        where = "on validation" if split == "val" else f"on the {split} split"
        first = f"model {shown[0][0]} {_ci(shown[0][1])}"
        rest = [f"{label} {_ci(m)}" + ("" if m.split == split else f" ({m.split})")
                for label, m in shown[1:]]  # fmt: skip
        parts.append(", ".join([first, *rest]) + f" {where}")
    else:
        parts.append("no validated accuracy or AUC recorded")
    why = weakness(spec)
    if why:
        parts.append(f"the model is weak ({why})")
    return "; ".join(parts)
