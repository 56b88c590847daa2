"""Overlay pictures and their Secondary Capture: orientation, readability, legends, validity."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from matplotlib import colormaps
from pydicom.data import get_testdata_file

from medsight.core import Image, InvalidInputError
from medsight.io import read_image
from medsight.reporting.overlay import HEAT_COLOURMAP, display_size, render_overlay
from medsight.reporting.secondary_capture import build_secondary_capture
from medsight.reporting.sources import source_datasets
from medsight.reporting.validate import dciodvfy, dciodvfy_errors

_LUT = (colormaps[HEAT_COLOURMAP](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.int32)


def test_overlay_orientation_and_contours_at_native_size():
    arr = np.zeros((40, 30, 3), np.float32)
    arr[5, 20, :] = 100.0  # a bright voxel at column i=5, row j=20
    img = Image(arr)
    mask = np.zeros(arr.shape, np.uint8)
    mask[10:20, 5:15, 1] = 1
    bare = {"min_size": 0, "legend": False}
    pic = render_overlay(
        img, mask=img.with_array(mask), colours={1: (255, 0, 0)}, slice_index=1, **bare
    )
    assert pic.shape == (30, 40, 3)  # rows = j, columns = i
    assert tuple(pic[5, 10]) == (255, 0, 0)  # contour drawn on the mask edge (j=5, i=10)
    assert tuple(pic[10, 15]) == (0, 0, 0)  # inside the mask: no fill
    bright = render_overlay(img, slice_index=0, **bare)
    assert bright[20, 5].max() == 255 and bright[5, 20].max() == 0


def _photo() -> tuple[Image, Image]:
    """A reddish colour photograph (like a fundus) with relevance in its upper-left quarter."""
    rng = np.random.default_rng(0)
    arr = np.zeros((64, 64, 3), np.float32)
    arr[..., 0] = 200 + rng.normal(0, 10, (64, 64))
    arr[..., 1] = 90 + rng.normal(0, 10, (64, 64))
    arr[..., 2] = 40 + rng.normal(0, 5, (64, 64))
    img = Image(arr, spatial_ndim=2)
    heat = np.zeros((64, 64), np.float32)
    heat[8:24, 8:24] = 1.0  # i, j in 8..24: rows and columns 8..24 of the picture
    return img, img.with_array(heat)


def test_heatmap_is_visible_on_a_colour_photograph():
    img, heat = _photo()
    pic = render_overlay(img, heatmap=heat, min_size=0, legend=False)
    assert pic.shape == (64, 128, 3)  # the photograph, then the heatmap over a grey copy
    photo, overlay = pic[:, :64].astype(int), pic[:, 64:].astype(int)
    hot, cold = overlay[10:22, 10:22].mean(axis=(0, 1)), overlay[40:60, 40:60].mean(axis=(0, 1))
    assert np.abs(hot - photo[10:22, 10:22].mean(axis=(0, 1))).max() > 60  # visibly changed
    assert np.abs(hot - cold).sum() > 150  # relevant region stands out from the rest
    assert np.abs(photo - img.array.clip(0, 255).swapaxes(0, 1)).mean() < 40  # left untouched


def _longest_colourmap_run(column: np.ndarray) -> tuple[int, int, int]:
    """``(length, first, last)`` colour-map index of the widest-spanning vertical run of
    pixels on the colour map, going from high down to low."""
    dist = np.abs(column[:, None, :].astype(np.int32) - _LUT[None]).max(axis=-1)
    index, ok = dist.argmin(axis=1), dist.min(axis=1) <= 3
    best, start = (0, 0, 0), None
    for y in range(len(column) + 1):
        inside = y < len(column) and ok[y] and (start is None or index[y] <= index[y - 1])
        if inside and start is None:
            start = y
        elif not inside and start is not None:
            run = (y - start, int(index[start]), int(index[y - 1]))
            best = max(best, run, key=lambda r: r[1] - r[2])
            start = y if y < len(column) and ok[y] else None
    return best


def test_heatmap_has_a_colour_bar_spanning_the_colour_map():
    img, heat = _photo()
    pic = render_overlay(img, heatmap=heat)
    rows, cols = display_size((64, 64))
    assert pic.shape[1] > 2 * cols and pic.shape[0] >= rows  # room for the bar and titles
    side = pic[:, 2 * cols :]
    runs = [_longest_colourmap_run(side[:, x]) for x in range(side.shape[1])]
    length, top, bottom = max(runs)
    assert length >= 100 and top >= 250 and bottom <= 5  # high at the top down to low


def test_small_crops_are_enlarged_with_thin_contours_and_a_legend():
    arr = np.random.default_rng(1).normal(100, 20, (35, 51, 9)).astype(np.float32)
    img = Image(arr, spacing=(1.0, 1.0, 1.0))
    mask = np.zeros(arr.shape, np.uint8)
    mask[10:20, 15:30, 4] = 1
    mask[20:28, 15:30, 4] = 2
    colours = {1: (255, 0, 0), 2: (0, 128, 255)}
    pic = render_overlay(
        img,
        mask=img.with_array(mask),
        colours=colours,
        names={1: "anterior", 2: "posterior"},
    )
    rows, cols = display_size((51, 35))
    assert min(rows, cols) >= 384 and (rows, cols) == (560, 384)
    assert pic.shape[0] >= rows and pic.shape[1] > cols  # titles above, legend beside
    image_part = pic[pic.shape[0] - rows :, :cols]
    red = np.all(image_part == (255, 0, 0), axis=-1)
    assert red.any()
    middle_row = red[red.any(axis=1).nonzero()[0].mean().astype(int)]
    assert 2 <= middle_row.sum() <= 8  # a thin contour: two crossings of a few pixels
    side = pic[:, cols:]
    for colour in colours.values():  # a swatch of each label's colour in the legend
        assert np.all(side == colour, axis=-1).sum() >= 100
    # default names and colours still work (older callers pass neither)
    assert render_overlay(img, mask=img.with_array(mask)).shape[1] > cols


def test_anisotropic_spacing_keeps_the_physical_aspect():
    img = Image(np.zeros((40, 40)), spacing=(1.0, 2.0))  # rows (j) are 2 mm apart
    pic = render_overlay(img, legend=False)
    assert pic.shape[:2] == (768, 384)


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


_SOURCES = ["examples_rgb_color.dcm", "examples_jpeg2k.dcm", "CT_small.dcm", "MR_small.dcm"]
_EXTRA = {
    "plain": {},
    "laterality": {"Laterality": "R"},
    "paired-body-part": {"Laterality": "L", "BodyPartExamined": "BREAST"},
    "image-laterality": {"ImageLaterality": "R", "BodyPartExamined": "EYE"},
    "paired-unknown-side": {"BodyPartExamined": "EYE"},
    "unpaired-body-part": {"BodyPartExamined": "CHEST"},
    "unpaired-with-side": {"Laterality": "R", "BodyPartExamined": "BRAIN"},  # not conformant
}


@pytest.mark.parametrize("extra", list(_EXTRA), ids=list(_EXTRA))
@pytest.mark.parametrize("name", _SOURCES)
def test_secondary_capture_carries_laterality_and_is_dciodvfy_clean(
    name, extra, tmp_path, debian_tool
):
    debian_tool("dciodvfy")
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} ships with pydicom"
    ref = pydicom.dcmread(path, stop_before_pixels=True)
    for keyword, value in _EXTRA[extra].items():
        setattr(ref, keyword, value)
    picture = np.zeros((48, 64, 3), np.uint8)
    sc = build_secondary_capture(picture, ref)
    sc.save_as(tmp_path / "sc.dcm")
    assert dciodvfy_errors(tmp_path / "sc.dcm") == []
    side = _EXTRA[extra].get("Laterality") or _EXTRA[extra].get("ImageLaterality") or ""
    if extra.startswith("unpaired"):  # Laterality only for paired body parts
        assert "Laterality" not in sc
    else:
        assert sc.Laterality == side
    assert sc.get("BodyPartExamined") == ref.get("BodyPartExamined")
    if "ImageOrientationPatient" in ref:  # axial: rows run to the patient's left, columns back
        assert list(sc.PatientOrientation) == ["L", "P"]
    else:
        assert "PatientOrientation" in sc and not sc.PatientOrientation  # unknown: empty
