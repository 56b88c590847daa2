"""Bias mitigation at training time: balancing the (group, label) cells of the training set.

``--balance reweight`` weights each training case's loss by the inverse frequency of its
(group, label) cell, normalised so the weights average 1 over the training set: every cell
then contributes the same total weight, whatever its size.  ``--balance group-sample`` draws
each epoch's cases with :class:`torch.utils.data.WeightedRandomSampler` (with replacement,
as many draws as cases) with those weights, so every cell is drawn equally often in
expectation.  Both balance the labels within each group too, so they replace the trainer's
class-imbalance handling (``--imbalance``) rather than stacking on it.

Cases without the group attribute (including synthetic training images) form their own
cell (group ``""``); the package records the cell counts.  Multi-label tasks are not
supported (a case's cell would be its whole label set).

The default is ``none``: a mitigation trades overall accuracy and calibration for a smaller
gap, and whether that trade is worth it is for the measurement (``benchmarks/
fairness_mitigation.py``, :func:`medsight.evaluation.fairness.compare_methods`) and the
user to decide; it also needs a group attribute that many data sets lack.

Examples
--------
>>> import numpy as np
>>> w = cell_weights(["F", "F", "F", "M"], np.array([0, 0, 1, 1]))
>>> w.round(3).tolist()    # cells (F,0): 2 cases, (F,1): 1, (M,1): 1; weights average 1
[0.667, 0.667, 1.333, 1.333]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Balance", "cell_counts", "cell_keys", "cell_weights", "group_sample_order"]


class Balance(StrEnum):
    """How training balances the (group, label) cells of a group attribute."""

    NONE = "none"
    REWEIGHT = "reweight"  # loss weight ~ 1 / cell frequency
    GROUP_SAMPLE = "group-sample"  # WeightedRandomSampler over the cells


def cell_keys(groups: Sequence[Any], y: NDArray[np.int64]) -> list[tuple[str, int]]:
    """``(group, label)`` per case; a missing group value is ``""``."""
    return [("" if g is None else str(g), int(label)) for g, label in zip(groups, y, strict=True)]


def cell_counts(groups: Sequence[Any], y: NDArray[np.int64]) -> dict[str, int]:
    """Cases per cell, keyed ``"group|label"`` (for the package's record).

    Examples
    --------
    >>> cell_counts(["F", None], np.array([1, 0]))
    {'F|1': 1, '|0': 1}
    """
    return {f"{g}|{label}": n for (g, label), n in Counter(cell_keys(groups, y)).items()}


def cell_weights(groups: Sequence[Any], y: NDArray[np.int64]) -> NDArray[np.float64]:
    """Per-case weight: inverse frequency of its (group, label) cell, mean 1 over the cases."""
    keys = cell_keys(groups, y)
    if not keys:
        return np.zeros(0)
    freq = Counter(keys)
    w = np.array([1.0 / freq[k] for k in keys])
    return np.asarray(w * len(w) / w.sum(), dtype=np.float64)


def group_sample_order(weights: NDArray[np.float64], generator: Any) -> NDArray[np.int64]:
    """One epoch's case indices from a ``WeightedRandomSampler`` (with replacement, as many
    draws as cases) driven by ``generator`` (a seeded :class:`torch.Generator`)."""
    from torch.utils.data import WeightedRandomSampler

    sampler = WeightedRandomSampler(
        weights.tolist(), num_samples=len(weights), replacement=True, generator=generator
    )
    return np.fromiter(iter(sampler), dtype=np.int64, count=len(weights))
