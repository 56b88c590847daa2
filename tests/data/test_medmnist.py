"""MedMNIST adapter on the real files in ../shared/data/medmnist (counts from PROVENANCE)."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core import InvalidInputError, Split, UnreadableFileError
from medsight.data import Task, load_dataset
from medsight.data.medmnist import load_medmnist


def test_breastmnist_official_split_and_labels(shared_data):
    ds = load_dataset(f"medmnist:{shared_data / 'medmnist' / 'breastmnist.npz'}")
    assert ds.task is Task.BINARY and ds.official_splits
    counts = {s: sum(c.split is s for c in ds) for s in Split}
    assert counts == {Split.TRAIN: 546, Split.VAL: 78, Split.TEST: 156}
    train_labels = [c.label for c in ds if c.split is Split.TRAIN]
    assert train_labels.count(0) == 147 and train_labels.count(1) == 399
    assert ds.label_names[0] == "malignant"
    # index order is the transpose of the stored row-major array
    raw = np.load(shared_data / "medmnist" / "breastmnist.npz")["train_images"][3]
    np.testing.assert_array_equal(ds.case("train_00003").image().array, raw.T)
    assert ds.describe("train_00003") == "breastmnist.npz:train_images[3]"


def test_retinamnist_is_ordinal_rgb(shared_data):
    ds = load_medmnist(shared_data / "medmnist" / "retinamnist.npz")
    assert ds.task is Task.ORDINAL and len(ds) == 1600
    img = ds[0].image()
    assert img.shape == (28, 28) and img.n_channels == 3
    assert [c.label for c in ds if c.split is Split.VAL].count(4) == 6


@pytest.mark.parametrize(("name", "size"), [("adrenalmnist3d", 28), ("adrenalmnist3d_64", 64)])
def test_adrenal_3d_sizes(shared_data, name, size):
    ds = load_medmnist(shared_data / "medmnist" / f"{name}.npz")
    assert ds.name == "adrenalmnist3d" and len(ds) == 1188 + 98 + 298
    assert ds[0].image().shape == (size, size, size) and ds[0].image().spatial_ndim == 3
    assert sum(c.label == 1 for c in ds if c.split is Split.TEST) == 69


def test_multilabel_and_unknown_names(tmp_path):
    arrays = {f"{s}_images": np.zeros((2, 5, 5), np.uint8) for s in ("train", "val", "test")}
    arrays |= {f"{s}_labels": np.array([[1, 0, 1], [0, 0, 0]]) for s in ("train", "val", "test")}
    np.savez(tmp_path / "chestmnist_64.npz", **arrays)
    ds = load_medmnist(tmp_path / "chestmnist_64.npz")
    assert ds.task is Task.MULTILABEL and ds[0].label == (0, 2) and ds[1].label == ()
    np.savez(tmp_path / "mystery.npz", **arrays)
    with pytest.raises(InvalidInputError, match="mystery"):
        load_medmnist(tmp_path / "mystery.npz")
    assert load_medmnist(tmp_path / "mystery.npz", task="multilabel").task is Task.MULTILABEL


def test_corrupt_and_incomplete_files(tmp_path):
    bad = tmp_path / "breastmnist.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UnreadableFileError, match=r"breastmnist\.npz"):
        load_medmnist(bad)
    np.savez(bad, train_images=np.zeros((1, 2, 2)))
    with pytest.raises(UnreadableFileError, match="train_labels"):
        load_medmnist(bad)


def _toy_npz(path):
    arrays = {f"{s}_images": np.zeros((2, 4, 4), np.uint8) for s in ("train", "val", "test")}
    arrays |= {f"{s}_labels": np.array([[0], [1]]) for s in ("train", "val", "test")}
    np.savez(path, **arrays)
    return path


def test_provenance_of_a_medmnist_file_and_of_an_unknown_name(tmp_path):
    ds = load_medmnist(_toy_npz(tmp_path / "retinamnist_64.npz"))
    assert ds.source == "MedMNIST v2, Yang et al., Scientific Data 2023; DeepDRiD source"
    assert ds.license == f"CC BY 4.0 ({ds.source})"
    resplit = ds.with_cases([c.replace(split=None) for c in ds])
    assert (resplit.source, resplit.license) == (ds.source, ds.license)
    # a file that is not a MedMNIST set: no source, no license guessed
    other = load_dataset(f"medmnist:{_toy_npz(tmp_path / 'toy.npz')}?task=binary")
    assert (other.source, other.license) == ("", "")
    given = load_dataset(f"medmnist:{tmp_path / 'toy.npz'}?task=binary&license=CC0&source=me")
    assert (given.source, given.license) == ("me", "CC0")


def test_adapter_license_is_the_text_of_the_zoo_model_cards():
    import json
    from pathlib import Path

    import medsight
    from medsight.data.medmnist import medmnist_provenance

    zoo = Path(medsight.__file__).parent / "zoo"
    checked = 0
    for model_json in sorted(zoo.glob("*/model.json")):
        data = json.loads(model_json.read_text())["training_data"]
        if data["source"].startswith("medmnist adapter"):
            assert medmnist_provenance(data["dataset"])[1] == data["license"], model_json
            checked += 1
    assert checked >= 4
