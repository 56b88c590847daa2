"""A segmentation finding on one image: its SR also outlines the segment as SCOORD POLYLINEs.

OHIF (and other TID 1500 readers) draw and list only measurement groups with spatial
coordinates; the outline groups share the finding's Tracking Unique Identifier.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np

from medsight.core import Finding, Measurement
from medsight.core.codes import AREA, HIPPOCAMPUS, SQUARE_MILLIMETER
from medsight.io import read_image
from medsight.models.spec import LabelSpec
from medsight.reporting.dicom_seg import build_segmentation
from medsight.reporting.dicom_sr import build_sr
from medsight.reporting.sources import source_datasets
from medsight.reporting.sr_regions import segment_outlines
from medsight.reporting.validate import dciodvfy

LABELS = [LabelSpec(index=0, name="background"), LabelSpec(index=1, name="lesion")]


def _finding() -> Finding:
    return Finding(
        HIPPOCAMPUS,
        "seg",
        "1.0",
        segment_number=1,
        measurements=(Measurement(AREA, 12.5, SQUARE_MILLIMETER),),
    )


def test_single_image_segment_gets_one_outline_per_part(pydicom_file, tmp_path, debian_tool):
    debian_tool("dciodvfy")
    img = read_image(pydicom_file("MR_small.dcm"))  # one 64 x 64 slice
    mask = np.zeros(img.shape, np.uint8)
    mask[10:20, 30:40] = 1  # columns 10-19, rows 30-39: the larger part
    mask[50:53, 5:8] = 1  # columns 50-52, rows 5-7
    seg = build_segmentation(
        img.with_array(mask), img, LABELS, algorithm_name="t", algorithm_version="1"
    )
    sr = build_sr([_finding()], source_datasets(img), segmentations={"seg": seg})
    sr.save_as(tmp_path / "sr.dcm")
    assert dciodvfy(tmp_path / "sr.dcm")[0] == []
    back = hd.sr.srread(tmp_path / "sr.dcm")
    (volumetric,) = back.content.get_volumetric_roi_measurement_groups()
    planar = back.content.get_planar_roi_measurement_groups()
    assert len(planar) == 2
    uid = volumetric.tracking_uid
    assert [g.tracking_uid for g in planar] == [uid, uid]
    assert [m.name.meaning for m in volumetric.get_measurements()] == ["Area"]
    regions = [g.roi for g in planar]
    assert {r.graphic_type.value for r in regions} == {"POLYLINE"}
    sop = img.source.sop_instance_uids[0]
    assert all(
        r.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sop
        for r in regions
    )
    big = regions[0].value  # (column, row) pixel coordinates, closed
    assert np.array_equal(big[0], big[-1])
    assert big.min(axis=0).tolist() == [10.0, 30.0] and big.max(axis=0).tolist() == [20.0, 40.0]
    small = regions[1].value
    assert small.min(axis=0).tolist() == [50.0, 5.0] and small.max(axis=0).tolist() == [53.0, 8.0]


def test_a_volume_segment_gets_no_single_slice_outline(shared_data, tmp_path):
    img = read_image(shared_data / "dicom/brain_mr_study1", series="HippoCrop")
    a = np.asarray(img.array)
    seg = build_segmentation(
        img.with_array((a > np.percentile(a, 90)).astype(np.uint8)),
        img,
        LABELS,
        algorithm_name="t",
        algorithm_version="1",
    )
    build_sr([_finding()], source_datasets(img), segmentations={"seg": seg}).save_as(
        tmp_path / "sr.dcm"
    )
    back = hd.sr.srread(tmp_path / "sr.dcm")
    assert len(back.content.get_volumetric_roi_measurement_groups()) == 1
    assert back.content.get_planar_roi_measurement_groups() == []


def test_outline_follows_the_pixel_edges_and_fills_holes():
    ring = np.ones((5, 5), bool)
    ring[2, 2] = False  # a hole: one outline, around the outside
    (line,) = segment_outlines(ring)
    assert line.min(axis=0).tolist() == [0.0, 0.0] and line.max(axis=0).tolist() == [5.0, 5.0]
    assert segment_outlines(np.zeros((4, 4), bool)) == []
