"""Grouping duplicates as one patient removes the leakage qc finds in BreastMNIST's splits."""

from __future__ import annotations

from medsight.data import SplitConfig, load_dataset, make_splits
from medsight.data.grouping import group_duplicates
from medsight.data.qc import CheckKind, run_qc


def test_regrouped_breastmnist_splits_do_not_leak(shared_data):
    ds = load_dataset(f"medmnist:{shared_data / 'medmnist' / 'breastmnist.npz'}")
    report, scans = run_qc(ds)
    assert report.of_kind(CheckKind.SPLIT_LEAKAGE)  # the official split leaks (see test_qc_real)
    grouped = group_duplicates(ds, scans=scans)
    assert grouped.case("test_00076").patient_id == grouped.case("train_00115").patient_id
    assert len({c.patient_id for c in grouped}) < len(ds)
    splits = make_splits(grouped, SplitConfig(keep_official=False, seed=0))
    assert splits.leaks(grouped) == {}
    again, _ = run_qc(grouped, splits=splits)
    assert again.of_kind(CheckKind.SPLIT_LEAKAGE) == []
    assert again.of_kind(CheckKind.PATIENT_IN_SEVERAL_SPLITS) == []
