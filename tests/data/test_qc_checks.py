"""Each quality check on small built data sets with one planted problem (and a clean control)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as P

from medsight.core import Box, Case, Image, UnreadableFileError
from medsight.data import Dataset, Task, load_dataset
from medsight.data.qc import CheckKind, QCConfig, Severity, run_qc


def _img(seed: int, shape=(32, 32), spacing=None, dtype=np.uint8) -> Image:
    rng = np.random.default_rng(seed)
    arr = (rng.random(shape) * 200).astype(dtype)
    return Image(arr, spacing=spacing)


def _kinds(report) -> set[str]:
    return {f.kind.value for f in report.findings}


def test_clean_data_set_has_no_warnings():
    cases = [
        Case(f"c{i}", images={"image": _img(i)}, label=i % 2, split="train" if i < 8 else "test")
        for i in range(10)
    ]
    report, _ = run_qc(Dataset("clean", cases, task=Task.BINARY))
    assert [f for f in report.findings if f.severity is not Severity.INFO] == []


def test_unreadable_files_and_layout_issues(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for i in range(3):
        P.fromarray(np.full((8, 8), i * 40, np.uint8)).save(tmp_path / "a" / f"{i}.png")
        P.fromarray(np.full((8, 8), i * 30 + 5, np.uint8)).save(tmp_path / "b" / f"{i}.png")
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    report, _ = run_qc(load_dataset(f"folder:{tmp_path}"))
    (bad,) = report.of_kind(CheckKind.UNREADABLE)
    assert bad.severity is Severity.ERROR and bad.files[0].endswith("broken.png")
    assert "broken.png" in next(iter(bad.details["errors"].values()))
    assert report.n_unreadable == 1


def test_masks_mismatch_empty_values_and_geometry():
    img = _img(0, (16, 16))
    full = np.zeros((16, 16), np.uint8)
    full[4:8, 4:8] = 1
    cases = [
        Case("ok", images={"image": img}, label=Image(full), attributes={"class": "tumour"}),
        Case("size", images={"image": _img(1, (16, 16))}, label=Image(np.ones((16, 15), np.uint8))),
        Case("geom", images={"image": _img(2, (16, 16))},
             label=Image(full, spacing=(2.0, 2.0))),
        Case("empty", images={"image": _img(3, (16, 16))}, label=Image(np.zeros_like(full)),
             attributes={"class": "tumour"}),
        Case("normal", images={"image": _img(4, (16, 16))}, label=Image(np.zeros_like(full)),
             attributes={"class": "normal"}),
        Case("values", images={"image": _img(5, (16, 16))}, label=Image(full * 7)),
    ]  # fmt: skip
    ds = Dataset("m", cases, task=Task.SEGMENTATION, label_names={0: "bg", 1: "lesion"})
    report, _ = run_qc(ds)
    got = {f.kind: f.case_ids for f in report.findings}
    assert got[CheckKind.MASK_SHAPE_MISMATCH] == ["size"]
    assert got[CheckKind.MASK_GEOMETRY_MISMATCH] == ["geom"]
    assert got[CheckKind.EMPTY_MASK] == ["empty"]  # "normal" is a negative class
    assert got[CheckKind.MASK_VALUES] == ["values"]
    assert report.of_kind("mask_values")[0].details["values"] == {"values": [7]}


def test_patients_in_several_splits_and_missing_attributes():
    cases = [
        Case("a1", patient_id="p1", images={"image": _img(1)}, label=0, split="train",
             attributes={"sex": "F", "age": "50"}),
        Case("a2", patient_id="p1", images={"image": _img(2)}, label=0, split="test",
             attributes={"sex": "F", "age": None}),
        Case("b1", patient_id="p2", images={"image": _img(3)}, label=1, split="train",
             attributes={"sex": None, "age": "61"}),
    ]  # fmt: skip
    report, _ = run_qc(Dataset("p", cases))
    (spread,) = report.of_kind(CheckKind.PATIENT_IN_SEVERAL_SPLITS)
    assert spread.details == {"p1": ["test", "train"]} and set(spread.case_ids) == {"a1", "a2"}
    missing = {f.details["attribute"]: f.case_ids for f in report.of_kind("missing_attribute")}
    assert missing == {"age": ["a2"], "sex": ["b1"]}


def test_duplicates_near_duplicates_and_leakage():
    base = _img(7, (64, 64))
    jitter = np.random.default_rng(1).integers(-3, 4, base.shape)
    noisy = base.with_array(np.clip(base.array.astype(int) + jitter, 0, 255).astype(np.uint8))
    cases = [Case(f"x{i}", images={"image": _img(100 + i, (64, 64))}, label=0, split="train")
             for i in range(8)]  # fmt: skip
    cases += [
        Case("orig", images={"image": base}, label=0, split="train"),
        Case("copy", images={"image": base}, label=0, split="train"),
        Case("near", images={"image": noisy}, label=1, split="test"),
    ]
    report, _ = run_qc(Dataset("d", cases, label_names={0: "neg", 1: "pos"}))
    (exact,) = report.of_kind(CheckKind.EXACT_DUPLICATE)
    assert exact.case_ids == ["orig", "copy"] and exact.severity is Severity.WARNING
    (near,) = report.of_kind(CheckKind.NEAR_DUPLICATE)
    assert set(near.case_ids) == {"orig", "copy", "near"}
    assert near.details["across_splits"] and near.details["conflicting_labels"]
    assert report.of_kind(CheckKind.SPLIT_LEAKAGE)[0].severity is Severity.ERROR
    strict = QCConfig(near_dup_correlation=1.0, near_dup_residual=1.0, near_dup_hamming=0)
    assert run_qc(Dataset("d", cases), strict)[0].of_kind(CheckKind.NEAR_DUPLICATE) == []


def test_geometry_dtype_scale_and_boxes():
    cases = [Case(f"c{i}", images={"image": _img(i, (20, 20), spacing=(1.0, 1.0))}, label=i % 2)
             for i in range(9)]  # fmt: skip
    cases.append(Case("big", images={"image": _img(50, (60, 20), spacing=(1.0, 1.0))}, label=0))
    cases.append(Case("coarse", images={"image": _img(51, (20, 20), spacing=(3.0, 3.0))}, label=1))
    scaled = Image(np.random.default_rng(9).random((20, 20)).astype(np.float32) * 1e6)
    cases.append(Case("float", images={"image": scaled}, label=1))
    cases.append(Case("boxed", images={"image": _img(52, (20, 20))}, label=0,
                      attributes={"boxes": (Box(2, 2, 30, 10, "lung"),)}))  # fmt: skip
    report, _ = run_qc(Dataset("g", cases))
    got = {f.kind: f.case_ids for f in report.findings}
    assert got[CheckKind.SIZE_OUTLIER] == ["big"]
    assert got[CheckKind.SPACING_OUTLIER] == ["coarse"]
    assert got[CheckKind.DTYPE_MIX] == ["float"]
    assert got[CheckKind.INTENSITY_SCALE_MIX] == ["float"]
    assert got[CheckKind.BOX_OUT_OF_IMAGE] == ["boxed"]


def test_imbalance_and_protocol_variability():
    cases = []
    for i in range(30):
        site = "A" if i < 15 else "B"
        arr = np.random.default_rng(i).random((16, 16)) * (50 if site == "A" else 200)
        cases.append(Case(f"c{i}", images={"image": Image(arr)}, label=int(i % 10 == 0),
                          attributes={"site": site}))  # fmt: skip
    report, _ = run_qc(Dataset("s", cases, label_names={0: "neg", 1: "pos"}))
    (imb,) = report.of_kind(CheckKind.LABEL_IMBALANCE)
    assert imb.details["counts"] == {"neg": 27, "pos": 3}
    info, shift = sorted(report.of_kind(CheckKind.PROTOCOL_VARIABILITY), key=lambda f: f.severity)
    assert info.severity is Severity.INFO and info.details["counts"] == {"A": 15, "B": 15}
    assert shift.severity is Severity.WARNING and shift.details["attribute"] == "site"
    assert "mean intensity" in str(shift.details["groups"])


def test_splits_file_is_checked_instead_of_case_splits(tmp_path):
    from medsight.data import Fold, Splits

    cases = [Case(f"c{i}", patient_id=f"p{i // 2}", images={"image": _img(i)}, label=i % 2)
             for i in range(6)]  # fmt: skip
    fold = Fold(train=["c0", "c2", "c3", "c4"], val=["c5"])
    leaky = Splits(dataset="s", scheme="holdout", seed=0, source="generated", stratified=False,
                   test=["c1"], folds=[fold])  # fmt: skip
    report, _ = run_qc(Dataset("s", cases), splits=leaky)
    (spread,) = report.of_kind(CheckKind.PATIENT_IN_SEVERAL_SPLITS)
    assert set(spread.details) == {"p0", "p2"}
    with pytest.raises(UnreadableFileError):
        Splits.load(tmp_path / "missing.json")


def test_mask_findings_name_the_mask_files(tmp_path):
    for cls in ("benign", "normal"):
        (tmp_path / cls).mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        P.fromarray((rng.random((6, 8)) * 255).astype(np.uint8)).save(
            tmp_path / "benign" / f"{i}.png"
        )
        mask = np.zeros((6, 8), np.uint8)
        mask[1:3, 1:3] = 255
        P.fromarray(mask if i else mask * 0).save(tmp_path / "benign" / f"{i}_mask.png")
    P.new("L", (8, 6)).save(tmp_path / "normal" / "n.png")
    P.new("L", (9, 6)).save(tmp_path / "normal" / "n_mask.png")
    report, _ = run_qc(load_dataset(f"folder:{tmp_path}"))
    (empty,) = report.of_kind(CheckKind.EMPTY_MASK)
    assert [f.rsplit("/", 1)[-1] for f in empty.files] == ["0.png", "0_mask.png"]
    (size,) = report.of_kind(CheckKind.MASK_SHAPE_MISMATCH)
    assert size.case_ids == ["normal/n"] and size.files[1].endswith("n_mask.png")
