"""Risk networks over image embeddings and clinical variables, one visit or a sequence.

:class:`RiskNet` (registry name ``risk_fusion``) takes, per patient, a sequence of visits
padded to a common length: image embeddings ``(B, T, E)`` from a frozen encoder, encoded
clinical variables ``(B, T, C)`` (:mod:`medsight.models.clinical_encoding`), days since the
previous visit ``(B, T)`` and a validity mask ``(B, T)``; it returns one score per patient (a
logit for a binary outcome, a log hazard ratio for time-to-event).  ``arch`` selects:

* ``clinical``: logistic model on the last visit's clinical vector (baseline);
* ``image``: logistic model on the last visit's image embedding (baseline);
* ``late``: late fusion: an image score (linear on the embedding) and the clinical vector
  into one logistic head;
* ``film``: the embedding's hidden features modulated (FiLM: ``h * (1 + gamma) + beta``) by
  the clinical vector, plus a linear clinical term;
* ``gru`` / ``lstm``: a recurrent model over the visits, each step fed the projected
  embedding, the clinical vector and ``log(1 + gap days)``; the last valid step's state scores;
* ``attention``: time-aware attention pooling over the visits: a learned query, keys and values
  from each visit, and a learned decay that down-weights visits by ``log(1 + days before the
  last visit)``.

The frozen encoder may live inside the network (``encoder=`` an architecture spec dict): its
weights are then part of the package and :meth:`RiskNet.embed` computes the embedding (the
input of the encoder's last linear layer, as :func:`medsight.inference.features.capture`
takes it).  Embeddings are standardised with the training mean / std held as buffers.

Examples
--------
>>> import torch
>>> net = RiskNet(arch="gru", embed_dim=6, clin_dim=3, hidden=4)
>>> emb, clin = torch.zeros(2, 5, 6), torch.zeros(2, 5, 3)
>>> gaps, mask = torch.zeros(2, 5), torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]).bool()
>>> net(emb, clin, gaps, mask).shape
torch.Size([2])
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch
from torch import nn

from medsight.core.errors import InvalidInputError

__all__ = ["ARCHS", "RiskNet"]

ARCHS = ("late", "film", "gru", "lstm", "attention", "clinical", "image")
SEQUENCE_ARCHS = ("gru", "lstm", "attention")


def _last(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x[b, last valid t]`` for ``x`` (B, T, D) and ``mask`` (B, T)."""
    idx = (mask.long().cumsum(1).argmax(1)).clamp(min=0)
    return x[torch.arange(len(x)), idx]


class RiskNet(nn.Module):
    """See the module docstring; ``forward(emb, clin, gaps, mask) -> (B,)`` scores."""

    def __init__(
        self,
        arch: str = "late",
        embed_dim: int = 1,
        clin_dim: int = 1,
        hidden: int = 16,
        dropout: float = 0.2,
        encoder: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise InvalidInputError("--arch", f"{arch!r} is not one of {', '.join(ARCHS)}")
        self.arch = arch
        self.embed_dim, self.clin_dim, self.hidden = embed_dim, clin_dim, hidden
        self.register_buffer("emb_mean", torch.zeros(embed_dim))
        self.register_buffer("emb_std", torch.ones(embed_dim))
        self.drop = nn.Dropout(dropout)
        self.encoder: nn.Module | None = None
        if encoder is not None:
            from medsight.models.registry import build_network
            from medsight.models.spec import ArchitectureSpec

            self.encoder = build_network(ArchitectureSpec(**encoder))
            self.encoder.requires_grad_(False)
        c = max(clin_dim, 1)
        if arch == "clinical":
            self.head = nn.Linear(c, 1)
        elif arch == "image":
            self.head = nn.Linear(embed_dim, 1)
        elif arch == "late":
            self.image_score = nn.Linear(embed_dim, 1)
            self.head = nn.Linear(1 + c, 1)
        elif arch == "film":
            self.proj = nn.Linear(embed_dim, hidden)
            self.film = nn.Linear(c, 2 * hidden)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
            self.head = nn.Linear(hidden, 1)
            self.clin_head = nn.Linear(c, 1)
        elif arch in ("gru", "lstm"):
            self.proj = nn.Linear(embed_dim, hidden)
            rnn = nn.GRU if arch == "gru" else nn.LSTM
            self.rnn = rnn(hidden + c + 1, hidden, batch_first=True)
            self.head = nn.Linear(hidden, 1)
        else:  # attention
            self.proj = nn.Linear(embed_dim + c, hidden)
            self.query = nn.Parameter(torch.zeros(hidden))
            self.key = nn.Linear(hidden, hidden)
            self.decay = nn.Parameter(torch.tensor(0.0))
            self.head = nn.Linear(hidden, 1)
            self.clin_head = nn.Linear(c, 1)

    def set_embedding_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the training embeddings' mean and standard deviation (standardisation)."""
        self.emb_mean.copy_(mean)
        self.emb_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(N, E)`` of preprocessed images ``(N, C, *spatial)`` by the encoder."""
        if self.encoder is None:
            raise InvalidInputError("risk model", "has no image encoder inside it")
        linear = [m for m in self.encoder.modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise InvalidInputError("risk model encoder", "has no linear layer for features")
        grabbed: list[torch.Tensor] = []
        thread = threading.get_ident()

        def keep(_module: nn.Module, args: tuple[Any, ...], _output: Any) -> None:
            # a cached RiskPredictor is shared by threads: not another thread's forward pass
            if threading.get_ident() == thread:
                grabbed.append(args[0])

        handle = linear[-1].register_forward_hook(keep)
        try:
            if self.encoder.training:
                self.encoder.eval()
            self.encoder(x)
        finally:
            handle.remove()
        return grabbed[0].reshape(len(x), -1).float()

    def forward(
        self,
        emb: torch.Tensor,
        clin: torch.Tensor,
        gaps: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """One score per patient ``(B,)``."""
        mask = mask.bool()
        emb = (emb - self.emb_mean) / self.emb_std
        if clin.shape[-1] == 0:
            clin = torch.zeros(*clin.shape[:-1], 1, dtype=emb.dtype, device=emb.device)
        if self.arch in SEQUENCE_ARCHS:
            return self._sequence(emb, clin, gaps, mask)
        e, c = self.drop(_last(emb, mask)), _last(clin, mask)
        if self.arch == "clinical":
            out = self.head(c)
        elif self.arch == "image":
            out = self.head(e)
        elif self.arch == "late":
            out = self.head(torch.cat([self.image_score(e), c], dim=1))
        else:  # film
            gamma, beta = self.film(c).chunk(2, dim=1)
            h = torch.relu(self.proj(e) * (1 + gamma) + beta)
            out = self.head(self.drop(h)) + self.clin_head(c)
        return out.reshape(-1)

    def _sequence(
        self, emb: torch.Tensor, clin: torch.Tensor, gaps: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        gap = torch.log1p(gaps.clamp(min=0)).unsqueeze(-1) / math.log1p(30.0)
        if self.arch in ("gru", "lstm"):
            x = torch.cat([self.drop(self.proj(emb)), clin, gap], dim=-1)
            lengths = mask.sum(1).clamp(min=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=True, enforce_sorted=False
            )
            _, state = self.rnn(packed)
            h = state[0] if isinstance(state, tuple) else state
            return self.head(self.drop(h[-1])).reshape(-1)
        times = torch.cumsum(gaps.clamp(min=0) * mask, dim=1)
        before_last = _last(times.unsqueeze(-1), mask) - times
        v = torch.tanh(self.proj(torch.cat([self.drop(emb), clin], dim=-1)))
        score = (self.key(v) @ self.query) / math.sqrt(self.hidden)
        score = score - nn.functional.softplus(self.decay) * torch.log1p(before_last.clamp(min=0))
        weights = torch.softmax(score.masked_fill(~mask, float("-inf")), dim=1)
        pooled = (weights.unsqueeze(-1) * v).sum(1)
        return (self.head(self.drop(pooled)) + self.clin_head(_last(clin, mask))).reshape(-1)
