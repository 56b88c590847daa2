"""One `Task` enum for data sets and models (defined in core, re-exported by data and models)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

import medsight.core
import medsight.data
import medsight.data.dataset
import medsight.models
import medsight.models.spec
from medsight.core import Task
from medsight.data import load_dataset
from medsight.models.spec import MODEL_TASKS, ModelSpec
from medsight.models.zoo import zoo_folders, zoo_packages


def test_every_name_is_the_same_enum():
    for owner in (medsight.data, medsight.data.dataset, medsight.models, medsight.models.spec):
        assert owner.Task is medsight.core.Task
    assert {t.value for t in Task} == {
        "binary",
        "multiclass",
        "ordinal",
        "multilabel",
        "segmentation",
        "detection",
        "denoising",
        "synthesis",
        "risk",
        "none",
    }


def test_every_zoo_package_parses():
    folders = [p for f in zoo_folders() for p in f.iterdir() if (p / "model.json").is_file()]
    assert folders
    for folder in folders:
        spec = ModelSpec.model_validate_json((folder / "model.json").read_text())
        assert spec.task in MODEL_TASKS
    packages, problems = zoo_packages()
    assert problems == [] and len(packages) == len(folders)
    assert {p.spec.task for p in packages} >= {Task.BINARY, Task.ORDINAL, Task.SEGMENTATION}


def test_a_model_predicts_no_dataset_only_task():
    folder = next(
        f for z in zoo_folders() for f in sorted(z.iterdir()) if (f / "model.json").is_file()
    )
    raw = json.loads((folder / "model.json").read_text())
    for value in ("none",):  # detection became a model task with the detection family
        with pytest.raises(ValidationError, match="a model predicts"):
            ModelSpec.model_validate({**raw, "task": value})


def test_medmnist_task_is_the_model_task(shared_data):
    ds = load_dataset(f"medmnist:{shared_data / 'medmnist' / 'breastmnist.npz'}")
    assert ds.task is Task.BINARY and ds.task is medsight.models.Task.BINARY
    assert ds.task in MODEL_TASKS
