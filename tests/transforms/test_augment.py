"""Augmentation: parameters drawn from an explicit generator, deterministic application."""

from __future__ import annotations

import dataclasses

import torch

from medsight.transforms import AugmentConfig, apply_params, augmentation_for, sample_params


def test_same_generator_seed_same_batch():
    cfg = augmentation_for("US", 2)
    x = torch.rand(6, 1, 16, 16)
    a = apply_params(x, sample_params(cfg, x.shape, torch.Generator().manual_seed(1)))
    b = apply_params(x, sample_params(cfg, x.shape, torch.Generator().manual_seed(1)))
    c = apply_params(x, sample_params(cfg, x.shape, torch.Generator().manual_seed(2)))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_only_the_chosen_samples_along_the_chosen_axis():
    cfg = AugmentConfig(flip_axes=[0])
    x = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)
    p = sample_params(cfg, x.shape, torch.Generator().manual_seed(0))
    p = dataclasses.replace(p, flips=torch.tensor([[True], [False]]))
    out = apply_params(x, p)
    assert torch.equal(out[0], torch.flip(x[0], dims=[1]))  # index axis 0 = tensor dim 1
    assert torch.equal(out[1], x[1])


def test_all_off_is_identity_in_2d_and_3d():
    for shape in [(3, 2, 8, 8), (2, 1, 6, 6, 6)]:
        x = torch.rand(shape)
        p = sample_params(AugmentConfig(), x.shape, torch.Generator().manual_seed(0))
        assert torch.allclose(apply_params(x, p), x)


def test_modality_defaults_respect_anatomy():
    assert augmentation_for("CR", 2).flip_axes == []  # laterality of chest radiographs
    assert augmentation_for("US", 2).flip_axes == [0]  # probe stays at the top
    assert augmentation_for("OP", 2).flip_axes == [0, 1]
    assert augmentation_for("CT", 3).flip_axes == [0]


def test_gain_and_offset_are_applied():
    x = torch.ones(2, 1, 4, 4)
    p = sample_params(AugmentConfig(contrast=0.5, brightness=0.5), x.shape,
                      torch.Generator().manual_seed(3))  # fmt: skip
    out = apply_params(x, p)
    expected = (p.gain + p.offset).view(-1, 1, 1, 1).expand_as(x)
    assert torch.allclose(out, expected)
