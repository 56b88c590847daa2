"""MSD / nnU-Net adapter: the real hippocampus folder (no dataset.json) and a written one."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medsight.core import EmptyInputError, Split
from medsight.data import Task, load_dataset


def test_hippocampus_without_dataset_json(shared_data):
    ds = load_dataset(f"msd:{shared_data / 'hippocampus'}")
    assert ds.task is Task.SEGMENTATION and len(ds) == 260
    assert ds.label_names == {0: "background", 1: "label_1", 2: "label_2"}
    case = ds.case("hippocampus_001")
    image, mask = case.image(), case.mask()
    assert image.shape == mask.shape and image.spatial_ndim == 3
    assert set(np.unique(mask.array)) <= {0, 1, 2}
    assert ds.files_of("hippocampus_001")["label"].endswith("labelsTr/hippocampus_001.nii.gz")
    assert ds.layout_issues == ()


def _write(path, array):
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)


def test_nnunet_v2_channels_and_orphans(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "imagesTs").mkdir()
    for case in ("a", "b"):
        for ch in (0, 1):
            _write(tmp_path / "imagesTr" / f"{case}_{ch:04d}.nii.gz", np.full((3, 3, 3), ch, "f4"))
    _write(tmp_path / "labelsTr" / "a.nii.gz", np.ones((3, 3, 3), np.uint8))
    _write(tmp_path / "labelsTr" / "zz.nii.gz", np.ones((3, 3, 3), np.uint8))
    _write(tmp_path / "imagesTs" / "t_0000.nii.gz", np.zeros((3, 3, 3), "f4"))
    meta = {
        "channel_names": {"0": "T2", "1": "ADC"},
        "labels": {"background": 0, "lesion": 1},
        "file_ending": ".nii.gz",
        "name": "toy",
        "training": [{"image": "./imagesTr/gone.nii.gz", "label": "./labelsTr/a.nii.gz"}],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    ds = load_dataset(f"msd:{tmp_path}")
    assert ds.name == "toy" and ds.channel_names == {0: "T2", 1: "ADC"}
    assert ds.label_names == {0: "background", 1: "lesion"}
    assert ds.case("a").image().n_channels == 2
    assert ds.case("a").image().array[..., 1].max() == 1
    assert ds.case("b").label is None and ds.case("t").split is Split.TEST
    kinds = {i.kind: i for i in ds.layout_issues}
    assert "zz.nii.gz" in kinds["orphan_file"].files[0]
    assert "b_0000" in kinds["missing_label"].files[0]
    assert kinds["missing_file"].files[0].endswith("imagesTr/gone.nii.gz")


def test_not_an_msd_folder(tmp_path):
    with pytest.raises(EmptyInputError, match="imagesTr"):
        load_dataset(f"msd:{tmp_path}")


def test_provenance_from_dataset_json(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    _write(tmp_path / "imagesTr" / "a.nii.gz", np.zeros((3, 3, 3), "f4"))
    meta = {"name": "Hippocampus", "licence": "CC-BY-SA 4.0", "reference": "Vanderbilt"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    ds = load_dataset(f"msd:{tmp_path}")
    assert (ds.name, ds.source, ds.license) == ("Hippocampus", "Vanderbilt", "CC-BY-SA 4.0")
    assert load_dataset(f"msd:{tmp_path}?license=CC0").license == "CC0"
    # no licence in dataset.json: empty, not a guess
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "Hippocampus"}))
    ds = load_dataset(f"msd:{tmp_path}")
    assert (ds.source, ds.license) == ("", "")


def test_the_modality_named_by_dataset_json_reaches_the_images(tmp_path):
    import json

    import numpy as np

    from medsight.core import Image
    from medsight.data import load_dataset
    from medsight.io import write_image

    for name, expected in (("MRI", "MR"), ("T2", None)):
        root = tmp_path / name
        (root / "imagesTr").mkdir(parents=True)
        write_image(Image(np.zeros((4, 4, 3), np.float32)), root / "imagesTr" / "a_000.nii.gz")
        (root / "dataset.json").write_text(json.dumps({"modality": {"0": name}}))
        assert next(iter(load_dataset(f"msd:{root}"))).image().modality == expected
