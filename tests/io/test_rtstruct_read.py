"""Reading RT Structure Sets: contours rasterised on the referenced series, exact voxels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medsight.core.errors import InvalidInputError
from medsight.io import read_image, read_study

N, ROWS, COLS = 4, 10, 12
RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"


def _meta(ds: Dataset, sop_class: str) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def _ct_series(folder: Path, *, angle_deg: float = 0.0) -> tuple[list[Dataset], np.ndarray]:
    """A small CT series (optionally rotated about the patient's z axis) and its affine."""
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    a = np.radians(angle_deg)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([-np.sin(a), np.cos(a), 0.0])
    normal = np.cross(row, col)
    origin = np.array([-20.0, 15.0, 40.0])
    col_spacing, row_spacing, gap = 1.0, 0.5, 2.0  # mm between columns, rows, slices
    out = []
    for k in range(N):
        ds = Dataset()
        _meta(ds, CTImageStorage)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName, ds.Modality = "P1", "T^T", "CT"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [float(v) for v in origin + normal * gap * k]
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.PixelSpacing = [row_spacing, col_spacing]
        ds.Rows, ds.Columns, ds.SamplesPerPixel = ROWS, COLS, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.PixelData = np.full((ROWS, COLS), k, dtype=np.int16).tobytes()
        path = folder / f"ct{N - k}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(pydicom.dcmread(path))
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1] = row * col_spacing, col * row_spacing
    affine[:3, 2], affine[:3, 3] = normal * gap, origin
    return out, affine


def _square(i0: float, i1: float, j0: float, j1: float, k: float) -> np.ndarray:
    """Corners of a rectangle in index space (i = column, j = row, k = slice)."""
    return np.array([[i0, j0, k], [i1, j0, k], [i1, j1, k], [i0, j1, k]], dtype=float)


def _to_patient(affine: np.ndarray, ijk: np.ndarray) -> list[float]:
    xyz = (affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
    return [round(float(v), 6) for v in xyz.ravel()]


def _rtstruct(
    sources: list[Dataset],
    rois: dict[int, tuple[str, str, list[tuple[str, list[float]]]]],
    path: Path,
    *,
    reference_series: bool = True,
) -> Path:
    """Write an RTSTRUCT: ``rois[number] = (name, interpreted type, [(geometry, points)])``."""
    ds = Dataset()
    _meta(ds, RT_STRUCT)
    first = sources[0]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = first.PatientID, first.PatientName, "RTSTRUCT"
    ds.SeriesNumber, ds.InstanceNumber = 9, 1
    ds.StructureSetLabel, ds.SeriesDescription = "plan", "structures"
    frame = Dataset()
    frame.FrameOfReferenceUID = first.FrameOfReferenceUID
    if reference_series:
        ser = Dataset()
        ser.SeriesInstanceUID = first.SeriesInstanceUID
        images = []
        for s in sources:
            img = Dataset()
            img.ReferencedSOPClassUID, img.ReferencedSOPInstanceUID = (
                CTImageStorage,
                s.SOPInstanceUID,
            )
            images.append(img)
        ser.ContourImageSequence = Sequence(images)
        st = Dataset()
        st.ReferencedSOPInstanceUID = first.StudyInstanceUID
        st.RTReferencedSeriesSequence = Sequence([ser])
        frame.RTReferencedStudySequence = Sequence([st])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    roi_items, contour_items, obs_items = [], [], []
    for number, (name, kind, contours) in rois.items():
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
        roi_items.append(roi)
        con = Dataset()
        con.ReferencedROINumber, con.ROIDisplayColor = number, [255, 10 * number, 0]
        items = []
        for geometry, points in contours:
            c = Dataset()
            c.ContourGeometricType, c.NumberOfContourPoints = geometry, len(points) // 3
            c.ContourData = points
            items.append(c)
        con.ContourSequence = Sequence(items)
        contour_items.append(con)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType, obs.ROIInterpreter = kind, ""
        obs_items.append(obs)
    ds.StructureSetROISequence = Sequence(roi_items)
    ds.ROIContourSequence = Sequence(contour_items)
    ds.RTROIObservationsSequence = Sequence(obs_items)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def axial(tmp_path):
    sources, affine = _ct_series(tmp_path / "study" / "ct")
    return tmp_path / "study", sources, affine


def _standard_rois(affine: np.ndarray) -> dict[int, tuple[str, str, list[tuple[str, list[float]]]]]:
    return {
        1: (
            "GTV",
            "GTV",
            [
                ("CLOSED_PLANAR", _to_patient(affine, _square(1.5, 4.5, 2.5, 5.5, 1))),
                ("CLOSED_PLANAR", _to_patient(affine, _square(1.5, 4.5, 2.5, 5.5, 2))),
            ],
        ),
        4: (
            "Ring",
            "ORGAN",
            [  # an outer and an inner contour on one slice: a ring with a hole
                ("CLOSED_PLANAR", _to_patient(affine, _square(5.5, 11.5, 0.5, 8.5, 2))),
                ("CLOSED_PLANAR", _to_patient(affine, _square(7.5, 9.5, 2.5, 6.5, 2))),
            ],
        ),
    }


def _expected(shape: tuple[int, int, int]) -> np.ndarray:
    want = np.zeros(shape, np.uint8)
    want[2:5, 3:6, 1:3] = 1
    want[6:12, 1:9, 2] = 4
    want[8:10, 3:7, 2] = 0
    return want


def test_squares_and_a_ring_with_a_hole_give_exact_label_voxels(axial):
    root, sources, affine = axial
    _rtstruct(sources, _standard_rois(affine), root / "rs.dcm")
    study = read_study(root)
    assert study.bad_files == []
    img = study.select(modality="RTSTRUCT").load()
    ct = study.select(modality="CT").load()
    assert img.shape == ct.shape == (COLS, ROWS, N)
    np.testing.assert_allclose(img.affine, ct.affine)
    np.testing.assert_array_equal(img.array, _expected(img.shape))
    assert img.meta["roi_values"] == "labels" and not img.meta["rois_overlap"]
    assert img.meta["referenced_series_instance_uid"] == sources[0].SeriesInstanceUID
    rois = {r["number"]: r for r in img.meta["rois"]}
    assert rois[1]["name"] == "GTV" and rois[4]["interpreted_type"] == "ORGAN"
    assert rois[4]["colour"] == [255, 40, 0] and rois[1]["contours"] == 2
    assert img.meta["problems"] == ()


def test_overlapping_rois_become_one_channel_each(axial):
    root, sources, affine = axial
    rois = _standard_rois(affine)
    rois[2] = (
        "Body",
        "EXTERNAL",
        [("CLOSED_PLANAR", _to_patient(affine, _square(-0.5, 11.5, -0.5, 9.5, 1)))],
    )
    _rtstruct(sources, rois, root / "rs.dcm")
    img = read_study(root).select(modality="RTSTRUCT").load()
    assert img.meta["rois_overlap"] and img.meta["roi_values"] == "channels"
    assert img.meta["channel_rois"] == [1, 4, 2]
    assert img.array.shape == (COLS, ROWS, N, 3)
    want = _expected((COLS, ROWS, N))
    np.testing.assert_array_equal(img.array[..., 0], want == 1)
    np.testing.assert_array_equal(img.array[..., 1], want == 4)
    body = np.zeros((COLS, ROWS, N), bool)
    body[:, :, 1] = True
    np.testing.assert_array_equal(img.array[..., 2], body)


def test_oblique_series_contours_follow_the_affine(tmp_path):
    sources, affine = _ct_series(tmp_path / "study" / "ct", angle_deg=30.0)
    _rtstruct(sources, _standard_rois(affine), tmp_path / "study" / "rs.dcm")
    img = read_image(tmp_path / "study", modality="RTSTRUCT")
    np.testing.assert_allclose(img.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(img.array, _expected(img.shape))


def test_off_plane_point_and_outside_contours_are_reported_not_drawn(axial):
    root, sources, affine = axial
    rois = _standard_rois(affine)
    rois[5] = (
        "Between",
        "AVOIDANCE",
        [
            ("CLOSED_PLANAR", _to_patient(affine, _square(1.5, 3.5, 1.5, 3.5, 1.5))),
            ("CLOSED_PLANAR", _to_patient(affine, _square(1.5, 3.5, 1.5, 3.5, 7))),
        ],
    )
    rois[6] = ("Iso", "ISOCENTER", [("POINT", _to_patient(affine, np.array([[3.0, 3.0, 1.0]])))])
    _rtstruct(sources, rois, root / "rs.dcm")
    img = read_study(root).select(modality="RTSTRUCT").load()
    np.testing.assert_array_equal(img.array, _expected(img.shape))
    text = " | ".join(img.meta["problems"])
    assert "ROI 5 (Between): 1 contour(s) not on a slice plane" in text
    assert "ROI 5 (Between): 1 contour(s) outside the series' grid" in text
    assert "ROI 6 (Iso): 1 POINT contour(s)" in text


def test_missing_referenced_series_names_the_uid_needed(axial, tmp_path):
    _, sources, affine = axial
    alone = tmp_path / "alone"
    alone.mkdir()
    _rtstruct(sources, _standard_rois(affine), alone / "rs.dcm")
    with pytest.raises(InvalidInputError, match=sources[0].SeriesInstanceUID):
        read_image(alone / "rs.dcm")


def test_frame_of_reference_links_a_structure_set_that_names_no_series(axial):
    root, sources, affine = axial
    _rtstruct(sources, _standard_rois(affine), root / "rs.dcm", reference_series=False)
    img = read_study(root).select(modality="RTSTRUCT").load()
    np.testing.assert_array_equal(img.array, _expected(img.shape))


def test_two_series_in_the_frame_of_reference_and_no_series_named_is_refused(axial, tmp_path):
    root, sources, affine = axial
    other = [pydicom.dcmread(f) for f in sorted((root / "ct").iterdir())]
    (root / "ct2").mkdir()
    second = generate_uid()
    for n, ds in enumerate(other):  # a second series on the same frame of reference
        ds.SeriesInstanceUID, ds.SOPInstanceUID = second, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(root / "ct2" / f"{n}.dcm")
    _rtstruct(sources, _standard_rois(affine), root / "rs.dcm", reference_series=False)
    entry = read_study(root).select(modality="RTSTRUCT")
    with pytest.raises(InvalidInputError, match="2 series lie in its frame of reference"):
        entry.load()


def test_info_lists_the_rois(axial, capsys, monkeypatch):
    from medsight.cli.app import main

    root, sources, affine = axial
    _rtstruct(sources, _standard_rois(affine), root / "rs.dcm")
    assert main(["info", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rt = next(s for s in report["series"] if s["modality"] == "RTSTRUCT")
    assert [(r["number"], r["name"]) for r in rt["rois"]] == [(1, "GTV"), (4, "Ring")]
    assert rt["shape"] == [COLS, ROWS, N] and rt["roi_values"] == "labels"
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["info", str(root)]) == 0
    table = capsys.readouterr().out
    assert "ROIs of structures" in table and "Ring" in table and "ORGAN" in table


def test_pydicom_rtstruct_on_a_series_with_its_uids(pydicom_file, tmp_path):
    """A structure set from elsewhere (pydicom's): a 400 x 300 mm body outline on 3 slices."""
    import shutil

    rs = pydicom.dcmread(pydicom_file("rtstruct.dcm"), force=True)
    frame = rs.ReferencedFrameOfReferenceSequence[0]
    series_uid = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].SeriesInstanceUID
    folder = tmp_path / "study"
    folder.mkdir()
    for k, z in enumerate((-200.0, -190.0, -180.0)):
        ds = Dataset()
        _meta(ds, CTImageStorage)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = rs.StudyInstanceUID, series_uid
        ds.FrameOfReferenceUID, ds.PatientID, ds.Modality = frame.FrameOfReferenceUID, "P", "CT"
        ds.ImagePositionPatient, ds.ImageOrientationPatient = (
            [-205.0, -155.0, z],
            [1, 0, 0, 0, 1, 0],
        )
        ds.PixelSpacing, ds.Rows, ds.Columns, ds.SamplesPerPixel = [10.0, 10.0], 32, 42, 1
        ds.PhotometricInterpretation, ds.InstanceNumber = "MONOCHROME2", k + 1
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.zeros((32, 42), np.uint16).tobytes()
        ds.save_as(folder / f"ct{k}.dcm", enforce_file_format=True)
    shutil.copy(pydicom_file("rtstruct.dcm"), folder / "rs.dcm")
    study = read_study(folder)
    assert study.bad_files == []
    img = study.select(modality="RTSTRUCT").load()
    want = np.zeros((42, 32, 3), np.uint8)
    want[1:41, 1:31, :] = 1  # voxel centres -195 .. 195 mm and -145 .. 145 mm
    np.testing.assert_array_equal(img.array, want)
    types = [r["interpreted_type"] for r in img.meta["rois"]]
    assert types == ["EXTERNAL", "ISOCENTER", "ISOCENTER"]
    assert sum("POINT contour(s)" in p for p in img.meta["problems"]) == 2
