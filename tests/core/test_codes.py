"""Coded concepts: the constants agree with pydicom's copy of DICOM PS3.16 (independent source)."""

from __future__ import annotations

import pytest
from pydicom.sr.codedict import codes

from medsight.core import codes as ms


@pytest.mark.parametrize(
    ("ours", "scheme", "keyword"),
    [
        (ms.VOLUME, "SCT", "Volume"),
        (ms.AREA, "SCT", "Area"),
        (ms.SQUARE_MILLIMETER, "UCUM", "SquareMillimeter"),
        (ms.DIAMETER, "SCT", "Diameter"),
        (ms.LONG_AXIS, "SCT", "LongAxis"),
        (ms.SHORT_AXIS, "SCT", "ShortAxis"),
        (ms.IMAGING_MEASUREMENTS, "DCM", "ImagingMeasurements"),
        (ms.FINDING, "DCM", "Finding"),
        (ms.PROBABILITY_OF_CANCER, "DCM", "ProbabilityOfCancer"),
        (ms.ALGORITHM_NAME, "DCM", "AlgorithmName"),
        (ms.TRACKING_IDENTIFIER, "DCM", "TrackingIdentifier"),
        (ms.HIPPOCAMPUS, "SCT", "Hippocampus"),
        (ms.BREAST, "SCT", "Breast"),
        (ms.LESION, "SCT", "Lesion"),
        (ms.MASS, "SCT", "Mass"),
        (ms.NEOPLASM, "SCT", "Neoplasm"),
        (ms.ANATOMICAL_STRUCTURE, "SCT", "AnatomicalStructure"),
        (ms.ABNORMAL_STRUCTURE, "SCT", "MorphologicallyAbnormalStructure"),
        (ms.PRESENT, "SCT", "Present"),
        (ms.ABSENT, "SCT", "Absent"),
        (ms.IMAGING_PROCEDURE, "SCT", "Imaging"),
        (ms.DIAGNOSTIC_IMAGING_REPORT, "LN", "DiagnosticImagingReport"),
        (ms.ARTIFICIAL_INTELLIGENCE, "DCM", "ArtificialIntelligence"),
    ],
)
def test_codes_match_pydicom_codedict(ours, scheme, keyword):
    ref = getattr(getattr(codes, scheme), keyword)
    assert (ours.value, ours.scheme) == (ref.value, ref.scheme_designator)
    assert ours.meaning.lower() == ref.meaning.lower()


def test_fhir_systems():
    assert ms.VOLUME.fhir_system() == "http://snomed.info/sct"
    assert ms.Code("x1", "99LOCAL", "local").fhir_system() == "urn:medsight:99local"
