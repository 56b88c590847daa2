"""Synthesizer: deterministic by seed, the requested label, the data's units."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.core import InvalidInputError
from medsight.inference.synth import (
    Synthesizer,
    build_diffusion_unet,
    synthesis_spec_for_tests,
)
from medsight.models import ModelPackage


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    spec = synthesis_spec_for_tests(["benign", "malignant"], size=[16, 16])
    torch.manual_seed(0)
    net = build_diffusion_unet(spec.architecture.args)
    with torch.no_grad():  # MONAI zero-initialises the output layer: make the network act
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ModelPackage.save(tmp_path_factory.mktemp("p") / "synth", spec, net.state_dict())


def _arrays(images):
    return np.stack([im.array for im in images])


def test_same_seed_same_images_other_seed_other_images(package):
    synth = Synthesizer(package)
    a = _arrays(synth.sample(3, "malignant", seed=5, steps=3))
    b = _arrays(Synthesizer(package).sample(3, "malignant", seed=5, steps=3, batch_size=2))
    c = _arrays(synth.sample(3, "malignant", seed=6, steps=3))
    assert np.array_equal(a, b)  # batching does not change the result either
    assert not np.array_equal(a, c)


def test_requested_label_range_dtype_and_provenance(package):
    images = Synthesizer(package).sample(2, "benign", seed=1, steps=2)
    assert [im.shape for im in images] == [(16, 16)] * 2
    arr = _arrays(images)
    assert arr.dtype == np.uint8 and 0 <= arr.min() <= arr.max() <= 255
    meta = images[1].meta
    assert meta["synthetic"] is True and meta["label"] == "benign" and meta["label_index"] == 0
    assert (meta["model"], meta["seed"], meta["index"]) == ("toy-synth", 1, 1)
    other = _arrays(Synthesizer(package).sample(2, 1, seed=1, steps=2))
    assert not np.array_equal(arr, other)  # the class condition changes the images


def test_bad_requests_are_clear_errors(package, tmp_path):
    synth = Synthesizer(package)
    with pytest.raises(InvalidInputError, match=r"'cyst': is not a class .* 'benign', 'malignant'"):
        synth.sample(1, "cyst")
    with pytest.raises(InvalidInputError, match="steps"):
        synth.sample(1, 0, steps=10_000)
    with pytest.raises(InvalidInputError, match="at least 1"):
        synth.sample(0, 0)


def test_features_have_one_row_per_image(package):
    synth = Synthesizer(package)
    feats = synth.features(synth.sample(3, 0, seed=0, steps=2))
    assert feats.shape == (3, 16) and np.isfinite(feats).all()
