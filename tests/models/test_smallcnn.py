"""SmallCNN: shapes and the strided stem's coverage of the input."""

from __future__ import annotations

import pytest
import torch

from medsight.models.arch_defaults import default_arch_args
from medsight.models.smallcnn import SmallCNN


@pytest.mark.parametrize(("size", "stride"), [(28, 2), (64, 4)])
def test_default_3d_stem_sees_every_voxel(size: int, stride: int) -> None:
    args = default_arch_args("smallcnn", 3, 1, 2, [size] * 3)
    assert args["stem_stride"] == stride
    net = SmallCNN(**args | {"channels": [2, 2, 2]})
    assert net(torch.zeros(2, 1, size, size, size)).shape == (2, 2)
    stem = net.encoder[0].conv  # the strided convolution, before normalisation and ReLU
    x = torch.randn(1, 1, size, size, size, requires_grad=True)
    stem(x).abs().sum().backward()
    assert x.grad is not None
    # a 3x3x3 kernel at stride 4 would skip every fourth plane along each axis
    assert bool((x.grad != 0).all())


def test_default_2d_has_no_stem() -> None:
    args = default_arch_args("smallcnn", 2, 3, 5, [28, 28])
    assert args["stem_stride"] == 1
    assert SmallCNN(**args)(torch.zeros(2, 3, 28, 28)).shape == (2, 5)
