"""Fixtures for classification training tests: tiny learnable MedMNIST-format files."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.training.config import ClassifyConfig


def _write_npz(path, *, n=24, size=12, rgb=False, three_d=False, n_classes=2, multilabel=False):
    """A learnable toy set: class k gets a bright square at position k."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, m in (("train", n), ("val", n // 2), ("test", n // 2)):
        labels = rng.integers(0, n_classes, m)
        shape = (m, *([size] * (3 if three_d else 2)), *((3,) if rgb else ()))
        imgs = rng.integers(0, 60, shape).astype(np.uint8)
        for i, k in enumerate(labels):
            imgs[(i, slice(2 * k, 2 * k + 3), slice(2, 5))] = 250
        if multilabel:
            ind = np.zeros((m, n_classes), np.uint8)
            ind[np.arange(m), labels] = 1
            ind[:, -1] |= (np.arange(m) % 3 == 0).astype(np.uint8)
            arrays[f"{split}_labels"] = ind
        else:
            arrays[f"{split}_labels"] = labels[:, None]
        arrays[f"{split}_images"] = imgs
    np.savez(path, **arrays)
    return path


def _cfg_for(tmp_path, data, **kw):
    base = dict(
        data=data, out=tmp_path / "run", epochs=2, batch_size=8, patience=5, progress=False,
        threads=1, n_resamples=20, arch_args={"channels": [4, 8]},
    )  # fmt: skip
    return ClassifyConfig(**(base | kw))


@pytest.fixture
def write_npz():
    """Write a toy ``.npz`` (class k has a bright square at position k); returns its path."""
    return _write_npz


@pytest.fixture
def cfg_for():
    """A ClassifyConfig for seconds-long runs: ``cfg_for(folder, data_spec, **overrides)``."""
    return _cfg_for
