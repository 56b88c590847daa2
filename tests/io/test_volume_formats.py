"""MGH/MGZ, Analyze, NIfTI-2 pairs (nibabel) and NRRD / MetaImage (SimpleITK) read in LPS."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medsight.core.errors import UnreadableFileError
from medsight.core.geometry import LPS_TO_RAS
from medsight.io import read_image, read_study

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"


def _check_against_nibabel(path: Path, ref_path: Path | None = None) -> None:
    ref = nib.load(ref_path or path)
    img = read_image(path)
    np.testing.assert_allclose(LPS_TO_RAS @ img.affine, ref.affine, atol=1e-5)
    assert "".join(nib.aff2axcodes(ref.affine)) == img.orientation
    np.testing.assert_allclose(np.asarray(img.array), np.asarray(ref.dataobj))


def test_bundled_mgz_matches_nibabel():
    _check_against_nibabel(NIB_DATA / "test.mgz")
    entry = read_study(NIB_DATA / "test.mgz").series[0]
    assert entry.problems == [] and entry.load().meta["spacing_source"] == "MGH"


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, (5, 6, 7)).astype(np.int16)
    affine = np.array(
        [[-0.8, 0, 0.1, 40.0], [0, 0.9, 0, -20.0], [0.05, 0, 2.5, 10.0], [0, 0, 0, 1.0]]
    )
    return data, affine


@pytest.mark.parametrize(
    "cls, name",
    [
        (nib.MGHImage, "v.mgh"),
        (nib.Nifti1Pair, "v.hdr"),
        (nib.Nifti2Pair, "v.hdr"),
        (nib.Nifti2Image, "v.nii"),
        (nib.AnalyzeImage, "v.hdr"),
    ],
)
def test_nibabel_formats_keep_geometry_and_values(tmp_path, volume, cls, name):
    data, affine = volume
    if cls is nib.AnalyzeImage:  # no orientation in Analyze: only zooms and a default
        affine = np.diag([2.0, 0.9, 2.5, 1.0])
    path = tmp_path / name
    nib.save(cls(data, affine), path)
    _check_against_nibabel(path)
    if name.endswith(".hdr"):  # the .img names the same pair
        _check_against_nibabel(path.with_suffix(".img"), path)
        study = read_study(tmp_path)  # one entry for the pair, no bad .img
        assert len(study) == 1 and study.bad_files == []
    img = read_image(path)
    assert img.meta["spacing_known"]
    assert any("Analyze 7.5 stores no orientation" in p for p in img.meta.get("problems", ())) == (
        cls is nib.AnalyzeImage
    )


@pytest.mark.parametrize("name", ["v.nrrd", "v.mha", "v.mhd"])
def test_itk_formats_match_simpleitk_in_lps(tmp_path, volume, name):
    data, _ = volume
    ref = sitk.GetImageFromArray(data)
    ref.SetSpacing((0.7, 0.8, 2.5))
    ref.SetOrigin((-10.0, 5.0, 30.0))
    c, s = np.cos(0.2), np.sin(0.2)
    ref.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(ref, str(tmp_path / name))
    img = read_image(tmp_path / name)
    np.testing.assert_allclose(img.spacing, (0.7, 0.8, 2.5))
    np.testing.assert_allclose(img.origin, (-10.0, 5.0, 30.0))
    np.testing.assert_allclose(img.direction, np.array(ref.GetDirection()).reshape(3, 3))
    np.testing.assert_array_equal(np.asarray(img.array), np.transpose(data, (2, 1, 0)))
    # voxel (i, j, k) lies where SimpleITK says
    idx = (1, 2, 3)
    world = img.affine @ np.array([*idx, 1.0])
    np.testing.assert_allclose(world[:3], ref.TransformIndexToPhysicalPoint(idx), atol=1e-6)


def test_unsupported_formats_are_named(tmp_path):
    (tmp_path / "brain.mnc").write_bytes(b"CDF\x01" + b"\0" * 100)
    (tmp_path / "lonely.img").write_bytes(b"\0" * 100)
    (tmp_path / "ct.dcm").write_bytes(b"not dicom")
    shutil.copy(NIB_DATA / "test.mgz", tmp_path / "ok.mgz")
    study = read_study(tmp_path)
    problems = {Path(b.path).name: b.problem for b in study.bad_files}
    assert "MINC file, a format medsight does not read" in problems["brain.mnc"]
    assert ".hdr header is missing" in problems["lonely.img"]
    assert "not a DICOM file" in problems["ct.dcm"] and "format" not in problems["ct.dcm"]
    with pytest.raises(UnreadableFileError, match="MINC"):
        read_image(tmp_path / "brain.mnc")


def test_corrupt_volume_is_one_clear_error(tmp_path):
    (tmp_path / "bad.mgz").write_bytes(b"garbage")
    with pytest.raises(UnreadableFileError, match=r"not a readable \.mgz volume"):
        read_image(tmp_path / "bad.mgz")
    (tmp_path / "bad.nrrd").write_bytes(b"NRRD0004\ngarbage\n")
    with pytest.raises(UnreadableFileError, match=r"not a readable \.nrrd volume"):
        read_image(tmp_path / "bad.nrrd")
