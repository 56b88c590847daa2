"""The class-conditional GAN generator of ``medsight train synth --method gan``.

A DCGAN-style generator built on MONAI's ``Generator`` (a linear layer from the latent vector to
a small start grid, then transposed-convolution residual units doubling the size): its latent
input is a Gaussian vector concatenated with a learnt embedding of the class, and a ``tanh``
maps the output onto ``[-1, 1]``, the intensity range of every synthesis package (the
package's preprocessing maps it back to the data's units).  The discriminator (MONAI's
``PatchDiscriminator``) is needed only for training and is not packaged.

Sampling is one forward pass; the latent vectors come from a CPU ``torch.Generator`` seeded by
the caller's seed, so the same seed gives the same images on any device.

Examples
--------
>>> args = gan_generator_args(1, 2, [8, 16], size=[16, 16], latent_dim=8)
>>> net = build_gan_generator(args)
>>> import torch
>>> net(torch.zeros(3, 8), torch.tensor([0, 1, 1])).shape
torch.Size([3, 1, 16, 16])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from medsight.core.errors import InvalidInputError

__all__ = ["GAN_ARCH", "ConditionalGenerator", "build_gan_generator", "gan_generator_args"]

#: ``ArchitectureSpec.name`` of a GAN synthesis package's network (the generator).
GAN_ARCH = "conditional_gan_generator"


def gan_generator_args(
    channels: int,
    n_classes: int,
    widths: list[int],
    *,
    size: list[int],
    latent_dim: int = 64,
    embed_dim: int = 16,
    res_units: int = 1,
) -> dict[str, Any]:
    """Arguments of :class:`ConditionalGenerator`: ``len(widths) - 1`` doublings of the size.

    ``size`` must be a multiple of ``2 ** (len(widths) - 1)`` on each axis; the start grid has
    ``widths[-1]`` channels, the last up-sampling ``widths[0]``.
    """
    k = len(widths) - 1
    if any(s % 2**k for s in size):
        raise InvalidInputError("size", f"{size} must be a multiple of {2**k} on each axis")
    return {
        "latent_dim": latent_dim,
        "embed_dim": embed_dim,
        "n_classes": n_classes,
        "start_shape": [widths[-1], *(s // 2**k for s in size)],
        "channels": [*reversed(widths[:-1]), channels],
        "strides": [2] * k + [1],
        "num_res_units": res_units,
    }


class ConditionalGenerator(torch.nn.Module):
    """Latent vector + class index -> image in ``[-1, 1]`` (see the module docstring)."""

    def __init__(
        self,
        latent_dim: int,
        embed_dim: int,
        n_classes: int,
        start_shape: list[int],
        channels: list[int],
        strides: list[int],
        num_res_units: int = 1,
    ) -> None:
        from monai.networks.nets import Generator

        super().__init__()
        self.latent_dim = latent_dim
        self.embed = torch.nn.Embedding(n_classes, embed_dim)
        self.body = Generator(
            latent_shape=(latent_dim + embed_dim,),
            start_shape=start_shape,
            channels=channels,
            strides=strides,
            num_res_units=num_res_units,
            norm="BATCH",
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images ``(n, channels, *size)`` for latents ``(n, latent_dim)`` and labels ``(n,)``."""
        return torch.tanh(self.body(torch.cat([z, self.embed(labels)], dim=1)))


def build_gan_generator(args: Mapping[str, Any]) -> ConditionalGenerator:
    """The generator with ``args`` (as ``ArchitectureSpec.args`` stores them).

    Raises
    ------
    InvalidInputError
        The arguments do not make a generator.
    """
    try:
        return ConditionalGenerator(**args)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"architecture {GAN_ARCH!r}", f"bad arguments: {exc}") from None
