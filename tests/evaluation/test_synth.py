"""Synthesis evaluation: Frechet distance and the memorisation check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsight.core import Case, Image, Split
from medsight.data.dataset import Dataset, Task
from medsight.evaluation.synth import (
    evaluate_synthesizer,
    frechet_distance,
    nearest_training,
    pixel_vectors,
)


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 5))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shifts = [frechet_distance(a, a + s) for s in (0.5, 1.0, 2.0)]
    # a pure mean shift s on every axis adds exactly 5 s^2 (same covariance)
    assert shifts == pytest.approx([5 * 0.25, 5 * 1.0, 5 * 4.0], rel=1e-6)
    # reference: two 1-D Gaussians N(0, 1) and N(0, 4): (1 - 2)^2 = 1 (closed form)
    b = rng.normal(size=(20000, 1))
    assert frechet_distance(b, 2 * b) == pytest.approx(1.0, rel=0.02)


def test_memorisation_check_flags_an_exact_copy():
    rng = np.random.default_rng(1)
    train = [Image(rng.integers(0, 255, (8, 8)).astype(np.uint8)) for _ in range(10)]
    novel = Image(rng.integers(0, 255, (8, 8)).astype(np.uint8))
    copy = Image(np.asarray(train[3].array).copy())  # an exact copy of training image 3
    idx, r = nearest_training(pixel_vectors([novel, copy]), pixel_vectors(train))
    assert idx[1] == 3 and r[1] == pytest.approx(1.0) and r[0] < 0.95


def test_evaluate_synthesizer_writes_the_report(tmp_path):
    from medsight.inference.synth import build_diffusion_unet, synthesis_spec_for_tests
    from medsight.models import ModelPackage

    spec = synthesis_spec_for_tests(["a", "b"], size=[8, 8])
    torch.manual_seed(0)
    pkg = ModelPackage.save(tmp_path / "p", spec, build_diffusion_unet(spec.architecture.args)
                            .state_dict())  # fmt: skip
    rng = np.random.default_rng(2)
    cases = [
        Case(f"{s}{i}", images={"image": Image(rng.integers(0, 255, (8, 8)).astype(np.uint8))},
             label=i % 2, split=s)
        for s in (Split.TRAIN, Split.TEST) for i in range(6)
    ]  # fmt: skip
    ds = Dataset("toy", cases, task=Task.BINARY, label_names={0: "a", 1: "b"})
    report = evaluate_synthesizer(pkg, ds, tmp_path / "eval", n_resamples=20, steps=2)
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["split"] == "test" and saved["n_synthetic"] == 6 == report["n_cases"]
    names = {m["name"] for m in saved["metrics"]}
    assert {"frechet_distance", "near_copy_fraction_synthetic"} <= names
    assert "no ImageNet weights" in saved["encoder"]
    assert set(saved["per_class"]) == {"a", "b"}
    assert "synthetic" in (tmp_path / "eval" / "report.html").read_text()
