"""The decision at a package's stored operating point: probabilities in, labels out (numpy only).

Inference owns the decision; :mod:`medsight.evaluation` imports it from here to score the same
decisions it reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from medsight.models.group_thresholds import GroupThresholds

__all__ = ["group_decisions", "predict_labels"]


def predict_labels(
    task: str,
    proba: ArrayLike,
    thresholds: Mapping[str, float] | None = None,
    label_names: Sequence[str] | None = None,
) -> NDArray[np.int64]:
    """Decisions from probabilities at thresholds keyed by label name (default 0.5).

    Binary: the second label (index 1) is positive when its probability reaches its threshold;
    multi-label: each label against its own threshold; multi-class and ordinal: arg-max.
    Without ``label_names`` the names are the indices as strings.

    Examples
    --------
    >>> predict_labels("binary", [[0.7, 0.3], [0.4, 0.6]], {"tumour": 0.25}, ["no", "tumour"])
    array([1, 1])
    """
    p = np.asarray(proba, dtype=np.float64)
    th = dict(thresholds or {})
    names = list(label_names) if label_names else [str(k) for k in range(p.shape[1])]
    if task == "binary":
        return (p[:, 1] >= th.get(names[1], 0.5)).astype(np.int64)
    if task == "multilabel":
        t = np.array([th.get(names[k], 0.5) for k in range(p.shape[1])])
        return (p >= t).astype(np.int64)
    return p.argmax(axis=1).astype(np.int64)


def group_decisions(
    task: str,
    proba: ArrayLike,
    thresholds: Mapping[str, float] | None,
    label_names: Sequence[str] | None,
    group_thresholds: GroupThresholds | None,
    values: Sequence[object] | None,
) -> tuple[NDArray[np.int64], list[str]]:
    """Decisions with per-group thresholds where the case's group is known, and which
    operating point each case got.

    ``values`` holds each case's value of ``group_thresholds.attribute`` (``None`` where it is
    not known).  A case gets its group's threshold only when its value is known and a
    threshold was fitted for it; otherwise the global threshold (:func:`predict_labels`).
    Without group thresholds (or for non-binary tasks) every case gets the global decision.

    Examples
    --------
    >>> from medsight.models.group_thresholds import GroupThresholds
    >>> gt = GroupThresholds(attribute="sex", label="yes", target_sensitivity=0.9,
    ...                      global_threshold=0.5, thresholds={"F": 0.3})
    >>> d, used = group_decisions("binary", [[0.6, 0.4]] * 3, {"yes": 0.5}, ["no", "yes"],
    ...                           gt, ["F", "M", None])
    >>> d.tolist(), used[0], used[2]
    ([1, 0, 0], 'group threshold sex=F (0.300)', 'global threshold (sex not known)')
    >>> used[1]
    'global threshold (no group threshold for sex=M)'
    """
    p = np.asarray(proba, dtype=np.float64)
    decisions = predict_labels(task, p, thresholds, label_names)
    if group_thresholds is None or task != "binary":
        return decisions, ["global threshold"] * len(p)
    gt = group_thresholds
    vals = list(values) if values is not None else [None] * len(p)
    if len(vals) != len(p):
        raise ValueError(f"{len(vals)} group values for {len(p)} cases")
    used = []
    for i, v in enumerate(vals):
        t = gt.threshold_for(v)
        if t is None:
            known = v is not None and str(v) != ""
            why = f"no group threshold for {gt.attribute}={v}" if known else "not known"
            used.append(f"global threshold ({why if known else gt.attribute + ' ' + why})")
            continue
        decisions[i] = int(p[i, 1] >= t)
        used.append(f"group threshold {gt.attribute}={v} ({t:.3f})")
    return decisions, used
