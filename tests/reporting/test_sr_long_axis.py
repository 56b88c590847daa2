"""A segmentation finding's long axis in its SR: the longest in-plane diameter as a Length.

The value is checked against the exact diagonal of a rectangle with anisotropic pixels, and
the SR against dciodvfy and the layout OHIF's measurement panel reads (a NUM INFERRED FROM a
two-point POLYLINE, the cornerstone Length tracking identifier, its own Tracking UID).
"""

from __future__ import annotations

import math

import highdicom as hd
import numpy as np
import pytest

from medsight.core import Finding, Measurement
from medsight.core.codes import AREA, HIPPOCAMPUS, SQUARE_MILLIMETER
from medsight.io import read_image
from medsight.models.spec import LabelSpec
from medsight.reporting.dicom_seg import build_segmentation
from medsight.reporting.dicom_sr import build_sr
from medsight.reporting.sources import source_datasets
from medsight.reporting.sr_regions import CORNERSTONE_LENGTH, feret_diameter
from medsight.reporting.validate import dciodvfy

LABELS = [LabelSpec(index=0, name="background"), LabelSpec(index=1, name="lesion")]


def test_feret_diameter_of_a_rectangle_with_anisotropic_pixels_is_its_diagonal():
    mask = np.zeros((8, 14), bool)
    mask[2:6, 3:13] = True  # 4 rows x 10 columns
    length, ends = feret_diameter(mask, (1.5, 0.7))  # row spacing 1.5 mm, column 0.7 mm
    assert length == pytest.approx(math.hypot(10 * 0.7, 4 * 1.5), abs=1e-9)
    # opposite corners of the rectangle, in (column, row) pixel coordinates
    assert sorted(map(tuple, ends.tolist())) in (
        [(3.0, 2.0), (13.0, 6.0)],
        [(3.0, 6.0), (13.0, 2.0)],
    )
    assert feret_diameter(np.zeros((3, 3), bool), (1.0, 1.0)) is None


def test_feret_diameter_follows_the_spacing_not_the_pixel_count():
    mask = np.zeros((12, 12), bool)
    mask[1:11, 5:7] = True  # 10 rows x 2 columns: the long axis runs down the rows
    length, _ = feret_diameter(mask, (0.2, 3.0))  # but the rows are 0.2 mm apart
    assert length == pytest.approx(math.hypot(2 * 3.0, 10 * 0.2))


def test_sr_has_the_long_axis_length_that_ohif_rehydrates(pydicom_file, tmp_path, debian_tool):
    debian_tool("dciodvfy")
    img = read_image(pydicom_file("MR_small.dcm"))  # one 64 x 64 slice
    mask = np.zeros(img.shape, np.uint8)
    mask[10:20, 30:34] = 1  # image axes (i, j) = (column, row): 10 columns x 4 rows
    mask[50:52, 5:7] = 1  # a smaller second part: not measured
    seg = build_segmentation(
        img.with_array(mask), img, LABELS, algorithm_name="t", algorithm_version="1"
    )
    finding = Finding(
        HIPPOCAMPUS,
        "seg",
        "1.0",
        segment_number=1,
        measurements=(Measurement(AREA, 12.5, SQUARE_MILLIMETER),),
    )
    source = source_datasets(img)
    sr = build_sr([finding], source, segmentations={"seg": seg})
    sr.save_as(tmp_path / "sr.dcm")
    assert dciodvfy(tmp_path / "sr.dcm")[0] == []
    back = hd.sr.srread(tmp_path / "sr.dcm")
    (group,) = [g for g in back.content.get_image_measurement_groups() if g.tracking_identifier]
    assert group.tracking_identifier == CORNERSTONE_LENGTH
    (volumetric,) = back.content.get_volumetric_roi_measurement_groups()
    assert group.tracking_uid != volumetric.tracking_uid  # OHIF merges groups by their UID
    (length,) = group.get_measurements()
    assert (length.name.value, length.name.scheme_designator) == ("410668003", "SCT")
    assert length.unit.value == "mm"
    row_mm, col_mm = (float(v) for v in source[0].PixelSpacing)
    assert length.value == pytest.approx(math.hypot(10 * col_mm, 4 * row_mm), abs=0.005)
    assert len(length[0].ContentSequence) == 1  # OHIF reads a one-item sequence only
    scoord = length[0].ContentSequence[0]  # OHIF reads the NUM's first item as its SCOORD
    assert (scoord.ValueType, scoord.RelationshipType, scoord.GraphicType) == (
        "SCOORD",
        "INFERRED FROM",
        "POLYLINE",
    )
    ends = sorted(map(tuple, np.reshape(scoord.GraphicData, (-1, 2)).tolist()))
    assert ends in ([(10.0, 30.0), (20.0, 34.0)], [(10.0, 34.0), (20.0, 30.0)])
    ref = scoord.ContentSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == img.source.sop_instance_uids[0]


def test_enhanced_frame_spacing_per_frame_else_shared_else_none():
    from pydicom.dataset import Dataset

    from medsight.reporting.sr_regions import _frame_spacing

    def measures(spacing):
        item, pm = Dataset(), Dataset()
        pm.PixelSpacing = spacing
        item.PixelMeasuresSequence = [pm]
        return item

    image = Dataset()
    image.SharedFunctionalGroupsSequence = [measures([0.5, 0.5])]
    image.PerFrameFunctionalGroupsSequence = [Dataset(), measures([0.8, 0.9])]
    assert [float(v) for v in _frame_spacing(image, 2)] == [0.8, 0.9]  # its own frame's
    assert [float(v) for v in _frame_spacing(image, 1)] == [0.5, 0.5]  # else the shared one
    assert _frame_spacing(Dataset(), 1) is None  # none at all: the long axis is withheld
