"""The segmentation family's runner: stages as files, reused only when made from the same inputs."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from tests.cli.test_segment_cli import _msd

from medsight.families import family_named
from medsight.models import ModelPackage
from medsight.models.seg_plan import SegmentationPlan
from medsight.training.seg_runner import PREPROCESSED_INFO_FILE, SegmentationRun
from medsight.training.segmentation import SegTrainConfig


def _run(tmp_path, **kw) -> SegmentationRun:
    data = f"msd:{_msd(tmp_path / 'blobs')}" if not (tmp_path / "blobs").exists() else None
    return SegmentationRun(
        data=data or f"msd:{tmp_path / 'blobs'}",
        out=tmp_path / "run",
        modality="MR",
        name="blobs",
        train=SegTrainConfig(max_steps=2, val_every=1, device="cpu", resume=False),
        **kw,
    )


def test_runner_stages_and_a_changed_plan_is_preprocessed_again(tmp_path):
    run_fn = family_named("segmentation").load("run")
    logs: list[str] = []
    pkg = run_fn(_run(tmp_path), log=logs.append)
    assert isinstance(pkg, ModelPackage) and pkg.spec.labels[0].name == "blob"
    out = tmp_path / "run"
    made = json.loads((out / PREPROCESSED_INFO_FILE).read_text())
    assert set(made) == {"plan_sha256", "splits_sha256", "data", "max_cases", "quantize"}
    # model.json's preprocessing is the plan's (one description)
    plan = SegmentationPlan.load(out / "plan.json")
    assert pkg.spec.preprocessing == plan.preprocessing(pkg.spec.input.channels)

    # same inputs: the preprocessed stage is reused
    logs.clear()
    run_fn(_run(tmp_path), log=logs.append)
    assert any(line.startswith("using") and "preprocessed.npz" in line for line in logs)

    # an edited plan: the stale preprocessed file is not trained on
    edited = plan.model_copy(update={"target_spacing": [s * 2 for s in plan.target_spacing]})
    edited.save(out / "plan.json")
    logs.clear()
    run_fn(_run(tmp_path), log=logs.append)
    assert any("made from another plan_sha256" in line for line in logs), logs
    again = json.loads((out / PREPROCESSED_INFO_FILE).read_text())
    assert again["plan_sha256"] != made["plan_sha256"]


def test_unknown_arch_is_refused_up_front(tmp_path):
    with pytest.raises(ValidationError, match="not one of dynunet"):
        SegmentationRun(data="msd:x", out=tmp_path, arch="resnet")
