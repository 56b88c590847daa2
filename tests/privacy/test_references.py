"""A segmentation (built with highdicom) still points at its source CT after de-identification."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread, examples
from pydicom.sr.codedict import codes

from medsight.privacy.batch import deidentify_folder
from medsight.privacy.leaks import verify
from medsight.privacy.profile import DeidConfig

hd = pytest.importorskip("highdicom")


def _segmentation(ct):
    mask = np.zeros((1, ct.Rows, ct.Columns), dtype=bool)
    mask[0, 40:80, 40:80] = True
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    return hd.seg.Segmentation(
        source_images=[ct],
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid="1.2.826.0.1.3680043.8.498.77",
        series_number=2,
        sop_instance_uid="1.2.826.0.1.3680043.8.498.78",
        instance_number=1,
        manufacturer="medsight",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="1",
    )


def test_seg_references_follow_the_remapped_ct(key, tmp_path):
    ct = examples.ct
    src = tmp_path / "in"
    src.mkdir()
    ct.save_as(src / "ct.dcm")
    _segmentation(ct).save_as(src / "seg.dcm")
    out = tmp_path / "out"
    report = deidentify_folder(src, out, key, DeidConfig(layout="mirror"), workers=2)
    assert report.failed == []
    new_ct, new_seg = dcmread(out / "ct.dcm"), dcmread(out / "seg.dcm")
    ref_series = new_seg.ReferencedSeriesSequence[0]
    assert ref_series.SeriesInstanceUID == new_ct.SeriesInstanceUID
    assert (
        ref_series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == new_ct.SOPInstanceUID
    )
    frame = new_seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
    assert frame.SourceImageSequence[0].ReferencedSOPInstanceUID == new_ct.SOPInstanceUID
    assert new_seg.SourceImageSequence[0].ReferencedSOPInstanceUID == new_ct.SOPInstanceUID
    assert new_seg.FrameOfReferenceUID == new_ct.FrameOfReferenceUID
    assert new_seg.StudyInstanceUID == new_ct.StudyInstanceUID != ct.StudyInstanceUID
    assert new_seg.PatientID == new_ct.PatientID
    np.testing.assert_array_equal(new_seg.pixel_array, dcmread(src / "seg.dcm").pixel_array)
    assert verify(src, out).ok
