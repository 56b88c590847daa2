"""Saliency maps find the evidence a model uses, on the input's own grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.core import Image, InvalidInputError
from medsight.explain import explain_classifier, last_conv_layer


class _Features(torch.nn.Module):
    """Channel 0 sees only the top-left quadrant, channel 1 only the bottom-right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2] // 2, x.shape[3] // 2
        top_left = torch.zeros_like(x)
        top_left[:, :, :h, :w] = 1
        bottom_right = torch.zeros_like(x)
        bottom_right[:, :, h:, w:] = 1
        return torch.cat([x * top_left, x * bottom_right], dim=1)


class _SpotDetector(torch.nn.Module):
    """Class 1 = brightness of the top-left quadrant; class 0 = of the bottom-right."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _Features()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return torch.stack([f[:, 1].mean(dim=(1, 2)), f[:, 0].mean(dim=(1, 2))], dim=1)


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_map_highlights_the_evidence_and_keeps_geometry(method):
    image = Image(np.zeros((64, 48), np.float32), spacing=(0.5, 0.7), origin=(3, 4, 0))
    x = torch.zeros(1, 1, 32, 24)
    x[0, 0, 2:10, 2:10] = 1.0  # a bright spot in the region the model reads
    x[0, 0, 20:28, 14:22] = 1.0  # and one it ignores
    heat = explain_classifier(_SpotDetector(), x, image, 1, method=method, target_layer="features")
    assert heat.shape == image.shape
    np.testing.assert_array_equal(heat.affine, image.affine)
    a = heat.array
    assert a.min() >= 0 and a.max() <= 1
    assert a[4:20, 4:20].mean() > 3 * a[40:56, 28:44].mean() + 1e-6


def test_errors():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(InvalidInputError, match="no convolution"):
        last_conv_layer(net)
    with pytest.raises(InvalidInputError, match="not"):
        explain_classifier(net, torch.zeros(1, 4), Image(np.zeros((2, 2))), 0)
