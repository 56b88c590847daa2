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


def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU (using every core).

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
    if name == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    return torch.device(name)
