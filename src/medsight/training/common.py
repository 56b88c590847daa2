"""Helpers every trainer shares: seeding, device and threads, checkpoints, early stopping.

Checkpoints hold the model, optimiser, scheduler, epoch, best metric and every random state,
and are written atomically, so a killed run resumes where it stopped with the same results.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import random
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.core.errors import InvalidInputError
from medsight.io.atomic import atomic_path
from medsight.models.device import select_device  # re-exported; it lives in models

__all__ = [
    "EarlyStopping",
    "channels_last_format",
    "check_same_config",
    "load_checkpoint",
    "open_run_folder",
    "portable_config",
    "save_checkpoint",
    "seed_everything",
    "select_device",
    "write_training_log",
]


def check_same_config(
    path: str | os.PathLike[str], cfg: Any, may_change: Collection[str] = ()
) -> None:
    """Refuse to resume a run whose saved config (``path``) differs from ``cfg``.

    Only the fields in ``may_change`` (steps, device, threads ...) may differ; a missing file
    means a new run.  ``cfg`` is a pydantic model; the file is its JSON.

    Raises
    ------
    InvalidInputError
        Names ``path`` and every field that changed.
    """
    p = Path(path)
    if not p.is_file():
        return
    kind = type(cfg)
    before = kind.model_validate_json(p.read_text(encoding="utf-8"))
    changed = sorted(
        k
        for k in kind.model_fields
        if k not in may_change and getattr(before, k) != getattr(cfg, k)
    )
    if changed:
        raise InvalidInputError(
            p,
            f"the checkpoint was trained with other settings: {', '.join(changed)}",
            hint="resume with the same options, or start a new run in another --out",
        )


def open_run_folder(
    cfg: Any, may_change: Collection[str] = (), checkpoint: str = "checkpoint.pt"
) -> tuple[Path, Path]:
    """Create the run folder ``cfg.out`` and check it may be used: ``(folder, checkpoint path)``.

    A checkpoint already there is an earlier run: refused unless ``cfg.resume``, and then only
    with the same settings (:func:`check_same_config` on the folder's ``config.json``).

    Raises
    ------
    InvalidInputError
        The folder holds a checkpoint and ``cfg.resume`` is false, or the settings changed.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / checkpoint
    if ckpt.exists() and not cfg.resume:
        raise InvalidInputError(
            out,
            "holds a checkpoint of an earlier run",
            hint="pass --resume to continue it, or choose another --out",
        )
    if cfg.resume and ckpt.exists():
        check_same_config(out / "config.json", cfg, may_change)
    return out, ckpt


def portable_config(cfg: Any, path_fields: Collection[str]) -> dict[str, Any]:
    """``cfg`` as JSON data without this machine's folders, for a package's ``config.json``.

    The ``path_fields`` and the data spec's path keep only their file names.

    Examples
    --------
    >>> from pydantic import BaseModel
    >>> class C(BaseModel):
    ...     data: str
    ...     out: str | None = None
    >>> portable_config(C(data="medmnist:/x/y/b.npz?task=binary", out="/runs/a"), ["out"])
    {'data': 'medmnist:b.npz?task=binary', 'out': 'a'}
    """
    data = cfg.model_dump(mode="json")
    for key in path_fields:
        if data.get(key):
            data[key] = Path(data[key]).name
    kind, _, rest = cfg.data.partition(":")
    data["data"] = f"{kind}:{Path(rest).name}" if rest else cfg.data
    return data


def seed_everything(seed: int, *, deterministic: bool = True) -> np.random.Generator:
    """Seed Python, numpy and torch; return a numpy Generator to pass on explicitly.

    Examples
    --------
    >>> a = seed_everything(7).integers(0, 1000); b = seed_everything(7).integers(0, 1000)
    >>> bool(a == b)
    True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # third-party code may still use the global state
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return np.random.default_rng(seed)


def channels_last_format(spatial_ndim: int) -> torch.memory_format:
    """The channels-last memory format for 2D or 3D convolutions.

    On this project's reference CPU (2 cores) it made a training step of the default small
    CNN about 1.2x (2D, 28 px) and 1.6x (3D, 64^3) faster; results are the same up to
    floating-point summation order.

    >>> channels_last_format(2), channels_last_format(3)
    (torch.channels_last, torch.channels_last_3d)
    """
    return torch.channels_last_3d if spatial_ndim == 3 else torch.channels_last


def save_checkpoint(path: str | os.PathLike[str], **state: Any) -> Path:
    """Save ``state`` (modules and optimisers are stored by their ``state_dict``) atomically.

    Random states of Python, numpy and torch are added under ``"rng"``.
    """
    payload: dict[str, Any] = {}
    for key, value in state.items():
        payload[key] = value.state_dict() if hasattr(value, "state_dict") else value
    payload["rng"] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def load_checkpoint(path: str | os.PathLike[str], **targets: Any) -> dict[str, Any]:
    """Load a checkpoint; restore ``targets`` (modules/optimisers) and the random states.

    Returns the remaining (non-module) entries, e.g. ``epoch`` and ``best``.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(p, "checkpoint does not exist")
    payload = torch.load(p, map_location="cpu", weights_only=False)
    for key, obj in targets.items():
        if key not in payload:
            raise InvalidInputError(p, f"checkpoint has no entry {key!r}")
        obj.load_state_dict(payload.pop(key))
    rng = payload.pop("rng", None)
    if rng:
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    return payload


@dataclasses.dataclass
class EarlyStopping:
    """Stop when the validation metric has not improved for ``patience`` epochs.

    Examples
    --------
    >>> stop = EarlyStopping(patience=2, mode="max")
    >>> [stop.step(v) for v in (0.5, 0.7, 0.6, 0.65)]
    [False, False, False, True]
    >>> stop.best, stop.best_epoch
    (0.7, 1)
    """

    patience: int = 10
    mode: str = "max"
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = -1
    epoch: int = -1
    improved: bool = False

    def step(self, value: float) -> bool:
        """Record this epoch's metric; return True when training should stop."""
        self.epoch += 1
        better = (
            self.best is None
            or (self.mode == "max" and value > self.best + self.min_delta)
            or (self.mode == "min" and value < self.best - self.min_delta)
        )
        self.improved = bool(better)
        if better:
            self.best, self.best_epoch = float(value), self.epoch
        return self.epoch - self.best_epoch >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """For checkpoints."""
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """From checkpoints."""
        for key, value in state.items():
            setattr(self, key, value)


def write_training_log(out: str | os.PathLike[str], rows: list[dict[str, Any]]) -> str:
    """Write ``rows`` (one dict per epoch / step) as ``out/training_log.csv``; the CSV text.

    The text is also what a package keeps as its own ``training_log.csv``; no rows give an
    empty file.

    Examples
    --------
    >>> import tempfile
    >>> write_training_log(tempfile.mkdtemp(), [{"epoch": 0, "loss": 0.5}]).splitlines()
    ['epoch,loss', '0,0.5']
    """
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = buf.getvalue()
    (Path(out) / "training_log.csv").write_text(text, encoding="utf-8")
    return text
