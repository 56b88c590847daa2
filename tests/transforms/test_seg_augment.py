"""Segmentation augmentation: parameters sampled from an explicit generator, then applied."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medsight.transforms.seg_augment import apply_seg_params, sample_seg_params


def _batch(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    y = (torch.rand((shape[0], 1, *shape[2:]), generator=g) * 3).long()
    return x, y


@pytest.mark.parametrize("shape", [(6, 1, 16, 12), (4, 2, 8, 10, 6)])
def test_same_seed_same_batch_and_labels_stay_labels(shape):
    x, y = _batch(shape)
    p1 = sample_seg_params(shape, np.random.default_rng(3))
    p2 = sample_seg_params(shape, np.random.default_rng(3))
    a, b = apply_seg_params(x, y, p1), apply_seg_params(x, y, p2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert set(torch.unique(a[1]).tolist()) <= {0, 1, 2}
    assert a[0].shape == x.shape and a[1].shape == y.shape


def test_identity_parameters_leave_the_batch_unchanged():
    shape = (3, 1, 8, 8)
    x, y = _batch(shape)
    p = dataclasses.replace(
        sample_seg_params(shape, np.random.default_rng(0)),
        matrices=None,
        flips=np.zeros((2, 3), bool),
        brightness=np.ones(3),
        contrast=np.ones(3),
        noise_variance=np.zeros(3),
    )
    xa, ya = apply_seg_params(x, y, p)
    assert torch.allclose(xa, x, atol=1e-6) and torch.equal(ya, y)


def test_a_flip_mirrors_image_and_label_of_that_sample_only():
    shape = (2, 1, 6, 5)
    x, y = _batch(shape)
    flips = np.array([[True, False], [False, False]])  # sample 0, first spatial axis
    p = dataclasses.replace(
        sample_seg_params(shape, np.random.default_rng(0)),
        matrices=None,
        flips=flips,
        brightness=np.ones(2),
        contrast=np.ones(2),
        noise_variance=np.zeros(2),
    )
    xa, ya = apply_seg_params(x, y, p)
    assert torch.allclose(xa[0], torch.flip(x[0], [1]), atol=1e-6)
    assert torch.equal(ya[0], torch.flip(y[0], [1])) and torch.equal(ya[1], y[1])
