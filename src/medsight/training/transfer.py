"""Transfer learning: initialise a network from a package or an SSL encoder; freeze the encoder.

A network's *head* is its final classification layer (``net.head`` for ``smallcnn``, else the
last ``nn.Linear``); everything else is the *encoder*.  Weights are copied by name where the
shapes match, so a head for a different number of classes starts fresh.

Examples
--------
>>> from medsight.models.smallcnn import SmallCNN
>>> src = SmallCNN(2, 1, 5, channels=(4, 8)); dst = SmallCNN(2, 1, 2, channels=(4, 8))
>>> copied, skipped = copy_matching(dst, src.state_dict())
>>> skipped
['head.1.weight', 'head.1.bias']
>>> head_prefix(dst), set_encoder_frozen(dst, True)
('head.', 2)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from medsight.core.errors import InvalidInputError

__all__ = [
    "copy_matching",
    "encoder_state",
    "head_prefix",
    "init_from_package",
    "init_from_ssl",
    "set_encoder_frozen",
]


def head_prefix(net: nn.Module) -> str:
    """State-dict prefix of the network's head."""
    if isinstance(getattr(net, "head", None), nn.Module):
        return "head."
    last = None
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise InvalidInputError(f"network {type(net).__name__}", "has no linear head")
    return f"{last}."


def encoder_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without the head."""
    prefix = head_prefix(net)
    return {k: v for k, v in net.state_dict().items() if not k.startswith(prefix)}


def copy_matching(net: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Copy entries whose name and shape match; return (copied, skipped) names."""
    own = net.state_dict()
    copied, skipped = [], []
    for k, v in state.items():
        if k in own and own[k].shape == v.shape:
            own[k] = v.clone()
            copied.append(k)
        else:
            skipped.append(k)
    net.load_state_dict(own)
    return copied, skipped


def _check_copied(copied: list[str], net: nn.Module, source: str | os.PathLike[str]) -> None:
    n_encoder = len(encoder_state(net))
    if len([k for k in copied if not k.startswith(head_prefix(net))]) < n_encoder:
        raise InvalidInputError(
            source,
            f"matches only {len(copied)} of the network's {n_encoder} encoder tensors",
            hint="use the same architecture and arguments as the source model",
        )


def init_from_package(net: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Copy a ModelPackage's weights into ``net`` (all encoder tensors must match)."""
    from medsight.models.package import ModelPackage

    copied, _ = copy_matching(net, ModelPackage.load(path).state_dict())
    _check_copied(copied, net, path)
    return copied


def init_from_ssl(net: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Copy a self-supervised encoder checkpoint (:func:`medsight.training.ssl.pretrain`)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(p, "pre-trained encoder checkpoint does not exist")
    payload = torch.load(p, map_location="cpu", weights_only=True)
    if "encoder" not in payload:
        raise InvalidInputError(p, "is not a medsight SSL checkpoint (no 'encoder' entry)")
    copied, _ = copy_matching(net, payload["encoder"])
    _check_copied(copied, net, p)
    return copied


def set_encoder_frozen(net: nn.Module, frozen: bool) -> int:
    """Freeze (or unfreeze) every parameter outside the head; return the trainable count."""
    prefix = head_prefix(net)
    n = 0
    for name, param in net.named_parameters():
        param.requires_grad_(name.startswith(prefix) or not frozen)
        n += int(param.requires_grad)
    return n
