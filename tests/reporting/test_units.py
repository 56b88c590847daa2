"""Areas and pixel units travel honestly into the report, the FHIR Bundle and the DICOM SR."""

from __future__ import annotations

import highdicom as hd
import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle

from medsight.core import Finding, FindingKind, Measurement
from medsight.core.codes import (
    AREA,
    LESION,
    LONG_AXIS,
    MILLIMETER,
    NEOPLASM,
    PIXELS,
    SQUARE_MILLIMETER,
    SQUARE_PIXELS,
)
from medsight.reporting.dicom_sr import build_sr
from medsight.reporting.fhir import StudyInfo, build_bundle
from medsight.reporting.report import Report, impression, write_report

STUDY = StudyInfo("1.2.840.1", "PAT1", "US", series=(("1.2.840.1.1", "US", 1),))
UNKNOWN = "pixel spacing unknown"
IN_MM = (Measurement(AREA, 52.3, SQUARE_MILLIMETER), Measurement(LONG_AXIS, 8.1, MILLIMETER))
IN_PIXELS = (
    Measurement(AREA, 2100, SQUARE_PIXELS, qualifier=UNKNOWN),
    Measurement(LONG_AXIS, 61.0, PIXELS, qualifier=UNKNOWN),
)


def _finding(measurements, kind=FindingKind.SEGMENTATION) -> Finding:
    return Finding(LESION, "busi", "1", kind=kind, measurements=measurements, segment_number=1)


def test_impression_and_html_show_areas_and_pixels(tmp_path):
    text = impression([_finding(IN_MM)])
    assert "area 52.3 mm2" in text and "mL" not in text
    text = impression([_finding(IN_PIXELS)])
    assert "area 2.1e+03 square pixels" in text and "long axis 61 pixels" in text
    assert "mm" not in text and "{" not in text
    report = Report(input="x.png", findings=[_finding(IN_MM), _finding(IN_PIXELS)])
    _, html_path = write_report(report, tmp_path)
    html = html_path.read_text()
    assert "Area 52.3 mm2" in html and "Long Axis 61 pixels" in html
    assert UNKNOWN in html and "{pixels}" not in html


def test_fhir_quantities_use_ucum_codes_and_readable_units():
    data = build_bundle([_finding(IN_MM), _finding(IN_PIXELS)], STUDY)
    Bundle.model_validate(data)
    obs = [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Observation"]
    area_mm, _ = (c["valueQuantity"] for c in obs[0]["component"])
    area_px, long_px = (c["valueQuantity"] for c in obs[1]["component"])
    assert obs[0]["component"][0]["code"]["coding"][0]["code"] == "42798000"
    assert area_mm == {
        "value": 52.3,
        "unit": "mm2",
        "system": "http://unitsofmeasure.org",
        "code": "mm2",
    }
    assert (area_px["code"], area_px["unit"]) == ("{square_pixels}", "square pixels")
    assert (long_px["code"], long_px["unit"]) == ("{pixels}", "pixels")


@pytest.mark.parametrize("measurements", [IN_MM, IN_PIXELS])
def test_sr_measurements_have_valid_ucum_units(pydicom_file, tmp_path, measurements):
    source = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    finding = Finding(
        NEOPLASM,
        "m",
        "1",
        kind=FindingKind.CLASSIFICATION,
        probability=0.5,
        positive=True,
        measurements=measurements,
    )
    build_sr([finding], [source]).save_as(tmp_path / "sr.dcm")
    back = hd.sr.srread(tmp_path / "sr.dcm")
    units = {
        item.MeasurementUnitsCodeSequence[0].CodeValue
        for item in _walk(back.ContentSequence)
        if "MeasurementUnitsCodeSequence" in item
    }
    assert {m.unit.value for m in measurements} <= units


def _walk(seq):
    for item in seq:
        yield from (item.MeasuredValueSequence if "MeasuredValueSequence" in item else [])
        if "ContentSequence" in item:
            yield from _walk(item.ContentSequence)
