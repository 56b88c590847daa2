"""DICOM geometry and pixel values, checked against SimpleITK and pydicom on real files."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medsight.core import Image
from medsight.io import read_image, read_study, write_image

BRAIN = "dicom/brain_mr_study1"


def _sitk_series(folder: Path, series_uid: str) -> Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series_uid))
    return Image.from_sitk(reader.Execute())


@pytest.fixture(scope="module")
def brain_study(shared_data):
    return read_study(shared_data / BRAIN)


def test_brain_study_has_five_series_and_no_bad_files(brain_study):
    assert len(brain_study) == 5
    assert brain_study.bad_files == []
    assert {s.description for s in brain_study} == {
        "T1post",
        "HippoCrop",
        "T1pre_reg",
        "FLAIR_reg",
        "T2_reg",
    }
    assert len({s.study_instance_uid for s in brain_study}) == 1


def test_every_brain_series_matches_simpleitk(brain_study):
    for entry in brain_study:
        img = entry.load()
        ref = _sitk_series(entry.files[0].parent, entry.dicom.series_instance_uid)
        assert img.shape == ref.shape, entry.description
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-4, err_msg=entry.description)
        np.testing.assert_array_equal(img.array, ref.array)
        assert entry.problems == []
        assert img.source.sop_instance_uids and len(img.source.sop_instance_uids) == img.shape[2]


def test_oblique_series_orientation_and_spacing(brain_study):
    img = brain_study.select("T1post").load()
    assert img.orientation == "LPS"
    np.testing.assert_allclose(img.spacing, [0.4297, 0.4297, 6.5], atol=1e-3)
    # the third axis is the slice normal, not the patient z axis: the acquisition is oblique
    ds = pydicom.dcmread(img.meta["files"][0], stop_before_pixels=True)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    np.testing.assert_allclose(img.direction[:, 2], np.cross(iop[:3], iop[3:]), atol=1e-5)


def test_sort_ignores_file_names_and_instance_numbers(shared_data, tmp_path):
    src = shared_data / BRAIN / "12-T1post-05670"
    files = sorted(src.iterdir())
    names = [f"img{i:03d}.dcm" for i in range(len(files))]
    random.Random(0).shuffle(names)
    for f, name in zip(files, names, strict=True):
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = random.Random(name).randint(1, 10_000)  # scrambled on purpose
        ds.save_as(tmp_path / name)
    ours = read_image(tmp_path)
    ref = read_image(src)
    np.testing.assert_array_equal(ours.array, ref.array)
    np.testing.assert_allclose(ours.affine, ref.affine)


def test_bundled_ct_and_mr_single_slices_match_simpleitk(pydicom_file):
    for name in ("CT_small.dcm", "MR_small.dcm"):
        path = pydicom_file(name)
        img = read_image(path)
        ref = Image.from_sitk(sitk.ReadImage(str(path)))
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-4)
        np.testing.assert_array_equal(img.array, ref.array)


def test_ct_is_in_hounsfield_units(pydicom_file):
    path = pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    img = read_image(path)
    expected = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(img.array[:, :, 0], expected.T)
    assert float(ds.RescaleIntercept) != 0


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_compressed_and_other_transfer_syntaxes_decode_losslessly(pydicom_file, name):
    ref = read_image(pydicom_file("MR_small.dcm"))
    img = read_image(pydicom_file(name))
    np.testing.assert_array_equal(img.array, ref.array)
    np.testing.assert_allclose(img.affine, ref.affine)


def test_monochrome1_is_inverted(pydicom_file, tmp_path):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    img = read_image(tmp_path / "m1.dcm")
    ref = read_image(pydicom_file("MR_small.dcm"))
    lo, hi = -(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1  # signed stored values
    np.testing.assert_array_equal(img.array.astype(int), lo + hi - ref.array.astype(int))
    assert img.meta["monochrome1_inverted"]


def test_rgb_and_palette_images_are_2d_colour(pydicom_file):
    rgb = read_image(pydicom_file("SC_rgb_rle.dcm"))
    assert rgb.spatial_ndim == 2 and rgb.n_channels == 3
    pal = read_image(pydicom_file("examples_palette.dcm"))
    assert pal.n_channels == 3 and pal.shape == (800, 350)


def test_multiframe_cine_without_positions_stacks_frames(pydicom_file):
    entry = read_study(pydicom_file("examples_ybr_color.dcm")).series[0]
    img = entry.load()
    assert img.shape == (320, 240, 30) and img.n_channels == 3
    assert any("frames without spatial positions" in p for p in entry.problems)


def test_rtdose_grid_frame_offsets_give_a_volume(pydicom_file):
    path = pydicom_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    img = read_image(path)
    assert img.shape == (ds.Columns, ds.Rows, int(ds.NumberOfFrames))
    offsets = np.asarray(ds.GridFrameOffsetVector, dtype=float)
    np.testing.assert_allclose(img.spacing[2], abs(offsets[1] - offsets[0]))


def test_enhanced_multiframe_equals_classic_series(shared_data, tmp_path):
    """A legacy-converted enhanced MR (one file, per-frame geometry) reads like its source."""
    hd = pytest.importorskip("highdicom")
    folder = shared_data / BRAIN / "13_HCropVolume"
    datasets = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    random.Random(1).shuffle(datasets)  # frame order must not matter
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
        legacy_datasets=datasets,
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    enhanced.save_as(tmp_path / "enhanced.dcm")
    img = read_image(tmp_path / "enhanced.dcm")
    ref = read_image(folder)
    np.testing.assert_array_equal(img.array, ref.array)
    np.testing.assert_allclose(img.affine, ref.affine, atol=1e-4)
    assert len(img.source.frame_numbers) == img.shape[2]
    # the per-frame functional groups' PixelSpacing is the spacing's source (a physical size)
    assert img.meta["spacing_source"] == "PixelSpacing" and img.meta["spacing_known"]
    np.testing.assert_allclose(img.spacing[:2], ref.spacing[:2])


def _copy_series(src: Path, dst: Path) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for f in sorted(src.iterdir()):
        shutil.copy(f, dst / f.name)
        out.append(dst / f.name)
    return out


def test_missing_slice_is_reported(shared_data, tmp_path):
    files = _copy_series(shared_data / BRAIN / "13_HCropVolume", tmp_path / "s")
    ordered = sorted(files, key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    ordered[10].unlink()
    entry = read_study(tmp_path / "s").series[0]
    assert any("missing slices" in p and "about 1 slice" in p for p in entry.problems)


def test_non_uniform_spacing_and_gantry_tilt_are_reported(shared_data, tmp_path):
    files = _copy_series(shared_data / BRAIN / "13_HCropVolume", tmp_path / "s")
    for f in files:
        ds = pydicom.dcmread(f)
        z = float(ds.ImagePositionPatient[2])
        ds.ImagePositionPatient = [0.0, 0.2 * z, z + 0.1 * (z % 2)]  # shear + jitter
        ds.save_as(f)
    entry = read_study(tmp_path / "s").series[0]
    text = " ".join(entry.problems)
    assert "gantry tilt" in text and "non-uniform slice spacing" in text
    img = entry.load()
    ref = Image.from_sitk(_sitk_series_from_files(files))
    np.testing.assert_allclose(img.affine[:3, 3], ref.affine[:3, 3], atol=1e-4)


def _sitk_series_from_files(files: list[Path]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(files[0].parent)))
    return reader.Execute()


def test_repeated_positions_become_channels(shared_data, tmp_path):
    src = shared_data / BRAIN / "13_HCropVolume"
    for echo in (1, 2):
        for f in sorted(src.iterdir()):
            ds = pydicom.dcmread(f)
            ds.EchoNumbers = echo
            ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(f), str(echo)])
            if echo == 2:
                ds.PixelData = (ds.pixel_array + 1000).astype(ds.pixel_array.dtype).tobytes()
            ds.save_as(tmp_path / f"e{echo}_{f.name}")
    img = read_image(tmp_path)
    ref = read_image(src)
    assert img.n_channels == 2 and img.shape == ref.shape
    np.testing.assert_array_equal(img.array[..., 0], ref.array)
    np.testing.assert_array_equal(img.array[..., 1], ref.array + 1000)


def test_two_stacks_in_one_series_are_split(shared_data, tmp_path):
    files = _copy_series(shared_data / BRAIN / "13_HCropVolume", tmp_path / "s")
    ds = pydicom.dcmread(files[0])
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # a sagittal "localiser" in the series
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "s" / "localiser.dcm")
    study = read_study(tmp_path / "s")
    assert len(study) == 2
    assert all("2 stacks" in " ".join(s.problems) for s in study)
    assert sorted(s.load().shape[2] for s in study) == [1, len(files)]


def test_study_selection_by_description_and_uid(brain_study, shared_data):
    assert brain_study.select("flair").description == "FLAIR_reg"
    uid = brain_study.select("T2").dicom.series_instance_uid
    assert brain_study.select(uid=uid).description == "T2_reg"
    img = read_image(shared_data / BRAIN, series="HippoCrop")
    assert img.shape == (35, 51, 32)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip_of_a_dicom_series_is_exact(brain_study, tmp_path, suffix):
    img = brain_study.select("T1post").load()
    path = write_image(img, tmp_path / f"t1post{suffix}")
    back = read_image(path)
    assert back.array.dtype == img.array.dtype
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-5)
    # and SimpleITK reads the NIfTI we wrote with the same geometry
    ref = Image.from_sitk(sitk.ReadImage(str(path)))
    np.testing.assert_allclose(ref.affine, img.affine, atol=1e-4)
