"""Trainers write the labels' clinical meaning given in the config or on the command line."""

from __future__ import annotations

import pytest

from medsight.cli.app import main
from medsight.core import InvalidInputError
from medsight.core.significance import Significance, Urgency
from medsight.models import ModelPackage
from medsight.training import classification as tc


def test_classifier_labels_carry_the_given_meaning(tmp_path, write_npz, cfg_for):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary"
    meanings = {"0": "normal", "1": "actionable:stat"}
    pkg = tc.train_classifier(cfg_for(tmp_path, data, epochs=1, label_meanings=meanings))
    labels = ModelPackage.load(pkg.path).spec.labels
    assert [(lab.significance, lab.urgency) for lab in labels] == [
        (Significance.NORMAL, None),
        (Significance.ACTIONABLE, Urgency.STAT),
    ]


def test_misspelt_label_fails_before_training(tmp_path, write_npz, cfg_for, monkeypatch):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary"
    monkeypatch.setattr(tc, "case_arrays", lambda *a, **k: pytest.fail("trained anyway"))
    with pytest.raises(InvalidInputError, match="'2'"):
        tc.train_classifier(cfg_for(tmp_path, data, label_meanings={"2": "benign"}))


def test_cli_label_meaning(tmp_path, write_npz, capsys):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary"
    run = tmp_path / "run"
    args = ["train", "classify", "--data", data, "--out", str(run), "--epochs", "1",
            "--threads", "1", "--no-progress", "--batch-size", "8"]  # fmt: skip
    assert main([*args, "--label-meaning", "1=grave"]) == 2
    assert "label meaning" in capsys.readouterr().err
    code = main([*args, "--label-meaning", "1=actionable:urgent", "--label-meaning", "0=benign"])
    assert code == 0, capsys.readouterr().err
    labels = ModelPackage.load(run / "package").spec.labels
    assert [lab.significance.value for lab in labels] == ["benign", "actionable"]
    assert labels[1].urgency is Urgency.URGENT
