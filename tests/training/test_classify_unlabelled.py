"""``train classify`` leaves out rows without a label (counted) instead of crashing on them."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image as PILImage

from medsight.training.classification import train_classifier
from medsight.training.config import ClassifyConfig


def test_rows_without_label_are_left_out_and_counted(tmp_path, caplog):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    lines = ["file,patient_id,finding"]
    for i in range(28):
        PILImage.fromarray(rng.integers(0, 255, (8, 8)).astype(np.uint8)).save(
            tmp_path / "images" / f"{i}.png"
        )
        label = ("todo" if i % 4 == 3 else "") if i % 7 == 0 or i % 4 == 3 else "ab"[i % 2]
        lines.append(f"{i}.png,p{i},{label}")
    (tmp_path / "meta.csv").write_text("\n".join(lines) + "\n")
    n_unlabelled = sum(1 for line in lines[1:] if line.endswith((",", ",todo")))
    assert n_unlabelled > 0
    cfg = ClassifyConfig(
        data=f"csv:{tmp_path / 'meta.csv'}",
        out=tmp_path / "run",
        epochs=1,
        batch_size=8,
        threads=1,
        progress=False,
        n_resamples=10,
        arch_args={"channels": [4, 8]},
    )
    with caplog.at_level(logging.WARNING):
        pkg = train_classifier(cfg)  # used to fail: "label: None is not a class index"
    n_cases = pkg.spec.training_data.n_cases
    assert n_cases["excluded_no_label"] == n_unlabelled
    assert n_cases["train"] + n_cases["val"] <= 28 - n_unlabelled
    assert f"{n_unlabelled} of 28 cases have no label" in caplog.text
