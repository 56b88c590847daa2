"""Segmentation training under a time budget: steps planned from the measured speed, an ETA."""

from __future__ import annotations

import pytest

from medsight.cli.app import main
from medsight.models import ModelPackage
from medsight.training import segmentation
from medsight.training.plan import plan_from_dataset
from medsight.training.segmentation import (
    SegTrainConfig,
    load_preprocessed,
    preprocess_dataset,
    train_segmentation,
)

from .seg_synthetic import blob_dataset, tiny


class _Clock:
    """A clock that advances 10 ms at every reading: the run's speed, independent of load."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 0.01
        return self.now


def test_time_budget_plans_the_steps_that_fit_and_shows_an_eta(tmp_path, monkeypatch):
    monkeypatch.setattr(segmentation, "time", _Clock())
    ds = blob_dataset(2, n=4)
    plan = tiny(plan_from_dataset(ds))
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp_path / "p.npz"))
    lines: list[str] = []
    cfg = SegTrainConfig(max_steps=1_000_000, time_budget_s=3.0, val_every=10**6, device="cpu")
    res = train_segmentation(data, plan, cfg, tmp_path / "run", log=lines.append)
    assert res.stopped_by == "time_budget" and res.time_budget_s == 3.0
    assert 10 <= res.steps < 1_000_000
    assert res.seconds <= 3.1  # the budget bounds training
    plan_line = next(line for line in lines if "fits" in line)
    assert "1000000 steps would take" in plan_line and "ETA" in plan_line
    # validation made frequent enough to choose a checkpoint among several
    assert len(res.history) >= 2
    assert all("ETA" in line for line in lines if line.startswith("step "))
    training = ModelPackage.load(res.package).spec.extra["training"]
    assert training["stopped_by"] == "time_budget" and training["time_budget_s"] == 3.0
    assert training["max_steps"] == 1_000_000 and training["device"] == "cpu"


def test_the_step_budget_ends_a_run_before_the_time_budget(tmp_path):
    ds = blob_dataset(2, n=3)
    plan = tiny(plan_from_dataset(ds))
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp_path / "p.npz"))
    res = train_segmentation(
        data, plan, SegTrainConfig(max_steps=2, val_every=1, device="cpu"), tmp_path / "run"
    )
    assert res.stopped_by == "max_steps" and res.steps == 2
    assert res.time_budget_s == 3000.0  # "auto" on a CPU


@pytest.mark.parametrize("bad", ["soon", "-5", "0m"])
def test_cli_refuses_a_time_budget_that_is_not_a_duration(tmp_path, capsys, bad):
    args = ["train", "segment", "--data", "msd:nowhere", "--out", str(tmp_path)]
    assert main([*args, "--time-budget", bad]) == 2
    err = capsys.readouterr().err
    assert "--time-budget" in err and "not a duration" in err
