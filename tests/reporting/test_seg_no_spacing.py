"""A SEG on an image without pixel spacing or patient geometry: valid, and no invented unit.

The source is pydicom's MR_small.dcm turned into a Secondary Capture without Pixel Spacing,
orientation, position or Frame of Reference (as a PNG converted to DICOM).  The SEG states no
spacing, orientation or position (no Pixel Measures, Plane Orientation or Plane Position
group), dciodvfy accepts it, highdicom reads it back, and the OHIF route knows not to offer it
(:func:`medsight.service.viewer.ohif.unplaceable_segmentations`).
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medsight.io import read_image
from medsight.models.spec import LabelSpec
from medsight.reporting.dicom_seg import build_segmentation
from medsight.reporting.validate import dciodvfy
from medsight.service.viewer.ohif import unplaceable_segmentations

GEOMETRY = (
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "SliceThickness",
    "SpacingBetweenSlices",
    "SliceLocation",
)
LABELS = [LabelSpec(index=1, name="lesion", color=(255, 0, 0))]


def _seg(source, tmp_path):
    img = read_image(source)
    pixels = np.asarray(img.array)
    mask = (pixels > np.percentile(pixels, 80)).astype(np.uint8)
    seg = build_segmentation(
        img.with_array(mask), img, LABELS, algorithm_name="t", algorithm_version="1"
    )
    seg.save_as(tmp_path / "seg.dcm")
    return img, mask, pydicom.dcmread(tmp_path / "seg.dcm")


@pytest.fixture
def photo(tmp_path, pydicom_file):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    for keyword in GEOMETRY:
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.Modality = "OT"
    ds.save_as(tmp_path / "photo.dcm")
    return tmp_path / "photo.dcm"


def test_seg_without_spacing_states_no_geometry_and_is_valid(photo, tmp_path, debian_tool):
    debian_tool("dciodvfy")
    img, mask, seg = _seg(photo, tmp_path)
    assert "FrameOfReferenceUID" not in seg
    (shared,) = seg.SharedFunctionalGroupsSequence
    for group in [shared, *seg.PerFrameFunctionalGroupsSequence]:
        assert "PixelMeasuresSequence" not in group  # no mm spacing or thickness invented
        assert "PlaneOrientationSequence" not in group
        assert "PlanePositionSequence" not in group
    assert "PixelSpacing" not in seg
    errors, _ = dciodvfy(tmp_path / "seg.dcm")
    assert errors == []
    back = hd.seg.segread(tmp_path / "seg.dcm")
    arr = back.get_pixels_by_source_instance(
        source_sop_instance_uids=list(img.source.sop_instance_uids), combine_segments=True
    )
    np.testing.assert_array_equal(arr[0], mask.T)
    assert len(unplaceable_segmentations([seg])) == 1  # OHIF is not offered it


def test_seg_with_spacing_keeps_the_source_spacing(pydicom_file, tmp_path):
    source = pydicom_file("MR_small.dcm")
    _, _, seg = _seg(source, tmp_path)
    (measures,) = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
    spacing = [float(v) for v in pydicom.dcmread(source).PixelSpacing]
    assert [float(v) for v in measures.PixelSpacing] == spacing
    assert unplaceable_segmentations([seg]) == []
