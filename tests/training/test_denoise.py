"""Denoiser training: a tiny run saves a package, resume is checked, the denoiser learns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsight.core.errors import InvalidInputError
from medsight.inference.denoise import Denoiser
from medsight.models.package import ModelPackage
from medsight.training.denoise import DenoiseConfig, train_denoiser


def _blocks(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Piecewise-constant 8-bit images: a background and two rectangles."""
    out = np.zeros((n, size, size), np.uint8)
    for img in out:
        img[:] = rng.integers(20, 60)
        for _ in range(2):
            a, b = rng.integers(0, size - 8, 2)
            h, w = rng.integers(6, size // 2, 2)
            img[a : a + h, b : b + w] = rng.integers(120, 230)
    return out


def _npz(tmp_path, n=(8, 4, 4), size=16, seed=0, name="breastmnist.npz"):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = _blocks(k, size, rng)
        arrays[f"{split}_labels"] = np.zeros((k, 1), int)
    np.savez(tmp_path / name, **arrays)
    return f"medmnist:{tmp_path / name}"


def _cfg(tmp_path, **kw) -> DenoiseConfig:
    if "data" not in kw:
        kw["data"] = _npz(tmp_path)
    base = dict(
        out=tmp_path / "run",
        steps=4,
        val_every=2,
        patch_size=16,
        channels=[4, 8],
        batch_size=4,
        device="cpu",
        threads=1,
        noise="gaussian",
        levels=(5, 10),
        adversarial_weight=0.1,
    )
    return DenoiseConfig(**(base | kw))


def test_tiny_gan_run_saves_a_package_that_loads_and_runs(tmp_path):
    lines: list[str] = []
    pkg = train_denoiser(_cfg(tmp_path), log=lines.append)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "best.pt",
        "checkpoint.pt",
        "config.json",
        "package",
    ]
    back = ModelPackage.load(pkg.path)
    spec = back.spec
    assert spec.task.value == "denoising" and spec.input.modalities == ["US"]
    assert spec.extra["noise"] == {
        "model": "gaussian",
        "levels": [5.0, 10.0],
        "unit": "percent of the p0.5-p99.5 intensity range",
    }
    names = {m.name for m in spec.metrics}
    assert {"psnr", "ssim", "psnr_noisy", "ssim_noisy"} <= names
    assert all(m.ci_low is not None and m.split == "val" for m in spec.metrics)
    assert spec.training_data.n_cases == {"train": 8, "val": 4}  # never the test cases
    assert "Research use: denoising of US images with gaussian noise" in spec.intended_use
    assert "input_reference" in spec.extra
    assert any("ETA" in line for line in lines)
    out = Denoiser(back, device="cpu").denoise_array(np.ones((1, 16, 16), np.float32))
    assert out.shape == (1, 16, 16)
    assert json.loads((pkg.path / "training_log.json").read_text())[-1]["step"] == 4


def test_resume_continues_and_refuses_a_changed_config(tmp_path):
    cfg = _cfg(tmp_path, adversarial_weight=0.0)
    train_denoiser(cfg, log=lambda s: None)
    with pytest.raises(InvalidInputError, match="holds a checkpoint"):
        train_denoiser(cfg, log=lambda s: None)
    with pytest.raises(InvalidInputError, match="other settings: lr"):
        train_denoiser(cfg.model_copy(update={"resume": True, "lr": 1e-2}), log=lambda s: None)
    lines: list[str] = []
    pkg = train_denoiser(cfg.model_copy(update={"resume": True, "steps": 6}), log=lines.append)
    assert lines[1].startswith("resumed at step 4") and pkg.spec.extra["steps"] == 6


def test_without_a_val_split_a_fifth_of_train_validates(tmp_path):
    data = _npz(tmp_path, n=(10, 0, 3))
    pkg = train_denoiser(_cfg(tmp_path, data=data, steps=1), log=lambda s: None)
    assert pkg.spec.training_data.n_cases == {"train": 8, "val": 2}


def test_the_denoiser_reduces_error_on_an_easy_case(tmp_path):
    """Piecewise-constant images, Gaussian noise, 200 steps: > 2 dB PSNR gain on validation."""
    data = _npz(tmp_path, n=(24, 6, 1), size=32, seed=1)
    cfg = _cfg(
        tmp_path,
        data=data,
        steps=200,
        val_every=50,
        patch_size=32,
        channels=[16, 32],
        batch_size=8,
        levels=(8, 12),
        adversarial_weight=0.0,
        lr=3e-3,
        threads=1,
    )
    pkg = train_denoiser(cfg, log=lambda s: None)
    got = {m.name: m.value for m in pkg.spec.metrics}
    assert got["psnr"] - got["psnr_noisy"] > 2.0, got


def test_extra_data_sets_join_training_equally_and_never_their_test_cases(tmp_path):
    big = _npz(tmp_path, n=(12, 4, 5), seed=1, name="breastmnist.npz")
    small = _npz(tmp_path, n=(3, 2, 7), seed=2, name="pneumoniamnist.npz")
    lines: list[str] = []
    cfg = _cfg(tmp_path, data=big, extra_data=[small], steps=1, max_val_slices=4)
    pkg = train_denoiser(cfg, log=lines.append)
    assert pkg.spec.training_data.n_cases == {"train": 15, "val": 6}  # no test case of either
    assert " + " in pkg.spec.training_data.dataset
    assert any("2 data sets, each equally likely per patch" in line for line in lines)
    assert any(line.startswith(f"denoise: {small}: 3 training slices") for line in lines)


def test_the_draw_is_balanced_over_sets_and_unchanged_for_one_set():
    from medsight.training.denoise import _draw, _val_set

    big = [np.full((2, 2), i, np.float32) for i in range(100)]
    small = [np.full((2, 2), -1, np.float32)]
    got = _draw([big, small], 4000, np.random.default_rng(0))
    share = np.mean([float(s[0, 0]) == -1 for s in got])
    assert 0.45 < share < 0.55  # the one-slice set gets half of the patches
    # one set: exactly the draw of earlier versions (rng.integers over the slices)
    old = [big[int(i)] for i in np.random.default_rng(3).integers(0, 100, 16)]
    new = _draw([big], 16, np.random.default_rng(3))
    assert all(a is b for a, b in zip(old, new, strict=True))
    # validation: an equal share per set
    cfg = DenoiseConfig(data="x:y", out="z", max_val_slices=6, noise="gaussian")
    slices = big[:20] + small * 5
    val = _val_set(slices, [str(i) for i in range(25)], cfg, [0] * 20 + [1] * 5)
    assert len(val) == 6 and sum(float(c[0, 0]) == -1 for c, _, _ in val) == 3
