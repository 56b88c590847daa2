"""`EnsembleNet`: several trained networks as one network that averages calibrated
probabilities.

Classifiers (:mod:`medsight.training.ensemble`) and segmentation networks
(:mod:`medsight.training.seg_folds`, temperatures 1: the softmax is over ``dim=1``, the class
axis of ``(N, K)`` logits and of ``(N, K, *spatial)`` voxel logits alike) use it the same way.

A seed or fold ensemble is stored as one ModelPackage whose architecture is ``ensemble``: the
arguments list each member's architecture, its temperature (fitted on that member's own
validation / out-of-fold logits) and an input affine ``(scale, shift)`` that maps the package's
preprocessed input onto what that member was trained on (fold members standardise with their
own training mean and std).  The weights file holds every member under ``members.<k>.``.

The network returns the *log* of the averaged calibrated probabilities (single-label tasks) or
their log-odds (multi-label), so the package needs no further calibration: the softmax (or
sigmoid) a Predictor applies returns the average exactly, and everything that runs a package's
network (Predictor, ONNX export, feature hooks, Grad-CAM) runs an ensemble unchanged.

Examples
--------
>>> import torch
>>> member = dict(name="smallcnn", args=dict(spatial_dims=2, in_channels=1, out_channels=2,
...     channels=[4, 8]))
>>> net = EnsembleNet(members=[member, member], temperatures=[1.0, 2.0]).eval()
>>> x = torch.zeros(3, 1, 8, 8)
>>> p = torch.softmax(net(x), dim=1)
>>> ps = [torch.softmax(m(x) / t, dim=1) for m, t in zip(net.members, [1.0, 2.0])]
>>> bool(torch.allclose(p, (ps[0] + ps[1]) / 2, atol=1e-6))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medsight.core.errors import InvalidInputError

__all__ = ["EnsembleNet"]

_EPS = 1e-7


def _logits(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple | list) else output  # MONAI ViT: a tuple


class EnsembleNet(nn.Module):
    """Members whose temperature-scaled probabilities are averaged.

    Parameters
    ----------
    members : list of dict
        ``{"name": registry name, "args": {...}}`` per member (an ``ArchitectureSpec``).
    temperatures : list of float
        One positive temperature per member.
    input_affine : list of [scale, shift], optional
        Per member: ``x_member = scale * x + shift``; default the identity.
    multilabel : bool
        Sigmoid per label (and log-odds out) instead of a softmax over classes.
    """

    def __init__(
        self,
        members: Sequence[dict[str, Any]],
        temperatures: Sequence[float],
        input_affine: Sequence[Sequence[float]] | None = None,
        multilabel: bool = False,
    ) -> None:
        from medsight.models.registry import build_network
        from medsight.models.spec import ArchitectureSpec

        super().__init__()
        affine = input_affine or [[1.0, 0.0]] * len(members)
        if not members or len(temperatures) != len(members) or len(affine) != len(members):
            raise InvalidInputError(
                "ensemble architecture",
                f"{len(members)} members, {len(temperatures)} temperatures and "
                f"{len(affine)} input affines must be equal in number and at least one",
            )
        if any(not t > 0 for t in temperatures):
            raise InvalidInputError(
                "ensemble architecture", f"temperatures {temperatures} must be > 0"
            )
        if any(m.get("name", "").lower() == "ensemble" for m in members):
            raise InvalidInputError("ensemble architecture", "a member cannot be an ensemble")
        self.members = nn.ModuleList(build_network(ArchitectureSpec(**m)) for m in members)
        self.register_buffer("temperatures", torch.tensor(list(temperatures), dtype=torch.float32))
        self.register_buffer("affine", torch.tensor([list(a) for a in affine], dtype=torch.float32))
        self.multilabel = multilabel

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's calibrated probabilities, shape ``(members, N, K)``."""
        out = []
        for k, member in enumerate(self.members):
            z = _logits(member(x * self.affine[k, 0] + self.affine[k, 1])) / self.temperatures[k]
            out.append(torch.sigmoid(z) if self.multilabel else torch.softmax(z, dim=1))
        return torch.stack(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean calibrated probability (log-odds of it for multi-label)."""
        p = self.member_probabilities(x).mean(dim=0).clamp(_EPS, 1 - _EPS)
        return torch.log(p) - torch.log1p(-p) if self.multilabel else torch.log(p)
