from __future__ import annotations

import pytest

from medsight.core import InvalidInputError
from medsight.data import adapter_names, load_dataset, parse_spec, register_adapter


def test_specs_and_errors(tmp_path):
    builtin = {"csv", "dicom", "folder", "medmnist", "msd"}
    assert set(adapter_names()) == builtin | {"mias", "coco", "voc", "boxes"}  # detection
    assert parse_spec("MSD:/a/b?name=x") == ("msd", "/a/b", {"name": "x"})
    for bad in ("nothing", ":x", "msd:"):
        with pytest.raises(InvalidInputError, match="KIND:PATH"):
            load_dataset(bad)
    with pytest.raises(InvalidInputError, match="no such file or folder"):
        load_dataset("no/such/place")
    with pytest.raises(InvalidInputError, match="unknown kind 'zip'"):
        load_dataset("zip:x")
    with pytest.raises(InvalidInputError, match="already registered"):
        register_adapter("msd")(lambda path, **o: None)


def test_kinds_are_guessed_from_the_real_layouts(shared_data):
    from medsight.data.registry import guess_kind

    assert guess_kind(shared_data / "medmnist" / "breastmnist.npz") == "medmnist"
    assert guess_kind(shared_data / "hippocampus") == "msd"
    assert guess_kind(shared_data / "busi") == "folder"
    assert guess_kind(shared_data / "covid_cxr" / "metadata.csv") == "csv"
    assert guess_kind(shared_data / "dicom") == "dicom"
    assert guess_kind(shared_data / "covid_cxr" / "annotations.json") is None
    assert parse_spec(str(shared_data / "busi"))[0] == "folder"
