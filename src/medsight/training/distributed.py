"""Data-parallel training over several processes with ``torch.distributed`` (torchrun).

A trainer calls :func:`init_from_env` once: under ``torchrun`` (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT`` set) it joins the process group, with the
``gloo`` backend on CPU and ``nccl`` on CUDA (one GPU per process, ``cuda:LOCAL_RANK``); in a
plain process it returns a one-process :class:`DistInfo` and every helper here is a no-op, so
the trainer has one code path.

Conventions the trainers follow (see :func:`medsight.training.classification.train_classifier`):

- ``batch_size`` is the **global** batch: each of ``world`` processes takes ``batch_size /
  world`` samples of every batch, so a 2-process run takes the same optimiser steps on the same
  batches as a 1-process run (the gradients are averaged by DistributedDataParallel).
- Each epoch's sample order is drawn from ``(seed, epoch)`` identically on every process and
  split by :func:`epoch_shard` (a :class:`~torch.utils.data.DistributedSampler` over that order,
  ``shuffle=False``, so rank ``r`` gets positions ``r, r + world, ...``).
- Rank 0 alone writes the checkpoint, the logs and the package; every rank resumes from the
  same checkpoint.  Validation predictions are gathered (:func:`gather_rows`) so the metric is
  computed once, on the whole validation set, and broadcast (:func:`broadcast`).

Examples
--------
>>> info = DistInfo()
>>> info.world, info.is_main, info.distributed
(1, True, False)
>>> epoch_shard([4, 2, 7], info)
[4, 2, 7]
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from numpy.typing import NDArray
from torch.utils.data import DistributedSampler

from medsight.core.errors import InvalidInputError

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "barrier",
    "broadcast",
    "epoch_shard",
    "gather_rows",
    "init_from_env",
    "is_main",
    "launch_command",
    "shutdown",
    "under_torchrun",
]

T = TypeVar("T")

#: How long a collective waits for the other processes before failing (a killed worker).
TIMEOUT = datetime.timedelta(minutes=10)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job: rank, world size, local rank, backend."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    backend: str | None = None
    owns_group: bool = False  # this module initialised the process group (and ends it)

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0


def under_torchrun() -> bool:
    """True when this process was started by torchrun (its environment variables are set)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInputError(
            f"environment variable {name}", f"is not an integer: {raw!r}"
        ) from None


def init_from_env(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when this process runs under torchrun.

    Parameters
    ----------
    device
        The device chosen for a one-process run; on CUDA each process takes
        ``cuda:LOCAL_RANK`` instead.

    Returns
    -------
    (DistInfo, torch.device)
        This process's place in the job and the device it trains on.

    Raises
    ------
    InvalidInputError
        torchrun set inconsistent variables, or CUDA is asked for with fewer GPUs than
        processes on this node.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1 or not under_torchrun():
        return DistInfo(), device
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if not 0 <= rank < world:
        raise InvalidInputError("torchrun environment", f"RANK {rank} outside WORLD_SIZE {world}")
    if device.type == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise InvalidInputError(
                "device",
                f"process {local_rank} on this node has no GPU ({torch.cuda.device_count()} seen)",
                hint="use --nproc no larger than the GPUs of a node, or --device cpu",
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, init_method="env://", timeout=TIMEOUT, **kwargs)
        owns = True
    info = DistInfo(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        local_rank=local_rank,
        local_world=local_world,
        backend=dist.get_backend(),
        owns_group=owns,
    )
    return info, device


def shutdown(info: DistInfo) -> None:
    """End the process group if :func:`init_from_env` started it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True in rank 0, and in a plain process.

    Without a process group (before :func:`init_from_env` or after :func:`shutdown`) the
    rank torchrun gave this process (``RANK``) decides.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return _env_int("RANK", 0) == 0


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every process (no-op in one process)."""
    if _active():
        dist.barrier()


def all_reduce_mean(value: float | torch.Tensor, device: torch.device | None = None) -> float:
    """The mean of ``value`` over all processes (``value`` itself in one process).

    >>> all_reduce_mean(2.5)
    2.5
    """
    t = torch.as_tensor(value, dtype=torch.float64).detach().clone()
    if not _active():
        return float(t)
    if dist.get_backend() == "nccl":
        t = t.to(device or torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t) / dist.get_world_size()


def broadcast(obj: T, src: int = 0) -> T:
    """``obj`` as rank ``src`` has it, on every process (picklable objects)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def epoch_shard(order: Sequence[int] | NDArray[np.int64], info: DistInfo) -> list[int]:
    """This process's part of an epoch's sample order.

    A :class:`torch.utils.data.DistributedSampler` over ``order`` with ``shuffle=False``:
    rank ``r`` takes positions ``r, r + world, ...``, padded by repeating the first samples
    so every rank has the same number of samples (and so the same number of steps).  With a
    per-process batch ``b = batch_size / world``, the ranks' ``j``-th batches together are
    exactly ``order[j * batch_size : (j + 1) * batch_size]``.
    """
    seq = [int(i) for i in order]
    if not info.distributed:
        return seq
    sampler = DistributedSampler(
        seq, num_replicas=info.world, rank=info.rank, shuffle=False, drop_last=False
    )
    return [seq[p] for p in sampler]


def gather_rows(rows: NDArray[Any], n: int, info: DistInfo) -> NDArray[Any]:
    """Reassemble an array whose rows were split with ``rows = full[rank::world]``.

    Each process passes its own rows; every process gets the ``n`` rows in their original
    order (``all_gather_object``, so the ranks' row counts may differ by one).
    """
    if not info.distributed:
        return rows
    parts: list[Any] = [None] * info.world
    dist.all_gather_object(parts, np.asarray(rows))
    out = np.empty((n, *parts[0].shape[1:]), dtype=parts[0].dtype)
    for r, part in enumerate(parts):
        out[r :: info.world] = part
    return out


def launch_command(
    worker: Sequence[str],
    nproc: int,
    *,
    nnodes: str = "1",
    node_rank: int | None = None,
    rdzv_endpoint: str | None = None,
    rdzv_backend: str | None = None,
    rdzv_id: str | None = None,
    max_restarts: int = 0,
) -> list[str]:
    """The torchrun (``python -m torch.distributed.run``) command that runs ``worker``.

    ``worker`` is a module and its arguments (``["-m", "medsight.cli.train", ...]``).  One
    node without a rendezvous endpoint is a ``--standalone`` job on 127.0.0.1; otherwise the
    rendezvous options are passed through to torchrun unchanged.

    >>> launch_command(["-m", "pkg.mod"], 2)[-5:]
    ['--standalone', '--local-addr', '127.0.0.1', '-m', 'pkg.mod']
    """
    if nproc < 1:
        raise InvalidInputError("--nproc", f"must be at least 1, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    cmd += ["--max-restarts", str(max_restarts)]
    if nnodes == "1" and rdzv_endpoint is None:
        cmd += ["--standalone", "--local-addr", "127.0.0.1"]
    else:
        if rdzv_endpoint is None:
            raise InvalidInputError(
                "--nnodes", f"{nnodes} nodes need --rdzv-endpoint HOST:PORT", hint="see torchrun"
            )
        cmd += ["--nnodes", nnodes, "--rdzv-endpoint", rdzv_endpoint]
        cmd += ["--rdzv-backend", rdzv_backend or "c10d"]
        if rdzv_id is not None:
            cmd += ["--rdzv-id", rdzv_id]
        if node_rank is not None:
            cmd += ["--node-rank", str(node_rank)]
    return cmd + list(worker)
