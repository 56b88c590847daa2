"""DICOM folder + label table keyed by a DICOM attribute, on the real brain MR study."""

from __future__ import annotations

import pytest
from pydicom import dcmread

from medsight.core import InvalidInputError
from medsight.data import Task, load_dataset


def test_series_become_cases_with_table_labels(shared_data, tmp_path):
    root = shared_data / "dicom"
    first = next((root / "brain_mr_study1" / "12-T1post-05670").glob("*.dcm"))
    uid = dcmread(first, stop_before_pixels=True).SeriesInstanceUID
    table = tmp_path / "labels.csv"
    table.write_text(f"SeriesInstanceUID,label,reader\n{uid},tumour,A\n9.9.9,normal,B\n")
    ds = load_dataset(f"dicom:{root}?labels={table}&key=SeriesInstanceUID")
    assert len(ds) == 5 and ds.task is Task.BINARY
    labelled = [c for c in ds if c.label is not None]
    assert len(labelled) == 1 and ds.label_names[labelled[0].label] == "tumour"
    assert labelled[0].attributes["series_description"] == "T1post"
    assert labelled[0].attributes["reader"] == "A" and labelled[0].patient_id == "PGBM-002"
    assert labelled[0].image().shape == (512, 512, 22)
    (orphan,) = [i for i in ds.layout_issues if i.kind == "orphan_file"]
    assert orphan.files == ("9.9.9",)


def test_table_without_key_column(shared_data, tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("StudyUID,label\n1,a\n")
    with pytest.raises(InvalidInputError, match="StudyInstanceUID"):
        load_dataset(f"dicom:{shared_data / 'dicom'}?labels={table}")


def test_corrupt_dicom_files_are_reported(pydicom_file, tmp_path):
    import shutil

    from medsight.data.qc import CheckKind, run_qc

    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "good.dcm")
    data = (tmp_path / "good.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:200])
    (tmp_path / "README.txt").write_text("notes")
    ds = load_dataset(f"dicom:{tmp_path}")
    assert len(ds) == 1
    report, _ = run_qc(ds)
    (bad,) = report.of_kind(CheckKind.UNREADABLE)
    assert len(bad.files) == 1 and "cut.dcm" in bad.files[0]


def test_one_case_per_study_with_series_as_roles(shared_data, tmp_path):
    root = shared_data / "dicom"
    first = next((root / "brain_mr_study1" / "12-T1post-05670").glob("*.dcm"))
    study_uid = dcmread(first, stop_before_pixels=True).StudyInstanceUID
    table = tmp_path / "labels.csv"
    table.write_text(f"StudyInstanceUID,finding\n{study_uid},glioblastoma\n")
    ds = load_dataset(f"dicom:{root}?labels={table}&case=study")
    (case,) = ds
    assert case.case_id == study_uid and ds.label_names[case.label] == "glioblastoma"
    assert set(case.roles) == {"t1post", "hippocrop", "t1pre_reg", "flair_reg", "t2_reg"}
    assert case.image("flair_reg").shape[2] == 22
    assert ds.files_of(study_uid)["hippocrop"].endswith("13_HCropVolume")
    with pytest.raises(InvalidInputError, match="'patient'"):
        load_dataset(f"dicom:{root}?case=patient")
