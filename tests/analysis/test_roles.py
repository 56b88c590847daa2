"""Multi-input models: each series role found in a study, resampled onto one grid, stacked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medsight.analysis.pipeline import analyze
from medsight.analysis.roles import parse_pins, select_roles, stack_roles
from medsight.analysis.selection import select_series
from medsight.cli.app import main
from medsight.core import Image
from medsight.core.errors import InvalidInputError
from medsight.io import read_image, read_study, write_image
from medsight.models import ModelPackage
from medsight.models.roles import RoleSpec, roles_from_channel_names
from medsight.models.spec import (
    ArchitectureSpec,
    InputSpec,
    LabelSpec,
    ModelSpec,
    PreprocessingSpec,
    Task,
)

STUDY, FRAME = generate_uid(), generate_uid()


def mr_series(
    root: Path,
    name: str,
    array: np.ndarray,
    *,
    number: int,
    spacing: float,
    thickness: float,
    origin=(0.0, 0.0, 0.0),
    description: str | None = None,
    frame: str | None = FRAME,
    **tags,
) -> Path:
    """One MR series in ``root/name``: ``array`` is (rows, columns, slices), axial slices."""
    folder = root / name
    folder.mkdir(parents=True)
    series = generate_uid()
    for k in range(array.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = STUDY, series, "MR"
        ds.PatientID, ds.InstanceNumber, ds.SeriesNumber = "P1", k + 1, number
        if description is not None:
            ds.SeriesDescription = description
        if frame is not None:
            ds.FrameOfReferenceUID = frame
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.Rows, ds.Columns = array.shape[:2]
        ds.PixelSpacing = [spacing, spacing]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + thickness * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceThickness = thickness
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(array[:, :, k], dtype=np.uint16).tobytes()
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return folder


def _t1(root, value=200, **kw):
    kw.setdefault("description", "AX T1")
    return mr_series(
        root, "t1", np.full((16, 16, 6), value), number=1, spacing=1.0, thickness=2.0, **kw
    )


def _t2(root, value=300, name="t2", number=2, **kw):
    kw.setdefault("description", "AX T2 TSE")
    kw.setdefault("origin", (-1.0, -1.0, -0.5))
    return mr_series(
        root,
        name,
        np.full((20, 20, 8), value),
        number=number,
        spacing=0.9,
        thickness=1.5,
        EchoTime=100,
        **kw,
    )


def _flair(root, value=100, name="flair", number=3, **kw):
    kw.setdefault("description", "AX FLAIR")
    return mr_series(
        root,
        name,
        np.full((14, 14, 5), value),
        number=number,
        spacing=1.3,
        thickness=2.5,
        origin=(-1.0, -1.0, -1.0),
        InversionTime=2500,
        **kw,
    )


def _package(*roles: RoleSpec) -> ModelPackage:
    """A spec-only package for selection (never run): a 3D MR model taking ``roles``.

    Roles whose channels do not fill ``0..n-1`` (a subset of BRATS3) are renumbered in order.
    """
    if sorted(-1 if r.channel is None else r.channel for r in roles) != list(range(len(roles))):
        roles = tuple(r.model_copy(update={"channel": k}) for k, r in enumerate(roles))
    spec = ModelSpec(
        name="roles",
        version="1",
        task=Task.SEGMENTATION,
        architecture=ArchitectureSpec(name="unused"),
        input=InputSpec(modalities=["MR"], spatial_ndim=3, channels=len(roles), roles=list(roles)),
        preprocessing=PreprocessingSpec(),
        labels=[LabelSpec(index=1, name="x")],
    )
    return ModelPackage(Path("unused"), spec, "0")


BRATS3 = roles_from_channel_names({0: "FLAIR", 1: "T1w", 2: "T2w"}) or []


def _stack(study_root, package, **kw):
    study = read_study(study_root)
    sel = select_roles(study, package, **kw)
    assert not sel.withhold, sel.withhold
    return sel, stack_roles(sel, sel.series.load())


def test_roles_found_resampled_onto_the_reference_grid_in_channel_order(tmp_path):
    _t1(tmp_path), _t2(tmp_path), _flair(tmp_path)
    t1, t2, flair = BRATS3[1], BRATS3[2], BRATS3[0]
    pkg = _package(  # declared out of order: channel 0 T2, 1 FLAIR, 2 T1 (the grid)
        flair.model_copy(update={"channel": 1}),
        t1.model_copy(update={"channel": 2, "reference": True}),
        t2.model_copy(update={"channel": 0}),
    )
    sel, stacked = _stack(tmp_path, pkg)
    assert [m.role.name for m in sel.roles] == ["T2w", "FLAIR", "T1w"]
    assert [m.entry.description for m in sel.roles] == ["AX T2 TSE", "AX FLAIR", "AX T1"]
    assert "T1w <- #1 'AX T1'" in sel.reason and "grid of T1w" in sel.reason
    reference = read_image(tmp_path / "t1")
    image = stacked.image
    assert image.array.shape == (*reference.shape, 3) and image.n_channels == 3
    np.testing.assert_allclose(image.affine, reference.affine)
    assert image.source.series_instance_uid == reference.source.series_instance_uid
    # a different constant was planted in each series: each channel holds its own
    for channel, value in enumerate((300, 100, 200)):
        np.testing.assert_allclose(image.array[..., channel], value, rtol=1e-5)
    assert sum("resampled onto the T1w grid" in n for n in stacked.notes) == 2


def test_resampling_follows_each_series_geometry(tmp_path):
    """A ramp along x in patient space lands on the same x in the reference grid."""
    _t1(tmp_path)
    xs = -1.0 + 0.9 * np.arange(20)  # T2 columns' x positions (mm)
    ramp = np.broadcast_to((10 * (xs + 5))[None, :, None], (20, 20, 8))
    _t2(tmp_path, value=0, name="ramp", number=5)
    for f in sorted((tmp_path / "ramp").iterdir()):  # overwrite the pixels with the ramp
        ds = pydicom.dcmread(f)
        ds.PixelData = np.ascontiguousarray(ramp[:, :, 0], dtype=np.uint16).tobytes()
        ds.save_as(f)
    pkg = _package(BRATS3[1], BRATS3[2])
    _sel, stacked = _stack(tmp_path, pkg)
    image = stacked.image
    x = image.index_to_world(np.stack([np.arange(16), np.zeros(16), np.zeros(16)], -1))[:, 0]
    expected = 10 * (x + 5)
    np.testing.assert_allclose(image.array[:, 0, 0, 1], np.round(expected), atol=5)
    np.testing.assert_allclose(image.array[:, 8, 3, 1], np.round(expected), atol=5)


def test_ambiguous_role_is_withheld_naming_the_candidates(tmp_path):
    _t1(tmp_path), _t2(tmp_path), _flair(tmp_path)
    _flair(tmp_path, name="flair2", number=4, description="AX FLAIR repeat")
    sel = select_roles(read_study(tmp_path), _package(*BRATS3))
    assert sel.series is not None and not sel.roles  # made for this study, not run
    assert "2 series fit role FLAIR equally well" in sel.withhold
    assert "#3 'AX FLAIR'" in sel.withhold and "#4 'AX FLAIR repeat'" in sel.withhold
    assert "--role FLAIR=" in sel.withhold
    # pinned by series number, or by SeriesInstanceUID: it runs on the one chosen
    sel = select_roles(read_study(tmp_path), _package(*BRATS3), pins={"flair": "4"})
    assert not sel.withhold and sel.roles[0].entry.description == "AX FLAIR repeat"
    assert "pinned with --role FLAIR=4" in sel.reason
    uid = read_study(tmp_path / "flair").series[0].dicom.series_instance_uid
    sel = select_roles(read_study(tmp_path), _package(*BRATS3), pins={"FLAIR": uid})
    assert sel.roles[0].entry.description == "AX FLAIR"


def test_missing_required_role_is_withheld_with_the_reasons(tmp_path):
    _t1(tmp_path), _flair(tmp_path)
    sel = select_roles(read_study(tmp_path), _package(*BRATS3))
    assert "no series fills role T2w" in sel.withhold
    assert "#1 'AX T1': description does not match /t2/" in sel.withhold
    # an optional role the study lacks: its channel takes the declared fill value
    t2 = BRATS3[2].model_copy(update={"required": False, "fill": -7.0})
    sel, stacked = _stack(tmp_path, _package(BRATS3[0], BRATS3[1], t2))
    assert sel.roles[2].entry is None and any("optional role T2w" in w for w in sel.warnings)
    np.testing.assert_array_equal(stacked.image.array[..., 2], -7.0)


def test_a_series_never_fills_two_roles(tmp_path):
    _flair(tmp_path), _t1(tmp_path)
    loose = [RoleSpec(name="a", description_pattern="flair"), RoleSpec(name="b")]
    sel = select_roles(read_study(tmp_path), _package(*loose))
    assert "2 series fit role b equally well" in sel.withhold  # b has no rules: both fit
    sel = select_roles(read_study(tmp_path), _package(*loose), pins={"b": "3"})
    assert "best fit for roles a and b" in sel.withhold


def test_tags_find_a_role_when_descriptions_were_removed(tmp_path):
    _t1(tmp_path, description=""), _flair(tmp_path, description="")
    _t2(tmp_path, description="")
    sel = select_roles(read_study(tmp_path), _package(*BRATS3))
    # FLAIR by its inversion time, T2 by its echo time; nothing in a header says "T1"
    assert "FLAIR <- #3" in sel.reason and "InversionTime 2500" in sel.reason
    assert "T2w <- #2" in sel.reason
    assert "no series fills role T1w" in sel.withhold
    assert "nothing in its header says it is T1w" in sel.withhold


def test_other_frame_of_reference_or_no_overlap_is_refused(tmp_path):
    _t1(tmp_path / "a"), _t2(tmp_path / "a", frame=generate_uid())
    pkg = _package(BRATS3[1], BRATS3[2])
    sel = select_roles(read_study(tmp_path / "a"), pkg)
    stacked = stack_roles(sel, sel.series.load())
    assert stacked.image is None and "another Frame of Reference" in stacked.problems[0]
    _t1(tmp_path / "b"), _t2(tmp_path / "b", origin=(0.0, 0.0, 200.0))  # 20 cm away
    sel = select_roles(read_study(tmp_path / "b"), pkg)
    stacked = stack_roles(sel, sel.series.load())
    assert stacked.image is None and "covers 0% of the T1w grid" in stacked.problems[0]
    # no Frame of Reference stated: aligned by patient coordinates, and the report says so
    _t1(tmp_path / "c", frame=None), _t2(tmp_path / "c", frame=None)
    sel = select_roles(read_study(tmp_path / "c"), pkg)
    stacked = stack_roles(sel, sel.series.load())
    assert stacked.image is not None
    assert any("no shared Frame of Reference" in n for n in stacked.notes)


def test_pins_are_checked(tmp_path):
    _t1(tmp_path), _t2(tmp_path), _flair(tmp_path)
    study, pkg = read_study(tmp_path), _package(*BRATS3)
    with pytest.raises(InvalidInputError, match="names no role"):
        select_series(study, [pkg], roles={"T1c": "1"})
    sel = select_series(study, [pkg], roles={"FLAIR": "99"})[0]
    assert "--role FLAIR=99 names no series of this study" in sel.withhold
    sel = select_series(study, [pkg], roles={"FLAIR": "1"})[0]  # T1 pinned as FLAIR: warned
    assert not sel.withhold or "best fit for roles" in sel.withhold
    assert any("although its header says" in w for w in sel.warnings)
    assert parse_pins(["FLAIR=3", "T2w = 2"]) == {"FLAIR": "3", "T2w": "2"}
    for bad in (["FLAIR"], ["=3"], ["FLAIR=3", "flair=4"]):
        with pytest.raises(InvalidInputError):
            parse_pins(bad)


def test_another_kind_of_study_is_skipped_not_withheld(tmp_path):
    mr_series(
        tmp_path,
        "ct",
        np.zeros((8, 8, 3)),
        number=1,
        spacing=1.0,
        thickness=2.0,
        description="AX FLAIR",
    )
    for f in (tmp_path / "ct").iterdir():
        ds = pydicom.dcmread(f)
        ds.Modality = "CT"
        ds.save_as(f)
    sel = select_series(read_study(tmp_path), [_package(*BRATS3)])[0]
    assert sel.series is None and "modality CT is not one of MR" in sel.reason


# --- a 2-channel segmentation package trained on MSD data, end to end through analyze --------


def _msd(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(6):
        mask = np.zeros((16, 16, 6), np.uint8)
        a = int(rng.integers(3, 8))
        mask[a : a + 5, 5:10, 1:5] = 1
        for ch, (base, gain) in enumerate(((60, 50), (120, -40))):
            img = rng.normal(base, 4, mask.shape) + gain * mask.astype(np.float32)
            write_image(
                Image(img.astype(np.float32), spacing=(1, 1, 2)),
                root / "imagesTr" / f"b_{i:03d}_{ch:04d}.nii.gz",
            )
        write_image(Image(mask, spacing=(1, 1, 2)), root / "labelsTr" / f"b_{i:03d}.nii.gz")
    meta = {"name": "b", "modality": {"0": "FLAIR", "1": "T1w"}, "labels": {"0": "bg", "1": "b"}}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def two_channel_package(tmp_path_factory) -> ModelPackage:
    from medsight.training.seg_runner import SegmentationRun, run_segmentation
    from medsight.training.segmentation import SegTrainConfig

    root = tmp_path_factory.mktemp("seg2")
    run = SegmentationRun(
        data=f"msd:{_msd(root / 'data')}",
        out=root / "run",
        modality="MR",
        name="two-channel",
        max_filters=8,  # a tiny network: seconds on a CPU
        train=SegTrainConfig(max_steps=2, val_every=1, device="cpu", batch_size=2),
    )
    return run_segmentation(run, log=lambda _m: None)


def _blob_study(root: Path) -> Path:
    t1 = np.full((16, 16, 6), 120)
    t1[5:10, 5:10, 1:5] = 80
    mr_series(root, "t1", t1, number=1, spacing=1.0, thickness=2.0, description="T1 MPRAGE")
    flair = np.full((20, 20, 8), 60)
    flair[7:13, 7:13, 1:7] = 110
    mr_series(
        root,
        "flair",
        flair,
        number=2,
        spacing=0.8,
        thickness=1.5,
        origin=(-1.0, -1.0, -1.0),
        description="AX FLAIR",
        InversionTime=2200,
    )
    return root


def test_trained_package_declares_the_msd_channel_names_as_roles(two_channel_package):
    spec = two_channel_package.spec.input
    assert spec.channels == 2 and [r.name for r in spec.roles] == ["FLAIR", "T1w"]
    assert spec.roles[0].inversion_time is not None  # FLAIR is recognised by its TI too
    card = (two_channel_package.path / "MODEL_CARD.md").read_text()
    assert "in channel order: FLAIR, T1w; grid of FLAIR" in card


def test_two_channel_package_end_to_end_through_analyze(tmp_path, two_channel_package):
    study = _blob_study(tmp_path / "study")
    result = analyze(study, tmp_path / "out", [two_channel_package])
    run = result.report.models[0]
    assert run.status == "ran", run.reason  # too few cases for an OOD reference: nothing else
    assert "FLAIR <- #2 'AX FLAIR'" in run.series and "T1w <- #1 'T1 MPRAGE'" in run.series
    assert "grid of FLAIR" in run.series
    assert any("T1w" in w and "resampled onto the FLAIR grid" in w for w in run.warnings)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "FLAIR <- #2" in report["models"][0]["series"]
    # the 2-channel network ran on the stack; its mask lies on the reference role's grid
    mask = read_image(tmp_path / "out" / result.report.outputs[f"mask {two_channel_package.id}"])
    flair = read_image(study / "flair")
    assert mask.shape == flair.shape and not mask.has_channels
    np.testing.assert_allclose(mask.affine, flair.affine, atol=1e-4)
    # the DICOM SEG references the reference role's series, and every object is valid
    assert set(result.dicom_errors) <= {"dciodvfy"}
    seg = pydicom.dcmread(
        tmp_path / "out" / report["outputs"][f"DICOM SEG {two_channel_package.id}"]
    )
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == flair.source.series_instance_uid


def test_cli_role_pin_and_a_withheld_model(tmp_path, two_channel_package, capsys):
    study = _blob_study(tmp_path / "study")
    mr_series(
        study,
        "flair2",
        np.full((16, 16, 6), 70),
        number=3,
        spacing=1.0,
        thickness=2.0,
        description="AX FLAIR repeat",
        InversionTime=2200,
    )
    args = ["analyze", str(study), "--model", str(two_channel_package.path), "--no-dicom"]
    assert main([*args, "--out", str(tmp_path / "a"), "--no-explain"]) == 0
    out = capsys.readouterr().out
    assert "withheld" in out and "2 series fit role FLAIR equally well" in out
    assert main([*args, "--out", str(tmp_path / "b"), "--role", "FLAIR=3"]) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert "pinned with --role FLAIR=3" in report["models"][0]["series"]
    assert main([*args, "--out", str(tmp_path / "c"), "--role", "FLAIR"]) != 0
    assert "ROLE=SERIES" in capsys.readouterr().err


def test_real_brain_tumour_study_fills_every_brats_role(shared_data):
    """TCIA Brain-Tumor-Progression: T1 post-contrast, T1 pre, FLAIR, T2 and a crop."""
    study = read_study(shared_data / "dicom" / "brain_mr_study1")
    names = {0: "FLAIR", 1: "T1w", 2: "t1gd", 3: "T2w"}  # MSD BraTS dataset.json
    sel = select_roles(study, _package(*(roles_from_channel_names(names) or [])))
    assert not sel.withhold, sel.withhold
    chosen = {m.role.name: m.entry.description for m in sel.roles}
    assert chosen == {"FLAIR": "FLAIR_reg", "T1w": "T1pre_reg", "t1gd": "T1post", "T2w": "T2_reg"}
    assert "t1gd <- #12 'T1post' (SeriesDescription matches, ContrastBolusAgent stated)" in (
        sel.reason
    )
    stacked = stack_roles(sel, sel.series.load())
    assert stacked.image is not None and stacked.image.n_channels == 4
    flair = read_image(shared_data / "dicom" / "brain_mr_study1", series="FLAIR_reg")
    np.testing.assert_array_equal(stacked.image.array[..., 0], flair.array)


def test_nifti_files_fill_roles_by_name_once_their_modality_is_declared(tmp_path):
    write_image(Image(np.full((8, 8, 4), 10.0), spacing=(1, 1, 2)), tmp_path / "sub_flair.nii.gz")
    write_image(
        Image(np.full((10, 10, 8), 20.0), spacing=(0.8, 0.8, 1)), tmp_path / "sub_T1w.nii.gz"
    )
    pkg = _package(BRATS3[0], BRATS3[1])
    sel = select_roles(read_study(tmp_path), pkg)  # files do not say their modality
    assert "does not say its modality" in sel.withhold
    sel, stacked = _stack(tmp_path, pkg, modality="MR")
    assert [m.entry.description for m in sel.roles] == ["sub_flair.nii.gz", "sub_T1w.nii.gz"]
    assert stacked.image.array.shape == (8, 8, 4, 2)
    np.testing.assert_allclose(stacked.image.array[..., 1], 20.0, rtol=1e-5)
    assert any("no shared Frame of Reference" in n for n in stacked.notes)
