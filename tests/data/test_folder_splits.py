"""Image folders with split folders (``ROOT/<split>/<class>/``), as public sets ship them."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image as P

from medsight.cli.app import main
from medsight.core import InvalidInputError, Split
from medsight.data import load_dataset, make_splits
from medsight.data.folder import load_folder
from medsight.data.registry import guess_kind
from medsight.models.package import ModelPackage


def _tree(root, layout: dict[str, dict[str, int]], size=(16, 16)):
    """``{split folder: {class: n images}}``; class ``b`` images are brighter (learnable)."""
    rng = np.random.default_rng(0)
    for split, classes in layout.items():
        for cls, n in classes.items():
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True)
            for i in range(n):
                base = 160 if cls.lower() == "b" else 60
                arr = np.clip(rng.normal(base, 20, size), 0, 255).astype(np.uint8)
                P.fromarray(arr).save(folder / f"{split or 'x'}-{cls}-{i}.png")
    return root


def test_training_testing_layout_takes_the_split_from_the_folder(tmp_path):
    root = _tree(tmp_path, {"Training": {"a": 10, "b": 10}, "TESTING": {"a": 3, "b": 3}})
    ds = load_dataset(f"folder:{root}")
    assert ds.official_splits and ds.label_names == {0: "a", 1: "b"}
    assert Counter(c.split for c in ds) == {Split.TRAIN: 20, Split.TEST: 6}
    case = ds.case("TESTING/b/TESTING-b-0")
    assert case.split is Split.TEST and case.label == 1 and case.attributes["class"] == "b"
    assert ds.files_of(case.case_id)["image"].endswith("TESTING-b-0.png")
    splits = make_splits(ds)  # no val folder: val comes from Training only, test stays Testing
    testing = {c.case_id for c in ds if c.split is Split.TEST}
    assert set(splits.test) == testing
    assert splits.folds[0].val and not set(splits.folds[0].val) & testing
    assert set(splits.folds[0].train) | set(splits.folds[0].val) == {
        c.case_id for c in ds if c.split is Split.TRAIN
    }


def test_train_val_test_layout_is_kept_as_it_is(tmp_path):
    root = _tree(tmp_path, {"train": {"a": 4, "b": 4}, "Val": {"a": 2, "b": 2}, "test": {"a": 1}})
    ds = load_folder(root)
    assert Counter(c.split for c in ds) == {Split.TRAIN: 8, Split.VAL: 4, Split.TEST: 1}
    splits = make_splits(ds)
    assert splits.source == "official"
    assert sorted(splits.folds[0].val) == sorted(c.case_id for c in ds if c.split is Split.VAL)


def test_class_layout_is_unchanged(tmp_path):
    ds = load_folder(_tree(tmp_path, {"": {"a": 2, "b": 2}}))
    assert not ds.official_splits and {c.split for c in ds} == {None}
    assert sorted(c.case_id for c in ds)[0] == "a/x-a-0"


def test_a_mixed_layout_is_refused_naming_the_folders(tmp_path):
    root = _tree(tmp_path, {"Training": {"a": 2}, "": {"extra": 2}})
    with pytest.raises(InvalidInputError, match=r"Training.*extra"):
        load_folder(root)


def test_two_folders_for_one_split_are_refused(tmp_path):
    root = _tree(tmp_path, {"train": {"a": 2}, "Training": {"a": 2}})
    with pytest.raises(InvalidInputError, match="several folders name one split"):
        load_folder(root)


def test_a_patient_in_two_splits_is_an_error_naming_both_files(tmp_path):
    root = _tree(tmp_path, {"train": {"a": 2}, "test": {"a": 1}})
    P.new("L", (16, 16)).save(root / "test" / "a" / "train-a-1.png")  # same name as in train
    with pytest.raises(InvalidInputError, match=r"train-a-1\.png and .*test.*train-a-1\.png"):
        load_folder(root)


def test_class_names_differing_in_case_between_splits_are_refused(tmp_path):
    root = _tree(tmp_path, {"Training": {"Glioma": 2}, "Testing": {"glioma": 1}})
    with pytest.raises(InvalidInputError, match="differ only in case"):
        load_folder(root)


@pytest.mark.parametrize("spec", ["folder:{}", "{}"])  # as a new user would: a bare path too
def test_qc_on_a_training_testing_folder(tmp_path, capsys, spec):
    root = _tree(tmp_path / "data", {"Training": {"a": 6, "b": 6}, "Testing": {"a": 2, "b": 2}})
    assert guess_kind(root) == "folder"
    out = tmp_path / "qc"
    code = main(["qc", spec.format(root), "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "qc.json").read_text())
    assert report["n_cases"] == 16


def test_train_classify_on_a_train_val_test_folder(tmp_path, capsys):
    root = _tree(
        tmp_path / "data",
        {"TRAIN": {"a": 8, "b": 8}, "val": {"a": 4, "b": 4}, "Test": {"a": 2, "b": 2}},
    )
    run = tmp_path / "run"
    code = main(["train", "classify", "--data", f"folder:{root}", "--out", str(run),
                 "--epochs", "1", "--batch-size", "8", "--threads", "1", "--seed", "0",
                 "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    pkg = ModelPackage.load(run / "package")
    assert pkg.spec.training_data.n_cases == {"train": 16, "val": 8}
    assert "official splits" in pkg.spec.training_data.source
