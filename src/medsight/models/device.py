"""Choosing the torch device a model runs on (shared by training and inference).

torch is imported when a device is selected, not when this module is imported.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from medsight.core.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

__all__ = ["select_device"]

#: Whether this process has already chosen its CPU thread count (see :func:`select_device`).
_cpu_threads_chosen = False


def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU (using every core).

    On CPU the first call in a process sets one torch thread per core, unless
    ``OMP_NUM_THREADS`` is set (the user's choice, e.g. one thread per batch worker).  Later
    calls leave the count alone, so a thread count a caller set after the first call (a
    config's ``threads``) is not undone by the predictors that evaluation builds.

    Raises
    ------
    InvalidInputError
        A CUDA device is asked for on a machine without one.
    """
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError("device", f"{name!r} requested but no CUDA device is available")
    global _cpu_threads_chosen
    if name == "cpu" and not _cpu_threads_chosen:
        _cpu_threads_chosen = True
        if not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(max(1, os.cpu_count() or 1))
    return torch.device(name)
