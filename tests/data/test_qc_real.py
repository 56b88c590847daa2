"""`run_qc` on the real data sets: each test names a problem verified independently here.

Every expectation is first checked with plain numpy / nibabel / pydicom / hashlib on the files
(or taken from the data set's PROVENANCE file), then required of the report.
"""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pytest

from medsight.data import load_dataset
from medsight.data.qc import CheckKind, Severity, run_qc


def _qc(spec: str):
    dataset = load_dataset(spec)
    report, _ = run_qc(dataset)
    return dataset, report


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_busi_exact_duplicate_with_conflicting_labels(shared_data):
    busi = shared_data / "busi"
    a, b = busi / "benign" / "benign (433).png", busi / "malignant" / "malignant (145).png"
    assert _sha(a) == _sha(b)  # the same file filed as benign and as malignant
    _, report = _qc(f"folder:{busi}")
    groups = [set(f.files) for f in report.of_kind(CheckKind.EXACT_DUPLICATE)]
    assert {str(a), str(b)} in groups
    conflict = report.of_kind(CheckKind.CONFLICTING_LABELS)[0]
    assert str(a) in conflict.files and conflict.severity is Severity.ERROR
    # near duplicates: BUSI has many frames of one lesion; at least these two (viewed) pairs
    near = [set(f.files) for f in report.of_kind(CheckKind.NEAR_DUPLICATE)]
    for x, y in (("normal (51)", "normal (54)"), ("benign (228)", "benign (306)")):
        pair = {str(busi / x.split()[0] / f"{x}.png"), str(busi / y.split()[0] / f"{y}.png")}
        assert any(pair <= g for g in near), pair
    assert report.of_kind(CheckKind.MASK_SHAPE_MISMATCH) == []  # PROVENANCE: masks match


def test_hippocampus_mixed_dtypes_and_intensity_scales(shared_data):
    root = shared_data / "hippocampus"
    dtypes, p99 = {}, {}
    for path in sorted((root / "imagesTr").glob("*.nii.gz")):
        img = nib.load(path)
        dtypes[path.name] = str(img.get_data_dtype())
        p99[path.name] = float(np.percentile(np.asarray(img.dataobj), 99))
    uint8 = {n for n, d in dtypes.items() if d == "uint8"}
    huge = {n for n, v in p99.items() if v > 1e5}
    assert len(uint8) == 55 and len(dtypes) == 260  # PROVENANCE: 205 float32 + 55 uint8
    assert len(huge) == 33 and max(v for n, v in p99.items() if n not in huge) < 1e4
    _, report = _qc(f"msd:{root}")
    (mix,) = report.of_kind(CheckKind.DTYPE_MIX)
    assert {f.rsplit("/", 1)[-1] for f in mix.files} == uint8
    (scales,) = report.of_kind(CheckKind.INTENSITY_SCALE_MIX)
    assert {f.rsplit("/", 1)[-1] for f in scales.files} == huge


@pytest.fixture(scope="module")
def covid_qc(shared_data):
    return _qc(f"csv:{shared_data / 'covid_cxr' / 'metadata.csv'}")


def test_covid_repeated_patients_duplicates_and_missing_attributes(shared_data, covid_qc):
    root = shared_data / "covid_cxr"
    a, b = "353889E0-A1E8-4F9E-A0B8-F24F36BCFBFB.jpg", "case_72_RX-TORACE1.jpg"
    assert _sha(root / "images" / a) == _sha(root / "images" / b)
    dataset, report = covid_qc
    assert {dataset.case(f"images/{n}").patient_id for n in (a, b)} == {"78", "201"}
    exact = [f for f in report.of_kind(CheckKind.EXACT_DUPLICATE) if f.details["patients"]]
    assert any(f.details["patients"] == ["201", "78"] for f in exact)
    # PROVENANCE: 360 patients, 139 with several images; sex blank 51; age present for 452
    (several,) = report.of_kind(CheckKind.SEVERAL_IMAGES_PER_PATIENT)
    assert len(several.details["images_per_patient"]) == 139
    missing = {f.details["attribute"]: f for f in report.of_kind(CheckKind.MISSING_ATTRIBUTE)}
    assert len(missing["sex"].files) == 51 and len(missing["age"].files) == 605 - 452
    (orphans,) = report.of_kind(CheckKind.ORPHAN_FILE)
    assert len(orphans.files) == 4 and all("4-x-day" in f for f in orphans.files)


def test_covid_same_radiograph_under_two_patient_ids(shared_data, covid_qc):
    images = shared_data / "covid_cxr" / "images"
    from PIL import Image as P

    x = np.asarray(P.open(images / "16660_2_1.jpg"), float)
    y = np.asarray(
        P.open(images / "covid-19-rapidly-progressive-acute-respiratory-distress-syndrome-ards"
               "-admission.jpg"), float)  # fmt: skip
    assert x.shape == y.shape and np.abs(x - y).mean() < 2  # re-encoded copies of one image
    _, report = covid_qc
    near = [f for f in report.of_kind(CheckKind.NEAR_DUPLICATE) if "16660_2_1.jpg" in str(f.files)]
    assert near and near[0].details["patients"] == ["178", "97"]


def test_breastmnist_duplicate_across_splits(shared_data):
    path = shared_data / "medmnist" / "breastmnist.npz"
    with np.load(path) as z:
        assert np.array_equal(z["train_images"][115], z["test_images"][76])
        assert z["train_labels"][115, 0] != z["test_labels"][76, 0]
    _, report = _qc(f"medmnist:{path}")
    exact = report.of_kind(CheckKind.EXACT_DUPLICATE)
    assert any(set(f.case_ids) == {"train_00115", "test_00076"} for f in exact)
    leak = report.of_kind(CheckKind.SPLIT_LEAKAGE)[0]
    assert "train_00115" in leak.case_ids and leak.severity is Severity.ERROR
    # a near duplicate across splits: raw pixels correlate at 0.996 and differ by ~3 grey levels
    # on average (unrelated pairs differ by ~40)
    with np.load(path) as z:
        a, b = z["train_images"][3].astype(float), z["test_images"][133].astype(float)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99 and np.abs(a - b).mean() < 5
    near = report.of_kind(CheckKind.NEAR_DUPLICATE)
    assert any({"train_00003", "test_00133"} <= set(f.case_ids) for f in near)
    assert "train_00003" in leak.case_ids


def test_pneumoniamnist_exact_duplicates_across_splits(shared_data):
    path = shared_data / "medmnist" / "pneumoniamnist.npz"
    with np.load(path) as z:
        digests: dict[bytes, list[str]] = {}
        for split in ("train", "val", "test"):
            for i, x in enumerate(z[f"{split}_images"]):
                digests.setdefault(hashlib.sha256(x.tobytes()).digest(), []).append(
                    f"{split}_{i:05d}"
                )
    groups = [set(v) for v in digests.values() if len(v) > 1]
    cross = [g for g in groups if len({c.split("_")[0] for c in g}) > 1]
    assert len(groups) == 27 and len(cross) == 8
    _, report = _qc(f"medmnist:{path}")
    found = [set(f.case_ids) for f in report.of_kind(CheckKind.EXACT_DUPLICATE)]
    assert sorted(map(sorted, found)) == sorted(map(sorted, groups))
    assert sum(f.details["across_splits"] for f in report.of_kind("exact_duplicate")) == 8
    # test image 165 is a dark, framed radiograph: contrast over twice the data set's median
    with np.load(path) as z:
        every = np.concatenate([z["train_images"], z["val_images"], z["test_images"]])
        odd = z["test_images"][165].astype(float)
    stds = every.reshape(len(every), -1).std(axis=1)
    assert odd.std() > 2 * np.median(stds) and odd.mean() < 0.6 * np.median(every.mean(axis=(1, 2)))
    (outliers,) = report.of_kind(CheckKind.INTENSITY_OUTLIER)
    assert "test_00165" in outliers.case_ids


def test_retinamnist_grade_imbalance(shared_data):
    # PROVENANCE: train grades {0: 486, 1: 128, 2: 206, 3: 194, 4: 66}
    _, report = _qc(f"medmnist:{shared_data / 'medmnist' / 'retinamnist.npz'}")
    by_split = {f.details["split"]: f for f in report.of_kind(CheckKind.LABEL_IMBALANCE)}
    assert by_split["train"].details["counts"] == {"0": 486, "2": 206, "3": 194, "1": 128, "4": 66}
    assert set(by_split["train"].details["rare"]) == {"1", "4"}
    assert len(by_split["train"].files) == 128 + 66  # the rare grades' images are named
    # a repeated fundus photograph: train 109 and 223 differ by ~1.3 grey levels on average,
    # while an image and its nearest other image typically differ by ~9
    with np.load(shared_data / "medmnist" / "retinamnist.npz") as z:
        train = z["train_images"].reshape(1080, -1).astype(np.float32)
    assert np.abs(train[109] - train[223]).mean() < 2
    nearest = [
        np.delete(np.abs(train - train[i]).mean(axis=1), i).min() for i in range(0, 1080, 10)
    ]
    assert np.median(nearest) > 5
    near = report.of_kind(CheckKind.NEAR_DUPLICATE)
    assert any({"train_00109", "train_00223"} <= set(f.case_ids) for f in near)


@pytest.mark.parametrize("name", ["adrenalmnist3d", "adrenalmnist3d_64"])
def test_adrenalmnist3d_class_imbalance(shared_data, name):
    # PROVENANCE: train {0: 929, 1: 259}, val {0: 76, 1: 22}, test {0: 229, 1: 69}
    _, report = _qc(f"medmnist:{shared_data / 'medmnist' / f'{name}.npz'}")
    (whole,) = [f for f in report.of_kind(CheckKind.LABEL_IMBALANCE) if f.details["split"] is None]
    assert whole.details["counts"] == {"normal": 929 + 76 + 229, "hyperplasia": 259 + 22 + 69}
    assert report.fingerprint.median_shape == [float(report.fingerprint.shapes[0][0])] * 3


def test_dicom_hippocrop_series_lacks_patient_attributes(shared_data):
    from pydicom import dcmread

    crop = next(
        p for p in (shared_data / "dicom" / "brain_mr_study1").iterdir() if "HCrop" in p.name
    )
    header = dcmread(next(crop.glob("*.dcm")), stop_before_pixels=True)
    assert "PatientSex" not in header and "PatientAge" not in header
    _, report = _qc(f"dicom:{shared_data / 'dicom'}")
    missing = {f.details["attribute"]: f for f in report.of_kind(CheckKind.MISSING_ATTRIBUTE)}
    assert missing["sex"].files == [str(crop)] and missing["age"].files == [str(crop)]
    (spacing,) = report.of_kind(CheckKind.SPACING_OUTLIER)
    assert spacing.files == [str(crop)]
    assert report.of_kind(CheckKind.UNREADABLE) == []  # PROVENANCE-dicom.txt is not an image


def test_covid_image_level_split_puts_patients_in_several_splits(covid_qc):
    from medsight.data import Fold, Splits

    dataset, _ = covid_qc
    ids = [c.case_id for c in dataset]
    order = np.random.default_rng(0).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    naive = Splits(dataset="covid_cxr", scheme="holdout", seed=0, source="generated",
                   stratified=False, test=shuffled[:100],
                   folds=[Fold(train=shuffled[200:], val=shuffled[100:200])])  # fmt: skip
    part = {c: "test" for c in shuffled[:100]} | {c: "val" for c in shuffled[100:200]}
    seen: dict[str, set[str]] = {}
    for case in dataset:
        seen.setdefault(case.patient_id, set()).add(part.get(case.case_id, "train"))
    expected = {p: sorted(v) for p, v in seen.items() if len(v) > 1}
    assert len(expected) > 20 and naive.leaks(dataset) == expected
    report, _ = run_qc(dataset, splits=naive)
    (spread,) = report.of_kind(CheckKind.PATIENT_IN_SEVERAL_SPLITS)
    assert spread.details == expected and spread.severity is Severity.ERROR
