"""Detection findings rendered: DICOM SR image regions, FHIR, the report, the worklist triage."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pytest

from medsight.core import InvalidInputError
from medsight.core.codes import BREAST, DIAMETER, MASS, MILLIMETER, NEOPLASM, WIDTH, Code
from medsight.core.findings import Finding, FindingKind, Measurement, Region
from medsight.io import read_image
from medsight.reporting.dicom_sr import build_sr
from medsight.reporting.fhir import StudyInfo, build_bundle
from medsight.reporting.fhir_regions import BODY_SITE_EXTENSION
from medsight.reporting.report import Report, ReportImage, impression, write_report
from medsight.reporting.sources import source_datasets
from medsight.reporting.validate import dciodvfy

CALCIFICATION = Code("129748009", "SCT", "Calcification")


def _det(region, score=0.9, code=MASS, n=1, source=None, significance=None, measurements=()):
    return Finding(
        code,
        "toy-det",
        "0.1",
        kind=FindingKind.DETECTION,
        probability=score,
        positive=True,
        region=region,
        source=source,
        note=f"{code.meaning.lower()} #{n}",
        significance=significance,
        measurements=measurements,
    )


def _as_cornerstone_reads_it(group) -> dict:
    """What the cornerstone3D adapters take from a TID 1501 group (MeasurementReport.
    getSetupMeasurementData as bundled by OHIF 3.12): the tracking identifier, the first NUM's
    SCOORD (points as (column, row) pairs) and the NUM values by their concept's meaning."""
    items = list(group[0].ContentSequence)
    (tracking,) = [i for i in items if i.ConceptNameCodeSequence[0].CodeMeaning
                   == "Tracking Identifier"]  # fmt: skip
    nums = [i for i in items if i.ValueType == "NUM"]
    (scoord,) = [i for i in nums[0].ContentSequence if i.ValueType == "SCOORD"]
    values = {
        n.ConceptNameCodeSequence[0].CodeMeaning: (
            float(n.MeasuredValueSequence[0].NumericValue),
            n.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue,
        )
        for n in nums
    }
    return {
        "tool": tracking.TextValue,
        "first": nums[0].ConceptNameCodeSequence[0].CodeMeaning,
        "relationship": scoord.RelationshipType,
        "graphic": scoord.GraphicType,
        "points": np.reshape(scoord.GraphicData, (-1, 2)).tolist(),
        "image": scoord.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID,
        "values": values,
    }


def test_2d_sr_regions_are_cornerstone_tools_ohif_rehydrates(pydicom_file, tmp_path, debian_tool):
    debian_tool("dciodvfy")
    img = read_image(pydicom_file("CT_small.dcm"))  # one CT slice, 0.661468 mm square pixels
    mm = 0.661468
    findings = [
        _det(
            Region((30, 40), (10, 6)),
            0.91,
            source=img.source,
            measurements=(Measurement(WIDTH, 6.6, MILLIMETER),),
        ),
        _det(
            Region((60, 60), (8, 8), "ellipse"),
            0.7,
            CALCIFICATION,
            2,
            img.source,
            measurements=(Measurement(DIAMETER, 5.3, MILLIMETER),),
        ),
        _det(Region((90, 20), (6, 12), "ellipse"), 0.6, n=3, source=img.source),
        Finding(NEOPLASM, "cls", "1", kind="classification", probability=0.8, positive=True),
    ]
    sr = build_sr(findings, source_datasets(img))
    sr.save_as(tmp_path / "sr.dcm")
    assert dciodvfy(tmp_path / "sr.dcm")[0] == []
    back = hd.sr.srread(tmp_path / "sr.dcm")
    assert back.content.get_planar_roi_measurement_groups() == []
    groups = back.content.get_image_measurement_groups()
    assert len(groups) == 4
    tools = [_as_cornerstone_reads_it(g) for g in groups[:3]]
    assert [t["tool"] for t in tools] == [
        "Cornerstone3DTools@^0.1.0:RectangleROI",
        "Cornerstone3DTools@^0.1.0:CircleROI",
        "Cornerstone3DTools@^0.1.0:EllipticalROI",
    ]
    # DICOM pixel coordinates: (column, row), voxel index i -> i + 0.5 (PS3.3 C.18.6.1)
    assert [(t["graphic"], t["points"]) for t in tools] == [
        ("POLYLINE", [[25.5, 37.5], [35.5, 37.5], [35.5, 43.5], [25.5, 43.5], [25.5, 37.5]]),
        ("CIRCLE", [[60.5, 60.5], [64.5, 60.5]]),
        ("ELLIPSE", [[90.5, 14.5], [90.5, 26.5], [87.5, 20.5], [93.5, 20.5]]),  # major first
    ]
    for t in tools:
        assert t["relationship"] == "INFERRED FROM"
        assert t["image"] == img.source.sop_instance_uids[0]
    # geometric NUMs first (dcmjs' TID 300 order), in mm from the Pixel Spacing
    assert [t["first"] for t in tools] == ["Perimeter", "Perimeter", "Area"]
    box, circle, ellipse = (t["values"] for t in tools)
    assert box["Perimeter"] == pytest.approx((2 * (10 + 6) * mm, "mm"), abs=0.005)
    assert box["Area"] == pytest.approx((10 * 6 * mm * mm, "mm2"), abs=0.005)
    assert circle["Radius"] == pytest.approx((4 * mm, "mm"), abs=0.005)
    assert circle["Area"] == pytest.approx((np.pi * (4 * mm) ** 2, "mm2"), abs=0.005)
    assert ellipse["Area"] == pytest.approx((np.pi * 3 * mm * 6 * mm, "mm2"), abs=0.005)
    # the finding's own measurements, score and evaluation stay
    assert box["Width"] == (6.6, "mm") and box["Probability"] == (0.91, "1")
    assert circle["Diameter"] == (5.3, "mm") and ellipse["Probability"] == (0.6, "1")
    for g in groups[:3]:
        assert g.get_qualitative_evaluations()[0].value.meaning == "Present"
    assert [g.finding_type.meaning for g in groups[:3]] == ["Mass", "Calcification", "Mass"]
    assert len({g.tracking_uid for g in groups}) == 4  # OHIF merges groups sharing one


def test_2d_region_without_pixel_spacing_stays_a_planar_roi(pydicom_file, tmp_path):
    img = read_image(pydicom_file("CT_small.dcm"))
    (source,) = source_datasets(img)
    del source.PixelSpacing  # no mm: no perimeter or area is guessed
    build_sr([_det(Region((30, 40), (10, 6)), source=img.source)], [source]).save_as(
        tmp_path / "sr.dcm"
    )
    (group,) = hd.sr.srread(tmp_path / "sr.dcm").content.get_planar_roi_measurement_groups()
    assert group.roi.graphic_type.value == "POLYLINE"
    assert group.roi.value.tolist()[0] == [25.5, 37.5]
    assert group.tracking_identifier == "Mass #1"
    values = {m.name.meaning: m.value for m in group.get_measurements()}
    assert values == {"Probability": 0.9}


def test_cornerstone_region_shapes_follow_the_pixel_spacing():
    from medsight.reporting.sr_regions import cornerstone_region

    # a circle in pixels on 0.5 x 2.0 mm pixels is an ellipse 8 mm across, 2 mm down
    oval = cornerstone_region(Region((10, 10), (4, 4), "ellipse"), (0.5, 2.0))
    assert oval.graphic_type == "ELLIPSE"
    assert oval.points.tolist() == [[8.5, 10.5], [12.5, 10.5], [10.5, 8.5], [10.5, 12.5]]
    ((name, area, unit),) = oval.measures
    assert name[2] == "Area" and unit[0] == "mm2"
    assert area == pytest.approx(np.pi * 4.0 * 1.0, abs=0.005)  # pi * a * b, semi-axes in mm
    # rows 3 mm apart: a box 4 columns x 2 rows of 1 x 3 mm pixels is 4 mm x 6 mm
    box = cornerstone_region(Region((5, 5), (4, 2)), (3.0, 1.0))
    assert [value for _, value, _ in box.measures] == [20.0, 24.0]
    for region, spacing, problem in [
        (Region((5, 5), (4, 0)), (1.0, 1.0), "no extent"),
        (Region((5, 5), (4, 2)), (0.0, 1.0), "two positive"),
        (Region((5, 5, 5), (4, 2, 2)), (1.0, 1.0), "3D"),
    ]:
        with pytest.raises(InvalidInputError, match=problem):
            cornerstone_region(region, spacing)


def test_3d_sr_holds_scoord3d_in_patient_coordinates(shared_data, tmp_path, debian_tool):
    debian_tool("dciodvfy")
    img = read_image(shared_data / "dicom/brain_mr_study1", series="HippoCrop")
    box, sphere, flat = (
        Region((10, 12, 5), (6, 4, 3)),
        Region((20, 20, 8), (6, 6, 4), "ellipse"),
        (Region((5, 5, 3), (2, 2, 0))),
    )
    findings = [_det(r, 0.8, n=n, source=img.source) for n, r in enumerate([box, sphere, flat], 1)]
    with pytest.raises(InvalidInputError, match="affine"):
        build_sr(findings, source_datasets(img))
    sr = build_sr(findings, source_datasets(img), affine=img.affine)
    sr.save_as(tmp_path / "sr.dcm")
    assert dciodvfy(tmp_path / "sr.dcm")[0] == []
    back = hd.sr.srread(tmp_path / "sr.dcm")
    forum = str(source_datasets(img)[0].FrameOfReferenceUID)

    def world(points):
        p = np.asarray(points, float)
        return (img.affine[:3, :3] @ p.T).T + img.affine[:3, 3]

    volumes = back.content.get_volumetric_roi_measurement_groups()
    assert len(volumes) == 2
    faces = [item for item in volumes[0].roi if item.ValueType == "SCOORD3D"]
    assert [f.GraphicType for f in faces] == ["POLYGON", "POLYGON"]
    for face, k in zip(faces, (3.5, 6.5), strict=True):
        assert face.ReferencedFrameOfReferenceUID == forum
        corners = [[7, 10, k], [13, 10, k], [13, 14, k], [7, 14, k], [7, 10, k]]
        np.testing.assert_allclose(np.reshape(face.GraphicData, (-1, 3)), world(corners), atol=1e-4)
    (ellipsoid,) = [item for item in volumes[1].roi if item.ValueType == "SCOORD3D"]
    assert ellipsoid.GraphicType == "ELLIPSOID"
    ends = np.reshape(ellipsoid.GraphicData, (6, 3))
    np.testing.assert_allclose(ends.mean(axis=0), world([[20, 20, 8]])[0], atol=1e-4)
    (planar,) = back.content.get_planar_roi_measurement_groups()  # the box without depth
    assert planar.roi.graphic_type.value == "POLYGON"
    assert planar.roi.frame_of_reference_uid == forum


def test_fhir_observation_per_detection_with_a_body_structure():
    f = _det(
        Region((30, 20), (10, 10), "ellipse"),
        0.91,
        measurements=(Measurement(DIAMETER, 4.0, MILLIMETER),),
    )
    f = Finding(**{**f.__dict__, "site": BREAST})
    study = StudyInfo(study_instance_uid="1.2.3", patient_id="P1", modality="MG")
    bundle = build_bundle([f, _det(Region((5, 5), (2, 4)), 0.6, n=2)], study)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("BodyStructure") == 2 and kinds.count("Observation") == 2
    structures = {
        e["fullUrl"]: e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "BodyStructure"
    }
    obs = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    )
    (ext,) = obs["extension"]
    assert ext["url"] == BODY_SITE_EXTENSION
    structure = structures[ext["valueReference"]["reference"]]
    assert structure["morphology"]["coding"][0]["code"] == MASS.value
    assert structure["location"]["coding"][0]["code"] == BREAST.value
    assert "circle centred at column 30, row 20" in structure["description"]
    assert obs["bodySite"]["coding"][0]["code"] == BREAST.value
    components = {c["code"]["text"]: c for c in obs["component"]}
    assert components["AI probability"]["valueQuantity"]["value"] == 0.91
    assert components["Diameter"]["valueQuantity"] == {
        "value": 4.0,
        "unit": "mm",
        "system": "http://unitsofmeasure.org",
        "code": "mm",
    }
    assert components["Image region"]["valueString"] == structure["description"]
    assert obs["valueCodeableConcept"]["coding"][0]["display"] == "Present"


def test_report_lists_detections_with_class_score_location_size_and_picture(tmp_path):
    from PIL import Image as PILImage

    f = _det(
        Region((30, 20), (10, 10), "ellipse"),
        0.91,
        measurements=(Measurement(DIAMETER, 4.0, MILLIMETER),),
    )
    text = impression([f])
    assert text == "AI suggests: Mass (mass #1) detected (score 0.91, diameter 4 mm)."
    PILImage.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "overlay_toy.png")
    report = Report(
        input="x",
        findings=[f],
        impression=text,
        images=[ReportImage(file="overlay_toy.png", caption="toy-det: detections")],
    )
    json_path, html_path = write_report(report, tmp_path)
    html = html_path.read_text()
    assert "circle centred at column 30, row 20 (image index space), 10 x 10 pixels" in html
    assert "Diameter 4 mm" in html and "0.91" in html and "data:image/png;base64," in html
    stored = json.loads(json_path.read_text())["findings"][0]
    assert stored["region"] == {"center": [30.0, 20.0], "size": [10.0, 10.0], "shape": "ellipse"}


def test_a_positive_actionable_detection_flags_its_study_like_a_classification():
    from medsight.service.worklist import assess

    mass = _det(Region((5, 5), (2, 2)), 0.83, significance="actionable")
    cls = Finding(
        MASS,
        "c",
        "1",
        kind="classification",
        probability=0.83,
        positive=True,
        significance="actionable",
    )
    for findings in ([mass], [cls]):
        t = assess(findings)
        assert t.flagged and t.flag_urgency == "urgent" and t.suspicion == 0.83
    assert "detected, score 0.83" in assess([mass]).flag_reason
    benign = _det(Region((5, 5), (2, 2)), 0.9, significance="benign")
    assert not assess([benign]).flagged and assess([benign]).suspicion == 0.0
