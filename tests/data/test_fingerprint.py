"""Fingerprint on a hippocampus subset, checked against values computed here with nibabel."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medsight.core import UnreadableFileError
from medsight.data import load_dataset
from medsight.data.fingerprint import Fingerprint, compute_fingerprint


@pytest.fixture(scope="module")
def subset(shared_data):
    ds = load_dataset(f"msd:{shared_data / 'hippocampus'}")
    # uint8 cases only, so the intensity scale is uniform (float32 cases use other scales)
    picked = [c for c in ds if nib.load(ds.files_of(c.case_id)["image"]).get_data_dtype() == "u1"]
    return ds.with_cases(picked[:12])


def test_foreground_intensities_shapes_and_balance(subset, tmp_path):
    fp = compute_fingerprint(subset, seed=3, samples_per_case=500)
    fg_values, shapes, voxels = [], [], {0: 0, 1: 0, 2: 0}
    for case in subset:
        files = subset.files_of(case.case_id)
        img = np.asarray(nib.load(files["image"]).dataobj)
        lab = np.asarray(nib.load(files["label"]).dataobj)
        fg_values.append(img[lab > 0])
        shapes.append(list(img.shape))
        for v in voxels:
            voxels[v] += int((lab == v).sum())
    fg = np.concatenate(fg_values).astype(float)
    ch = fp.intensity_per_channel["0"]
    assert ch.foreground and ch.n_samples == 12 * 500
    assert fg.min() <= ch.min and ch.max <= fg.max()
    assert ch.median == pytest.approx(np.median(fg), rel=0.05)
    assert ch.mean == pytest.approx(fg.mean(), rel=0.05)
    assert fp.shapes == shapes and fp.median_spacing == [1.0, 1.0, 1.0]
    assert fp.class_balance["voxels"] == {
        "background": voxels[0],
        "label_1": voxels[1],
        "label_2": voxels[2],
    }
    assert fp.dtypes == {"uint8": 12} and fp.orientations == {"RAS": 12}
    again = compute_fingerprint(subset, seed=3, samples_per_case=500)
    assert again == fp
    other = compute_fingerprint(subset, seed=4, samples_per_case=500)
    assert other.intensity_per_channel["0"].mean != ch.mean
    path = fp.save(tmp_path / "fp.json")
    assert Fingerprint.load(path) == fp
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(UnreadableFileError, match="bad"):
        Fingerprint.load(tmp_path / "bad.json")


def test_classification_balance(shared_data):
    ds = load_dataset(f"medmnist:{shared_data / 'medmnist' / 'breastmnist.npz'}")
    fp = compute_fingerprint(ds.with_cases([c for c in ds if c.split.value == "val"]))
    # PROVENANCE: val_labels {0: 21, 1: 57}
    assert fp.class_balance["cases"] == {"normal, benign": 57, "malignant": 21}
    assert fp.median_shape == [28.0, 28.0] and not fp.intensity_per_channel["0"].foreground
