"""DICOM SEG and SR built on the real brain study: valid (dciodvfy), and they read back."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest

from medsight.core import Finding, FindingKind, Image, InvalidInputError, Measurement
from medsight.core.codes import (
    DIAMETER,
    HIPPOCAMPUS,
    MILLILITER,
    MILLIMETER,
    NEOPLASM,
    VOLUME,
)
from medsight.io import read_image
from medsight.models.spec import LabelSpec
from medsight.reporting.dicom_seg import build_segmentation
from medsight.reporting.dicom_sr import build_sr
from medsight.reporting.sources import source_datasets
from medsight.reporting.validate import dciodvfy

LABELS = [
    LabelSpec(index=0, name="background"),
    LabelSpec(index=1, name="anterior", code=HIPPOCAMPUS, color=(255, 0, 0)),
    LabelSpec(index=2, name="posterior", code=HIPPOCAMPUS, color=(0, 0, 255)),
]


def _mask(img: Image) -> Image:
    a = np.asarray(img.array)
    m = np.zeros(a.shape, np.uint8)
    m[a > np.percentile(a, 90)] = 1
    m[a > np.percentile(a, 98)] = 2
    return img.with_array(m)


@pytest.mark.parametrize("series", ["HippoCrop", "T1post"])
def test_seg_is_valid_and_reads_back_equal(shared_data, tmp_path, series, debian_tool):
    debian_tool("dciodvfy")
    img = read_image(shared_data / "dicom/brain_mr_study1", series=series)
    mask = _mask(img)
    seg = build_segmentation(mask, img, LABELS, algorithm_name="t", algorithm_version="1")
    seg.save_as(tmp_path / "seg.dcm")
    errors, _ = dciodvfy(tmp_path / "seg.dcm")
    assert errors == []
    back = hd.seg.segread(tmp_path / "seg.dcm")
    assert back.StudyInstanceUID == img.source.study_instance_uid
    arr = back.get_pixels_by_source_instance(
        source_sop_instance_uids=list(img.source.sop_instance_uids), combine_segments=True
    )
    np.testing.assert_array_equal(arr, np.transpose(mask.array, (2, 1, 0)))
    assert [s.SegmentLabel for s in back.SegmentSequence] == ["anterior", "posterior"]


def test_sr_tid1500_is_valid_and_holds_the_measurements(shared_data, tmp_path, debian_tool):
    debian_tool("dciodvfy")
    img = read_image(shared_data / "dicom/brain_mr_study1", series="HippoCrop")
    seg = build_segmentation(_mask(img), img, LABELS, algorithm_name="t", algorithm_version="1")
    seg_f = Finding(
        HIPPOCAMPUS,
        "hippo",
        "1.0",
        segment_number=1,
        site=HIPPOCAMPUS,
        measurements=(
            Measurement(VOLUME, 1.5, MILLILITER),
            Measurement(DIAMETER, 20.1, MILLIMETER),
        ),
    )
    cls_f = Finding(
        NEOPLASM, "tumour", "0.3", kind=FindingKind.CLASSIFICATION, probability=0.83, positive=True
    )
    sr = build_sr([seg_f, cls_f], source_datasets(img), segmentations={"hippo": seg})
    sr.save_as(tmp_path / "sr.dcm")
    errors, _ = dciodvfy(tmp_path / "sr.dcm")
    assert errors == []
    back = hd.sr.srread(tmp_path / "sr.dcm")
    groups = back.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 1
    values = {m.name.meaning: (m.value, m.unit.value) for m in groups[0].get_measurements()}
    assert values == {"Volume": (1.5, "mL"), "Diameter": (20.1, "mm")}
    ref = groups[0].referenced_segment
    assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
    image_groups = (
        back.content.get_observer_contexts() and back.content.get_image_measurement_groups()
    )
    # the classification finding's group; the segment's long axis (a Length) is the other
    image_groups = [g for g in image_groups if g.finding_type.meaning == NEOPLASM.meaning]
    assert len(image_groups) == 1
    evaluation = image_groups[0].get_qualitative_evaluations()[0]
    assert evaluation.value.meaning == "Present"


def test_seg_refuses_off_grid_masks_and_non_dicom_images(shared_data):
    img = read_image(shared_data / "dicom/brain_mr_study1", series="HippoCrop")
    shifted = Image(
        np.zeros(img.shape, np.uint8),
        img.affine + np.diag([0, 0, 0, 0]) + np.pad(np.ones((3, 1)) * 5, ((0, 1), (3, 0))),
    )
    with pytest.raises(InvalidInputError, match="does not match"):
        build_segmentation(shifted, img, LABELS, algorithm_name="t", algorithm_version="1")
    with pytest.raises(InvalidInputError, match="no label"):
        build_segmentation(
            img.with_array(np.full(img.shape, 7, np.uint8)),
            img,
            LABELS,
            algorithm_name="t",
            algorithm_version="1",
        )
    png_like = Image(np.zeros((4, 4), np.uint8))
    with pytest.raises(InvalidInputError, match="not read from DICOM"):
        source_datasets(png_like)


def test_seg_on_an_ultrasound_without_patient_coordinates(pydicom_file, tmp_path, debian_tool):
    debian_tool("dciodvfy")
    img = read_image(pydicom_file("examples_rgb_color.dcm"))  # 2D RGB ultrasound, no IPP/IOP
    mask = np.zeros(img.shape, np.uint8)
    mask[100:150, 80:120] = 1
    seg = build_segmentation(
        img.with_array(mask), img, LABELS[:2], algorithm_name="t", algorithm_version="1"
    )
    seg.save_as(tmp_path / "seg.dcm")
    assert dciodvfy(tmp_path / "seg.dcm")[0] == []
    back = hd.seg.segread(tmp_path / "seg.dcm")
    arr = back.get_pixels_by_source_instance(
        source_sop_instance_uids=list(img.source.sop_instance_uids), combine_segments=True
    )
    np.testing.assert_array_equal(arr[0], mask.T)
