"""A small VGG-style CNN for low-resolution inputs (MedMNIST's 28 px and 28^3/64^3 volumes).

Built from MONAI ``Convolution`` blocks.  The network is split into ``encoder`` (features,
globally pooled to one vector) and ``head`` (dropout + linear), so transfer learning can
re-initialise the head and freeze the encoder, and self-supervised pre-training can train the
encoder alone.

Examples
--------
>>> import torch
>>> net = SmallCNN(spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16))
>>> net(torch.zeros(3, 1, 28, 28)).shape
torch.Size([3, 2])
>>> net.feature_dim
16
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from torch import nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """Stages of two 3x3 conv-BN-ReLU blocks, max-pooling between stages, global average pool.

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    in_channels, out_channels : int
    channels : sequence of int
        Feature channels per stage.
    dropout : float
        Dropout before the linear head.
    stem_stride : int
        When above 1, a strided convolution first reduces the resolution (cheap 3D); its
        kernel (3 for stride 2, 7 for stride 4) covers every input voxel.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (32, 64, 128),
        dropout: float = 0.2,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        if stem_stride > 1:
            layers.append(
                Convolution(
                    spatial_dims,
                    prev,
                    channels[0],
                    strides=stem_stride,
                    kernel_size=2 * stem_stride - 1,
                    act="relu",
                    norm="batch",
                )
            )
            prev = channels[0]
        max_pool = Pool[Pool.MAX, spatial_dims]
        avg_pool = Pool[Pool.ADAPTIVEAVG, spatial_dims]
        for i, ch in enumerate(channels):
            for _ in range(2):
                layers.append(
                    Convolution(spatial_dims, prev, ch, kernel_size=3, act="relu", norm="batch")
                )
                prev = ch
            if i < len(channels) - 1:
                layers.append(max_pool(kernel_size=2))
        layers += [avg_pool(1), nn.Flatten()]
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(prev, out_channels))
        self.feature_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels)``."""
        return self.head(self.encoder(x))
