"""``medsight train denoise`` and ``medsight denoise``: NIfTI, PNG and DICOM round trips."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medsight.cli.app import main
from medsight.core import Image
from medsight.io import read_image, write_image
from medsight.models.demo import demo_denoiser
from medsight.models.package import ModelPackage


def _identity(path, modalities=("MR",)) -> ModelPackage:
    return demo_denoiser(path, name="mr-identity", version="1", modalities=modalities)


def dicom_series(folder, modality: str, planes, *, spacing: float = 0.7, description="t2"):
    """A single-frame MR-storage series in ``folder``: one uint16 slice per plane, 3 mm apart."""
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    for k, plane in enumerate(planes):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, modality
        ds.PatientID, ds.InstanceNumber, ds.SeriesDescription = "P", k + 1, description
        ds.Rows, ds.Columns = plane.shape
        ds.PixelSpacing, ds.ImagePositionPatient = [spacing, spacing], [0, 0, 3.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.asarray(plane, dtype=np.uint16).tobytes()
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)
    return folder


def _series(folder, modality: str, n: int = 2):
    ramp = np.arange(144, dtype=np.uint16).reshape(12, 12)
    return dicom_series(folder, modality, [ramp * (k + 3) for k in range(n)])


def test_the_commands_are_registered(capsys):
    assert main(["train", "denoise", "--help"]) == 0
    assert "--adversarial-weight" in capsys.readouterr().out
    assert main(["denoise", "--help"]) == 0
    assert "--model" in capsys.readouterr().out


def test_nifti_and_png_round_trips_keep_format_and_geometry(tmp_path, capsys):
    pkg = _identity(tmp_path / "pkg")
    vol = np.random.default_rng(0).normal(300, 40, (10, 9, 4)).astype(np.float32)
    write_image(Image(vol, spacing=(0.5, 0.6, 2.5), origin=(1, 2, 3)), tmp_path / "in.nii.gz")
    args = ["denoise", str(tmp_path / "in.nii.gz"), "--out", str(tmp_path / "out.nii.gz")]
    assert main([*args, "--model", str(pkg.path), "--device", "cpu"]) == 0
    back, orig = read_image(tmp_path / "out.nii.gz"), read_image(tmp_path / "in.nii.gz")
    assert np.allclose(back.affine, orig.affine) and back.shape == orig.shape
    np.testing.assert_allclose(back.array, vol, atol=0.05)
    png = np.random.default_rng(1).integers(0, 255, (20, 14)).astype(np.uint8)
    write_image(Image(png, spatial_ndim=2), tmp_path / "in.png")
    code = main(
        [
            "denoise",
            str(tmp_path / "in.png"),
            "--out",
            str(tmp_path / "o.png"),
            "--model",
            str(pkg.path),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    out = read_image(tmp_path / "o.png")
    assert out.array.dtype == np.uint8 and np.abs(out.array.astype(int) - png).max() <= 1


def test_dicom_in_gives_a_derived_series_out(tmp_path, capsys):
    pkg = _identity(tmp_path / "pkg")
    src = _series(tmp_path / "mr", "MR")
    code = main(
        [
            "denoise",
            str(src),
            "--out",
            str(tmp_path / "den"),
            "--model",
            str(pkg.path),
            "--device",
            "cpu",
        ]
    )
    assert code == 0, capsys.readouterr().err
    back, orig = read_image(tmp_path / "den"), read_image(src)
    assert np.allclose(back.affine, orig.affine)
    assert np.abs(back.array.astype(int) - orig.array.astype(int)).max() <= 1
    ds = pydicom.dcmread(sorted((tmp_path / "den").iterdir())[0])
    assert ds.StudyInstanceUID == orig.source.study_instance_uid
    assert ds.SeriesInstanceUID != orig.source.series_instance_uid
    assert "mr-identity@1" in ds.DerivationDescription and ds.ImageType[0] == "DERIVED"


def test_ct_to_an_mr_denoiser_and_no_model_are_refused(tmp_path, capsys):
    pkg = _identity(tmp_path / "pkg")
    ct = _series(tmp_path / "ct", "CT")
    code = main(["denoise", str(ct), "--out", str(tmp_path / "x"), "--model", str(pkg.path)])
    err = capsys.readouterr().err
    assert code == 2 and "modality is CT" in err and "MR images only" in err
    assert not (tmp_path / "x").exists()
    write_image(Image(np.ones((8, 8), np.float32)), tmp_path / "ct.nii.gz")
    code = main(
        [
            "denoise",
            str(tmp_path / "ct.nii.gz"),
            "--out",
            str(tmp_path / "y.nii.gz"),
            "--model",
            str(pkg.path),
            "--modality",
            "ct",
        ]
    )
    assert code == 2 and "modality is CT" in capsys.readouterr().err
    code = main(["denoise", str(ct), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "no default denoiser for CT" in err and "--model PKG" in err


def test_train_denoise_then_evaluate(tmp_path, capsys):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 16, 16)).astype(np.uint8)
        arrays[f"{split}_labels"] = np.zeros((n, 1), int)
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    code = main(
        [
            "train",
            "denoise",
            "--data",
            f"medmnist:{tmp_path / 'breastmnist.npz'}",
            "--out",
            str(tmp_path / "run"),
            "--noise",
            "speckle",
            "--levels",
            "5",
            "20",
            "--steps",
            "2",
            "--patch-size",
            "16",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--threads",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    spec = ModelPackage.load(tmp_path / "run" / "package").spec
    assert spec.extra["noise"]["model"] == "speckle" and spec.extra["noise"]["levels"] == [5, 20]
    assert "validation PSNR" in capsys.readouterr().out
    data = f"medmnist:{tmp_path / 'breastmnist.npz'}"
    code = main(
        [
            "evaluate",
            str(tmp_path / "run"),
            "--data",
            data,
            "--out",
            str(tmp_path / "eval"),
            "--n-resamples",
            "10",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "test (2 cases): psnr_noisy@5" in capsys.readouterr().out
    assert (tmp_path / "eval" / "report.json").is_file()


def test_train_denoise_takes_a_splits_file_and_never_sees_its_test_cases(tmp_path, capsys):
    from medsight.data import Fold, Splits

    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 255, (3, 16, 16)).astype(np.uint8)
        arrays[f"{split}_labels"] = np.zeros((3, 1), int)
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    # the split file moves cases away from the official parts: 5 train, 1 val, 3 test
    splits = Splits(
        dataset="breastmnist",
        scheme="holdout",
        seed=0,
        source="generated",
        stratified=False,
        test=["train_00000", "val_00000", "val_00001"],
        folds=[
            Fold(
                train=["train_00001", "train_00002", "val_00002", "test_00000", "test_00001"],
                val=["test_00002"],
            )
        ],
    )
    splits.save(tmp_path / "splits.json")
    args = ["train", "denoise", "--data", f"medmnist:{tmp_path / 'breastmnist.npz'}"]
    args += ["--out", str(tmp_path / "run"), "--splits", str(tmp_path / "splits.json")]
    args += ["--steps", "1", "--patch-size", "16", "--batch-size", "2", "--device", "cpu"]
    assert main([*args, "--threads", "1", "--adversarial-weight", "0"]) == 0, (
        capsys.readouterr().err
    )
    spec = ModelPackage.load(tmp_path / "run" / "package").spec
    assert spec.training_data.n_cases == {"train": 5, "val": 1}
    assert "5 cases" in capsys.readouterr().out
    # a split file that does not list every case is refused, naming the problem
    splits.model_copy(update={"test": ["train_00000"]}).save(tmp_path / "bad.json")
    args[args.index(str(tmp_path / "splits.json"))] = str(tmp_path / "bad.json")
    args[args.index(str(tmp_path / "run"))] = str(tmp_path / "run2")
    assert main([*args, "--threads", "1"]) != 0
    assert "val_00000" in capsys.readouterr().err
