"""``medsight denoise`` of an enhanced multi-frame DICOM object: one derived multi-frame out."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medsight.cli.app import main
from medsight.io import read_image
from medsight.models.demo import demo_denoiser
from medsight.reporting.validate import dciodvfy


def _legacy_enhanced_mr(tmp_path):
    """A Legacy Converted Enhanced MR object (highdicom) of a 3-slice single-frame series."""
    from highdicom.legacy import LegacyConvertedEnhancedMRImage
    from tests.cli.test_denoise_cli import dicom_series

    rng = np.random.default_rng(0)
    planes = [rng.integers(100, 900, (12, 10)) for _ in range(3)]
    src = dicom_series(tmp_path / "single", "MR", planes)
    frames = []
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(f)
        ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
        ds.ReferringPhysicianName, ds.Manufacturer, ds.SeriesNumber = "", "medsight-test", 1
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = "1.2.826.0.1.3680043.10.1", ""
        ds.ImageType, ds.SliceThickness = ["ORIGINAL", "PRIMARY", "M", "NONE"], 3.0
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
        ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = "2D", 10, 500, 1
        ds.MagneticFieldStrength, ds.ImagingFrequency, ds.ImagedNucleus = 1.5, 63.9, "1H"
        ds.WindowCenter, ds.WindowWidth, ds.Laterality = 500, 800, "R"
        ds.RescaleSlope, ds.RescaleIntercept = 2, -50  # real-world = 2 * stored - 50
        frames.append(ds)
    mf = LegacyConvertedEnhancedMRImage(
        frames,
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    mf.Laterality = "R"  # General Series 2C: the converter leaves it out
    if "ReferencedSeriesSequence" in mf:  # highdicom's converter leaves it without instances
        del mf.ReferencedSeriesSequence
    path = tmp_path / "enhanced.dcm"
    mf.save_as(path, enforce_file_format=True)
    return path


def test_enhanced_multiframe_in_gives_one_valid_derived_multiframe_out(
    tmp_path, capsys, debian_tool
):
    src = _legacy_enhanced_mr(tmp_path)
    pkg = demo_denoiser(tmp_path / "pkg", name="mr-identity", version="1", modalities=("MR",))
    out = tmp_path / "den"
    assert main(["denoise", str(src), "--out", str(out), "--model", str(pkg.path)]) == 0, (
        capsys.readouterr().err
    )
    files = sorted(out.iterdir())
    assert len(files) == 1  # one multi-frame object, not one file per frame
    orig, back = read_image(src), read_image(out)
    np.testing.assert_allclose(back.affine, orig.affine)
    assert back.shape == orig.shape
    # identity model: the real-world values come back (stored = (v + 50) / 2, rounded)
    assert np.abs(back.array - orig.array).max() <= 2.0
    ds, s = pydicom.dcmread(files[0]), pydicom.dcmread(src)
    assert int(ds.NumberOfFrames) == int(s.NumberOfFrames) == 3
    assert ds.StudyInstanceUID == s.StudyInstanceUID and ds.SOPClassUID == s.SOPClassUID
    assert ds.FrameOfReferenceUID == s.FrameOfReferenceUID
    assert ds.SeriesInstanceUID != s.SeriesInstanceUID and ds.SOPInstanceUID != s.SOPInstanceUID
    assert "mr-identity@1" in ds.DerivationDescription and ds.ImageType[0] == "DERIVED"
    evidence = ds.SourceImageEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == s.SOPInstanceUID
    for f, (new, old) in enumerate(
        zip(ds.PerFrameFunctionalGroupsSequence, s.PerFrameFunctionalGroupsSequence, strict=True),
        start=1,
    ):
        assert new.PlanePositionSequence[0].ImagePositionPatient == (
            old.PlanePositionSequence[0].ImagePositionPatient
        )
        ref = new.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == s.SOPInstanceUID and ref.ReferencedFrameNumber == f
    debian_tool("dciodvfy")
    assert dciodvfy(src)[0] == []  # the source is clean, so any error below is the writer's
    assert dciodvfy(files[0])[0] == []


def test_an_image_of_part_of_the_frames_is_refused(tmp_path):
    import dataclasses

    from medsight.core.errors import InvalidInputError
    from medsight.io.dicom.derived import write_derived_series

    img = read_image(_legacy_enhanced_mr(tmp_path))
    src = img.source
    cut = type(img)(
        img.array[:, :, :2],
        img.affine,
        spatial_ndim=3,
        modality=img.modality,
        source=dataclasses.replace(
            src, sop_instance_uids=src.sop_instance_uids[:2], frame_numbers=src.frame_numbers[:2]
        ),
        meta=img.meta,
    )
    with pytest.raises(InvalidInputError, match="has 3 frames but the image holds 2"):
        write_derived_series(cut, tmp_path / "x", derivation="test")
    assert not (tmp_path / "x").exists()
