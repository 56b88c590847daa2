"""The task-family registry: every entry point finds a package's family through it."""

from __future__ import annotations

import dataclasses

import pytest

from medsight.cli.app import app
from medsight.core.errors import InvalidInputError
from medsight.core.task import Task
from medsight.families import (
    _FAMILIES,
    TaskFamily,
    all_families,
    family_for,
    family_named,
    register_family,
)
from medsight.families.builtin import CLASSIFICATION, SEGMENTATION
from medsight.models.spec import MODEL_TASKS

PARTS = ("config", "run", "predictor", "evaluate", "analyze", "command")


@pytest.mark.parametrize("family", all_families(), ids=lambda f: f.name)
def test_every_part_of_every_family_imports(family: TaskFamily) -> None:
    for part in PARTS:
        assert callable(family.load(part)), f"{family.name}.{part}"


def test_every_model_task_has_exactly_one_family() -> None:
    for task in MODEL_TASKS:
        owners = [f.name for f in all_families() if task in f.tasks]
        assert len(owners) == 1, (task, owners)
    assert family_for("multilabel") is CLASSIFICATION
    assert family_for(Task.SEGMENTATION) is SEGMENTATION


def test_unknown_task_or_family_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="has no task family"):
        family_for("none")  # a data-set task (no labels) that no model predicts
    with pytest.raises(InvalidInputError, match="not a medsight task"):
        family_for("regression")
    with pytest.raises(InvalidInputError, match="known: classification, segmentation"):
        family_named("gan")


def test_registration_refuses_a_task_twice() -> None:
    twin = dataclasses.replace(CLASSIFICATION, name="classification2")
    with pytest.raises(ValueError, match="already belong"):
        register_family(twin)
    with pytest.raises(ValueError, match="already registered"):
        register_family(CLASSIFICATION)


def test_options_a_family_does_not_take_are_refused() -> None:
    SEGMENTATION.check_options({"tta": True}, "model m")
    with pytest.raises(InvalidInputError, match="--tta does not apply to classification"):
        CLASSIFICATION.check_options({"tta": True}, "model m")


def test_a_missing_part_names_the_family_and_the_part() -> None:
    broken = dataclasses.replace(CLASSIFICATION, run="medsight.no_such_module:train")
    with pytest.raises(InvalidInputError, match=r"its run .* cannot be imported"):
        broken.load("run")


def test_a_registered_family_gets_its_train_command_and_dispatch(monkeypatch) -> None:
    """A new family is one registration: family_for and `medsight train` pick it up."""
    import typer

    from medsight.cli import train as train_cli

    detection = dataclasses.replace(
        SEGMENTATION,
        name="detection",
        tasks=(Task.DETECTION,),
        command_name=None,
        options=frozenset(),
    )
    monkeypatch.setitem(_FAMILIES, "detection", detection)
    assert family_for("detection") is detection
    sub = typer.Typer()
    monkeypatch.setattr(train_cli, "train_app", sub)
    train_cli.register(typer.Typer())
    assert {c.name for c in sub.registered_commands} == {f.cli_name for f in all_families()}
    assert {"classify", "segment", "detection"} <= {c.name for c in sub.registered_commands}


def test_the_cli_train_commands_come_from_the_registry() -> None:
    train = next(g for g in app.registered_groups if g.name == "train")
    names = {c.name for c in train.typer_instance.registered_commands}
    assert {f.cli_name for f in all_families()} | {"pretrain"} <= names
