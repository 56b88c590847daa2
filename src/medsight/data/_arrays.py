"""Small array helpers shared by the adapters and the scan (numpy only)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["value_counts"]


def value_counts(arr: NDArray) -> tuple[NDArray, NDArray]:
    """Distinct values and their counts; ``bincount`` for small non-negative integers (fast).

    Examples
    --------
    >>> value_counts(np.array([[0, 2], [2, 2]], np.uint8))
    (array([0, 2]), array([1, 3]))
    """
    flat = arr.ravel(order="K")
    if flat.size == 0:
        return np.unique(flat, return_counts=True)
    small_ints = flat.dtype.kind in "ub" or (flat.dtype.kind == "i" and flat.min() >= 0)
    if small_ints and int(flat.max()) < 65536:
        counts = np.bincount(flat.astype(np.intp, copy=False))
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(flat, return_counts=True)
