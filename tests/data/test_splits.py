"""Patient-level stratified splits on the real COVID set (139 patients with several images)."""

from __future__ import annotations

from collections import Counter

import pytest

from medsight.core import Case, InvalidInputError, Split, UnreadableFileError
from medsight.data import Dataset, Fold, SplitConfig, Splits, SplitScheme, load_dataset, make_splits


@pytest.fixture(scope="module")
def covid(shared_data):
    return load_dataset(f"csv:{shared_data / 'covid_cxr' / 'metadata.csv'}")


def _parts(splits, fold=0):
    return splits.folds[fold].train, splits.folds[fold].val, splits.test


def test_holdout_is_patient_level_stratified_and_seeded(covid, tmp_path):
    splits = make_splits(covid, SplitConfig(seed=7))
    train, val, test = _parts(splits)
    assert sorted(train + val + test) == sorted(c.case_id for c in covid)
    assert splits.leaks(covid) == {}
    patients = [{covid.case(c).patient_id for c in part} for part in (train, val, test)]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert abs(len(test) / len(covid) - 0.15) < 0.03 and abs(len(val) / len(covid) - 0.15) < 0.03
    covid_label = next(k for k, v in covid.label_names.items() if v == "COVID-19")
    # each class is spread over the parts in the target proportions (rare classes cannot be)
    n_covid = sum(c.label == covid_label for c in covid)
    in_test = sum(covid.case(c).label == covid_label for c in test)
    in_val = sum(covid.case(c).label == covid_label for c in val)
    assert abs(in_test / n_covid - 0.15) < 0.02 and abs(in_val / n_covid - 0.15) < 0.02
    again = make_splits(covid, SplitConfig(seed=7))
    assert again == splits
    assert make_splits(covid, SplitConfig(seed=8)).test != splits.test
    path = splits.save(tmp_path / "splits.json")
    assert Splits.load(path) == splits
    applied = splits.apply(covid)
    assert Counter(c.split for c in applied)[Split.TEST] == len(test)


def test_kfold_covers_every_case_once(covid):
    splits = make_splits(covid, SplitConfig(scheme=SplitScheme.KFOLD, k=5, test_fraction=0.1))
    assert len(splits.folds) == 5
    vals = [cid for fold in splits.folds for cid in fold.val]
    assert len(vals) == len(set(vals)) == len(covid) - len(splits.test)
    for i in range(5):
        assert splits.leaks(covid, fold=i) == {}
        assert set(splits.folds[i].train).isdisjoint(splits.folds[i].val)


def test_a_leaky_split_is_detected(covid):
    splits = make_splits(covid)
    multi = Counter(c.patient_id for c in covid).most_common(1)[0][0]
    ids = [c.case_id for c in covid if c.patient_id == multi]
    bad = splits.model_copy(deep=True)
    for fold in bad.folds:
        fold.train = [c for c in fold.train if c != ids[0]]
        fold.val = [c for c in fold.val if c != ids[0]]
    bad.test = [c for c in bad.test if c != ids[0]]
    owner = next(p for p in (bad.folds[0].train, bad.folds[0].val, bad.test) if ids[1] in p)
    other = bad.test if owner is not bad.test else bad.folds[0].train
    other.append(ids[0])
    assert multi in bad.leaks(covid)


def test_official_splits_are_kept(shared_data):
    ds = load_dataset(f"medmnist:{shared_data / 'medmnist' / 'breastmnist.npz'}")
    splits = make_splits(ds)
    assert splits.source == "official" and len(splits.test) == 156
    assert len(splits.folds[0].val) == 78
    kfold = make_splits(ds, SplitConfig(scheme="kfold", k=3))
    assert kfold.test == splits.test and len(kfold.folds) == 3
    assert make_splits(ds, SplitConfig(keep_official=False)).source == "generated"


def test_bad_inputs(tmp_path):
    ds = Dataset("x", [Case("a"), Case("b")])
    with pytest.raises(InvalidInputError, match="2 cases are in no part"):
        Splits(dataset="x", scheme="holdout", seed=0, source="generated", stratified=True,
               test=[], folds=[Fold(train=[], val=[])]).apply(ds)  # fmt: skip
    (tmp_path / "splits.json").write_text("{}")
    with pytest.raises(UnreadableFileError, match=r"splits\.json"):
        Splits.load(tmp_path / "splits.json")
    with pytest.raises(ValueError, match="below 1"):
        SplitConfig(val_fraction=0.6, test_fraction=0.5)


def test_small_strata_do_not_leave_a_fold_empty():
    # 8 patients of 5 images after the test part, two strata: every fold must get patients
    cases = [Case(f"c{i}", patient_id=f"p{i % 10}", label=i % 2) for i in range(50)]
    splits = make_splits(Dataset("toy", cases), SplitConfig(scheme="kfold", k=5, seed=1))
    assert sorted(len(f.val) for f in splits.folds) == [5, 5, 10, 10, 10]
