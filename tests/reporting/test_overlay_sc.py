"""Overlay pictures and their Secondary Capture: orientation, contours, validity."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core import Image, InvalidInputError
from medsight.io import read_image
from medsight.reporting.overlay import render_overlay
from medsight.reporting.secondary_capture import build_secondary_capture
from medsight.reporting.sources import source_datasets
from medsight.reporting.validate import dciodvfy


def test_overlay_orientation_contours_and_heatmap():
    arr = np.zeros((40, 30, 3), np.float32)
    arr[5, 20, :] = 100.0  # a bright voxel at column i=5, row j=20
    img = Image(arr)
    mask = np.zeros(arr.shape, np.uint8)
    mask[10:20, 5:15, 1] = 1
    heat = np.zeros(arr.shape, np.float32)
    heat[30:35, 2:6, 1] = 1.0
    pic = render_overlay(
        img,
        mask=img.with_array(mask),
        heatmap=img.with_array(heat),
        colours={1: (255, 0, 0)},
        slice_index=1,
    )
    assert pic.shape == (30, 40, 3)  # rows = j, columns = i
    assert tuple(pic[5, 10]) == (255, 0, 0)  # contour drawn on the mask edge (j=5, i=10)
    assert tuple(pic[10, 15]) == (0, 0, 0)  # inside the mask: no fill
    assert pic[3, 32].sum() > 0 and pic[20, 20].sum() == 0  # heat only where it is
    bright = render_overlay(img, slice_index=0)
    assert bright[20, 5].max() == 255 and bright[5, 20].max() == 0


def test_overlay_refuses_off_grid_mask():
    with pytest.raises(InvalidInputError, match="differs"):
        render_overlay(Image(np.zeros((4, 4))), mask=Image(np.zeros((4, 5))))


def test_secondary_capture_is_valid(shared_data, tmp_path, debian_tool):
    debian_tool("dciodvfy")
    img = read_image(shared_data / "dicom/brain_mr_study1", series="HippoCrop")
    sc = build_secondary_capture(render_overlay(img), source_datasets(img)[0])
    sc.save_as(tmp_path / "sc.dcm")
    assert dciodvfy(tmp_path / "sc.dcm")[0] == []
    assert sc.StudyInstanceUID == img.source.study_instance_uid
