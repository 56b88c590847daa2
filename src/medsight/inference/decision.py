"""The decision at a package's stored operating point: probabilities in, labels out (numpy only).

Inference owns the decision; :mod:`medsight.evaluation` imports it from here to score the same
decisions it reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["predict_labels"]


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
