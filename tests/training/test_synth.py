"""Synthesis training (tiny DDPM, a few steps on 16x16 two-class toy data)."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core import InvalidInputError
from medsight.core.task import Task
from medsight.models import ModelPackage
from medsight.training.synth import SynthConfig, train_synthesizer


def toy_npz(path, *, shape=(16, 16), n=16):
    """Two classes: dark noise (0) and a bright square (1), in train, val and test."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        y = np.arange(n) % 2
        x = rng.integers(0, 50, (n, *shape)).astype(np.uint8)
        x[y == 1, 4:10, 4:10] = 250
        arrays |= {f"{split}_images": x, f"{split}_labels": y[:, None]}
    np.savez(path, **arrays)
    return f"medmnist:{path}?task=binary"


def _cfg(data, out, **kw):
    base = dict(data=data, out=out, steps=4, batch_size=8, widths=[8, 16], timesteps=50,
                val_every=2, threads=1, device="cpu")  # fmt: skip
    return SynthConfig(**(base | kw))


def test_train_saves_a_loadable_synthesis_package(tmp_path):
    data = toy_npz(tmp_path / "toy.npz")
    lines: list[str] = []
    pkg = train_synthesizer(_cfg(data, tmp_path / "run"), log=lines.append)
    assert pkg.spec.task is Task.SYNTHESIS and pkg.spec.label_names == ["0", "1"]
    assert pkg.spec.preprocessing.intensity_args == {"mean": 127.5, "std": 127.5}
    assert pkg.spec.training_data.n_cases == {"train": 16, "val": 16}
    assert any("ETA" in line and "val loss" in line for line in lines)
    again = ModelPackage.load(tmp_path / "run" / "package")
    assert again.sha256 == pkg.sha256
    card = (again.path / "MODEL_CARD.md").read_text()
    assert "SYNTHETIC" in card and "toy" in card
    assert {"config.json", "checkpoint.pt", "training_log.csv"} <= {
        p.name for p in (tmp_path / "run").iterdir()
    }


def test_resume_continues_exactly_and_refuses_a_changed_config(tmp_path):
    data = toy_npz(tmp_path / "toy.npz")
    whole = train_synthesizer(_cfg(data, tmp_path / "a"), log=lambda _: None)
    train_synthesizer(_cfg(data, tmp_path / "b", steps=2), log=lambda _: None)
    with pytest.raises(InvalidInputError, match="--resume"):
        train_synthesizer(_cfg(data, tmp_path / "b"), log=lambda _: None)
    with pytest.raises(InvalidInputError, match="other settings: lr"):
        train_synthesizer(_cfg(data, tmp_path / "b", lr=1e-3, resume=True), log=lambda _: None)
    resumed = train_synthesizer(_cfg(data, tmp_path / "b", resume=True), log=lambda _: None)
    assert resumed.sha256 == whole.sha256  # step-seeded batches and noise: same weights


def test_3d_data_is_refused_with_a_clear_message(tmp_path):
    data = toy_npz(tmp_path / "toy3d.npz", shape=(8, 8, 8), n=4)
    with pytest.raises(InvalidInputError, match="3D images; synthesis trains on 2D"):
        train_synthesizer(_cfg(data, tmp_path / "run"), log=lambda _: None)
