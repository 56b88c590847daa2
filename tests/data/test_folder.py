"""Image-folder adapter on BUSI (class subfolders, name_mask.png + name_mask_1.png)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as P

from medsight.core import EmptyInputError, GeometryError
from medsight.data import Task, load_dataset
from medsight.data.folder import load_folder


def test_busi_layout(shared_data):
    ds = load_dataset(f"folder:{shared_data / 'busi'}")
    assert ds.task is Task.SEGMENTATION and len(ds) == 780
    classes = [c.attributes["class"] for c in ds]
    assert (classes.count("benign"), classes.count("malignant"), classes.count("normal")) == (
        437,
        210,
        133,
    )
    case = ds.case("benign/benign (100)")  # has _mask.png and _mask_1.png
    files = ds.files_of(case.case_id)
    assert files["mask_1"].endswith("benign (100)_mask_1.png")
    merged = case.mask().array
    one = np.asarray(P.open(files["mask_0"])).T > 0
    two = np.asarray(P.open(files["mask_1"])).T > 0
    np.testing.assert_array_equal(merged, (one | two).astype(np.uint8))
    assert merged.shape == case.image().shape
    as_class = load_folder(shared_data / "busi", target="class")
    assert as_class.task is Task.MULTICLASS and as_class.case("normal/normal (1)").label == 2


def test_unexpected_mask_values_are_kept_and_mismatch_raises(tmp_path):
    (tmp_path / "pos").mkdir()
    (tmp_path / "neg").mkdir()
    P.new("L", (6, 4)).save(tmp_path / "pos" / "x.png")
    P.fromarray(np.array([[0, 128], [255, 0]], np.uint8)).save(tmp_path / "pos" / "x_mask.png")
    P.new("L", (6, 4)).save(tmp_path / "pos" / "y.png")
    P.new("L", (6, 4)).save(tmp_path / "pos" / "y_mask.png")
    P.new("L", (5, 4)).save(tmp_path / "pos" / "y_mask_1.png")
    P.new("L", (6, 4)).save(tmp_path / "neg" / "z.png")
    P.new("L", (6, 4)).save(tmp_path / "neg" / "lost_mask.png")
    ds = load_folder(tmp_path)
    assert set(np.unique(ds.case("pos/x").mask().array)) == {0, 128, 255}
    with pytest.raises(GeometryError, match=r"y_mask_1\.png"):
        ds.case("pos/y").mask()
    assert ds.case("neg/z").label is None
    assert [i.kind for i in ds.layout_issues] == ["orphan_file"]


def test_empty_folder(tmp_path):
    with pytest.raises(EmptyInputError, match="class subfolders"):
        load_folder(tmp_path)
