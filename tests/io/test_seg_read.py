"""Reading DICOM SEG written by highdicom (every form) and by medsight, on the source grid."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medsight.io import read_image, read_study

N, ROWS, COLS = 6, 8, 10


def _ct_series(folder: Path) -> list[Dataset]:
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out = []
    for k in range(N):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "P1", "T^T", "", "O"
        ds.Modality, ds.StudyDate, ds.StudyTime, ds.StudyID = "CT", "20200101", "120000", "1"
        ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
        ds.SeriesNumber, ds.InstanceNumber = 1, N - k  # instance order opposite to position
        ds.ImagePositionPatient = [-5.0, -4.0, 2.5 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.9], 2.5
        ds.Rows, ds.Columns, ds.SamplesPerPixel = ROWS, COLS, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.PixelData = np.full((ROWS, COLS), k, dtype=np.int16).tobytes()
        path = folder / f"ct{(k * 7) % N}.dcm"  # file names not in slice order
        ds.save_as(path, enforce_file_format=True)
        out.append(pydicom.dcmread(path))
    return out


def _descriptions(n: int) -> list[hd.seg.SegmentDescription]:
    alg = hd.AlgorithmIdentificationSequence(
        name="ref-seg", version="2.1", family=codes.cid7162.ArtificialIntelligence
    )
    types = [codes.SCT.Liver, codes.SCT.Kidney, codes.SCT.Spleen]
    return [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=f"organ {i + 1}",
            segmented_property_category=codes.SCT.Organ,
            segmented_property_type=types[i],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=alg,
        )
        for i in range(n)
    ]


def _write_seg(
    sources: list[Dataset], pixels: np.ndarray, kind: str, path: Path, n: int, **options: object
) -> Path:
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=kind,
        segment_descriptions=_descriptions(n),
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
        **({"max_fractional_value": 200} if kind == "FRACTIONAL" else {}),
        **options,
    )
    seg.save_as(path)
    return path


def _masks() -> np.ndarray:
    """(slice, row, column, segment) for sources in position order; segment 2 on 1 slice."""
    m = np.zeros((N, ROWS, COLS, 3), bool)
    m[1:3, 2:5, 3:7, 0] = True
    m[4, 1:4, 1:3, 1] = True
    m[1:5, 6:8, 0:2, 2] = True
    return m


def _ijk(a: np.ndarray) -> np.ndarray:
    """(slice, row, column[, c]) -> medsight's (column, row, slice[, c])."""
    return np.swapaxes(a, 0, 2)


@pytest.fixture
def study(tmp_path):
    sources = _ct_series(tmp_path / "study" / "ct")
    return tmp_path / "study", sources


def _seg_entry(root: Path):
    st = read_study(root)
    return st, st.select(modality="SEG")


def test_binary_sparse_seg_gives_segment_numbers_on_the_source_grid(study):
    root, sources = study
    masks = _masks()
    _write_seg(sources, masks, "BINARY", root / "seg.dcm", 3)  # empty frames omitted
    st, entry = _seg_entry(root)
    ct = st.select(modality="CT").load()
    seg = entry.load()
    assert entry.problems == [] and entry.dicom.shape == ct.shape
    np.testing.assert_allclose(seg.affine, ct.affine)
    arr = np.asarray(seg.array)
    assert arr.shape == ct.shape and seg.meta["segment_values"] == "labels"
    expected = _ijk(np.argmax(np.concatenate([~masks.any(-1, keepdims=True), masks], -1), -1))
    np.testing.assert_array_equal(arr, expected)
    for n in (1, 2, 3):
        assert (arr == n).sum() == masks[..., n - 1].sum()
    segs = {s["number"]: s for s in seg.meta["segments"]}
    assert segs[2]["label"] == "organ 2"
    assert segs[2]["type"] == {"value": "64033007", "scheme": "SCT", "meaning": "Kidney"}
    assert segs[2]["category"]["meaning"] == "Organ"
    assert (segs[1]["algorithm_type"], segs[1]["algorithm_name"]) == ("AUTOMATIC", "ref-seg")
    assert segs[1]["algorithm_version"] == "2.1"


def test_overlapping_segments_become_one_channel_each(study):
    root, sources = study
    masks = _masks()
    masks[2, 6:8, 0:2, 0] = True  # segment 1 now overlaps segment 3
    _write_seg(sources, masks, "BINARY", root / "seg.dcm", 3)
    seg = _seg_entry(root)[1].load()
    assert seg.meta["segments_overlap"] and seg.meta["segment_values"] == "channels"
    assert seg.meta["channel_segments"] == [1, 2, 3] and seg.n_channels == 3
    np.testing.assert_array_equal(np.asarray(seg.array).astype(bool), _ijk(masks))


def test_fractional_seg_gives_fractions_per_segment(study):
    root, sources = study
    rng = np.random.default_rng(0)
    frac = np.zeros((N, ROWS, COLS, 2), np.float32)
    frac[1:4, 2:6, 2:8, 0] = rng.integers(1, 201, size=(3, 4, 6)) / 200.0
    frac[4, 0:3, 0:3, 1] = 1.0
    _write_seg(sources, frac, "FRACTIONAL", root / "seg.dcm", 2)
    seg = _seg_entry(root)[1].load()
    arr = np.asarray(seg.array)
    assert seg.meta["segmentation_type"] == "FRACTIONAL" and arr.shape == (COLS, ROWS, N, 2)
    assert arr.max() <= 1.0  # not 0-255 stored values
    np.testing.assert_allclose(arr, _ijk(frac), atol=1e-6)


def test_labelmap_seg_reads_as_labels(study):
    root, sources = study
    masks = _masks()
    _write_seg(sources, masks, "LABELMAP", root / "seg.dcm", 3)
    seg = _seg_entry(root)[1].load()
    labels = np.argmax(np.concatenate([~masks.any(-1, keepdims=True), masks], -1), -1)
    assert seg.meta["segmentation_type"] == "LABELMAP"
    np.testing.assert_array_equal(np.asarray(seg.array), _ijk(labels))


def test_seg_of_an_enhanced_multiframe_source_lies_on_its_frames(study):
    root, sources = study
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        sources,
        series_instance_uid=generate_uid(),
        series_number=3,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    (root / "enhanced").mkdir()
    enhanced.save_as(root / "enhanced" / "ct.dcm")
    enhanced = pydicom.dcmread(root / "enhanced" / "ct.dcm")
    frame_z = [
        float(f.PlanePositionSequence[0].ImagePositionPatient[2])
        for f in enhanced.PerFrameFunctionalGroupsSequence
    ]
    masks = _masks()  # in position order; the SEG's frames follow the enhanced frames
    _write_seg([enhanced], masks[[round(z / 2.5) for z in frame_z]], "BINARY", root / "s.dcm", 3)
    study = read_study(root)
    seg = study.select(modality="SEG")
    volume = study.select(uid=enhanced.SeriesInstanceUID).load()
    img = seg.load()
    assert seg.dicom.source_series.series_instance_uid == enhanced.SeriesInstanceUID
    np.testing.assert_allclose(img.affine, volume.affine)
    labels = np.argmax(np.concatenate([~masks.any(-1, keepdims=True), masks], -1), -1)
    np.testing.assert_array_equal(np.asarray(img.array), _ijk(labels))


def test_seg_without_its_source_is_read_on_its_own_grid_and_says_so(study, tmp_path):
    root, sources = study
    masks = _masks()
    path = _write_seg(sources, masks, "BINARY", tmp_path / "alone.dcm", 3)
    seg = read_image(path)
    assert any("source series is not among" in p for p in seg.meta["problems"])
    arr = np.asarray(seg.array)
    for n in (1, 2, 3):  # every voxel of every segment, each where the frame says
        assert (arr == n).sum() == masks[..., n - 1].sum()
        world = (seg.affine @ np.c_[np.argwhere(arr == n), np.ones((arr == n).sum())].T)[:3]
        src = np.argwhere(_ijk(masks[..., n - 1]))
        ct_affine = read_image(root / "ct").affine
        expected = (ct_affine @ np.c_[src, np.ones(len(src))].T)[:3]
        np.testing.assert_allclose(
            np.unique(world.T.round(3), axis=0), np.unique(expected.T.round(3), axis=0)
        )


def test_medsight_written_seg_still_reads_right(study):
    from medsight.core.image import Image
    from medsight.models.spec import LabelSpec
    from medsight.reporting.dicom_seg import build_segmentation

    root, _ = study
    ct = read_image(root / "ct")
    labels = np.zeros(ct.shape, np.uint8)
    labels[2:5, 1:4, 1:3] = 1
    labels[6:9, 5:7, 4] = 2
    mask = Image(labels, ct.affine)
    specs = [LabelSpec(index=1, name="lesion"), LabelSpec(index=2, name="liver")]
    seg = build_segmentation(mask, ct, specs, algorithm_name="m", algorithm_version="1")
    seg.save_as(root / "own-seg.dcm")
    img = _seg_entry(root)[1].load()
    by_label = {s["label"]: s["number"] for s in img.meta["segments"]}
    arr = np.asarray(img.array)
    np.testing.assert_array_equal(arr == by_label["lesion"], labels == 1)
    np.testing.assert_array_equal(arr == by_label["liver"], labels == 2)


def test_info_lists_the_segments(study, capsys, monkeypatch):
    from medsight.cli.app import main

    root, sources = study
    _write_seg(sources, _masks(), "BINARY", root / "seg.dcm", 3)
    assert main(["info", str(root), "--json"]) == 0
    seg = next(s for s in json.loads(capsys.readouterr().out)["series"] if s["modality"] == "SEG")
    assert [s["label"] for s in seg["segments"]] == ["organ 1", "organ 2", "organ 3"]
    assert seg["shape"] == [COLS, ROWS, N] and seg["segment_values"] == "labels"
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["info", str(root)]) == 0
    table = capsys.readouterr().out
    assert "Kidney (SCT 64033007)" in table and "ref-seg" in table


@pytest.mark.parametrize("name", ["liver_1frame.dcm", "liver_expb_1frame.dcm"])
def test_single_frame_seg_takes_its_geometry_from_the_functional_groups(pydicom_file, name):
    """pydicom's liver SEGs (little and big endian): 0.8105 mm and the origin, not 1 mm."""
    img = read_image(pydicom_file(name))
    assert img.spacing[:2] == pytest.approx((0.8105, 0.8105), abs=1e-4)
    assert img.origin == pytest.approx((-235.2, -226.8, -128.69), abs=1e-2)
    assert img.meta["segments"][0]["label"] == "Liver"
    assert not img.meta["slice_spacing_known"]
    assert any("slice spacing is unknown" in p for p in img.meta["problems"])
    assert int((np.asarray(img.array) == 1).sum()) == 36233
    ds = pydicom.dcmread(pydicom_file(name))
    np.testing.assert_array_equal(np.asarray(img.array)[:, :, 0], ds.pixel_array.T)


def _labels(masks: np.ndarray) -> np.ndarray:
    """(slice, row, column) segment numbers of non-overlapping masks (0 = background)."""
    return np.argmax(np.concatenate([~masks.any(-1, keepdims=True), masks], -1), -1)


@pytest.mark.parametrize(
    ("kind", "options", "label_input"),
    [
        ("BINARY", {"omit_empty_frames": True}, False),  # empty frames omitted (sparse)
        ("BINARY", {"omit_empty_frames": False}, False),  # dense: every frame stored
        ("BINARY", {"omit_empty_frames": True}, True),  # several segments per frame (labels in)
        ("LABELMAP", {"omit_empty_frames": False}, False),
        ("LABELMAP", {"omit_empty_frames": True}, True),
        ("FRACTIONAL", {"omit_empty_frames": False}, False),
    ],
    ids=[
        "binary-sparse",
        "binary-dense",
        "binary-labels",
        "labelmap-dense",
        "labelmap-sparse",
        "fractional-dense",
    ],
)
def test_every_highdicom_form_round_trips_exact_voxels_per_segment(
    study, kind, options, label_input
):
    root, sources = study
    masks = _masks()
    masks[..., 1] = False  # segment 2 is empty everywhere: listed, no voxels
    pixels = _labels(masks).astype(np.uint8) if label_input else masks
    if kind == "FRACTIONAL":
        pixels = masks.astype(np.float32)
    _write_seg(sources, pixels, kind, root / "seg.dcm", 3, **options)
    seg = _seg_entry(root)[1].load()
    arr = np.asarray(seg.array)
    listed = [(s["number"], s["label"]) for s in seg.meta["segments"]]
    # highdicom writes a LABELMAP's background as segment 0; the reader lists what is there
    background = [(0, "Background")] if kind == "LABELMAP" else []
    assert listed == [*background, (1, "organ 1"), (2, "organ 2"), (3, "organ 3")]
    if seg.meta["segment_values"] == "labels":
        for n in (1, 2, 3):
            np.testing.assert_array_equal(arr == n, _ijk(masks[..., n - 1]), err_msg=f"seg {n}")
    else:
        assert seg.meta["channel_segments"] == [1, 2, 3]
        for n in (1, 2, 3):
            np.testing.assert_array_equal(arr[..., n - 1] > 0, _ijk(masks[..., n - 1]))


def test_seg_of_part_of_the_series_is_empty_on_the_slices_it_does_not_cover(study):
    root, sources = study
    masks = _masks()
    order = np.argsort([float(s.ImagePositionPatient[2]) for s in sources])
    part = [sources[i] for i in order[1:4]]  # slices 1-3 in position order
    _write_seg(part, masks[1:4], "BINARY", root / "seg.dcm", 3, omit_empty_frames=False)
    seg = _seg_entry(root)[1].load()
    want = np.zeros_like(masks)
    want[1:4] = masks[1:4]
    expected = _ijk(_labels(want))
    assert seg.shape == (COLS, ROWS, N)
    np.testing.assert_array_equal(np.asarray(seg.array), expected)
