"""A segmentation run folder: evaluated as is, refuses a changed resume, carries a reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsight.analysis.segmentation import analyze_segmentation as _segmentation
from medsight.cli.app import main
from medsight.core.errors import InvalidInputError
from medsight.models import ModelPackage
from medsight.models.plausibility import assess, input_statistics
from medsight.training.plan import plan_from_dataset
from medsight.training.segmentation import (
    SegTrainConfig,
    _analysis_input_stats,
    load_preprocessed,
    preprocess_dataset,
    train_segmentation,
)
from medsight.transforms.preprocess import normalize_intensity

from .seg_synthetic import blob_dataset, tiny


def _run(tmp_path, steps=2, **cfg):
    ds = blob_dataset(2, n=3)
    plan = tiny(plan_from_dataset(ds))
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp_path / "p.npz"))
    config = SegTrainConfig(max_steps=steps, val_every=1, device="cpu", **cfg)
    return ds, plan, data, train_segmentation(data, plan, config, tmp_path / "run")


def test_evaluate_finds_the_package_of_a_segmentation_run_folder(tmp_path, monkeypatch, capsys):
    ds, _, _, res = _run(tmp_path)
    run = tmp_path / "run"
    assert res.package == str(run / "package") and not (run / "model").exists()
    monkeypatch.setattr("medsight.data.load_dataset", lambda spec: ds)
    out = tmp_path / "eval"
    code = main(["evaluate", str(run), "--data", "blobs", "--out", str(out), "--n-resamples",
                 "10", "--no-tta"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "report.json").read_text())["task"] == "segmentation"
    # neither a package nor a run folder: one line naming the folder and what was looked for
    code = main(["evaluate", str(tmp_path), "--data", "blobs", "--out", str(tmp_path / "e2")])
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path) in err
    assert "model/model.json" in err and "package/model.json" in err


def test_resume_refuses_another_config_or_plan(tmp_path):
    _, plan, data, _ = _run(tmp_path)
    run = tmp_path / "run"
    with pytest.raises(InvalidInputError, match=r"lr, seed") as err:
        train_segmentation(
            data, plan, SegTrainConfig(max_steps=3, lr=0.1, seed=5, device="cpu"), run
        )
    assert str(run) in str(err.value) and "new --out" in str(err.value)
    other = plan.model_copy(update={"batch_size": 3})
    with pytest.raises(InvalidInputError, match=r"plan\.batch_size"):
        train_segmentation(data, other, SegTrainConfig(max_steps=3, device="cpu"), run)
    # the same settings (more steps, another device choice) resume as before
    again = train_segmentation(data, plan, SegTrainConfig(max_steps=3, val_every=1), run)
    assert again.steps == 3 and [h["step"] for h in again.history] == [1, 2, 3]


def test_package_has_an_input_reference_that_accepts_training_images(tmp_path):
    ds, plan, _, res = _run(tmp_path)
    pkg = ModelPackage.load(res.package)
    ref = pkg.spec.extra["input_reference"]
    assert set(ref) == {"mean", "std", "p01", "p99"}
    for case in ds:
        if case.split.value == "train":
            arr = np.asarray(case.image().array, dtype=np.float32)[None]  # as the analysis does
            stats = input_statistics(normalize_intensity(arr, pkg.spec.preprocessing))
            assert stats == _analysis_input_stats(case.image(), plan)
            result = assess(stats, ref)
            assert result.plausible and not result.warnings
            # and through the analysis itself
            assert not _segmentation(pkg, case.image()).plausibility.warnings
