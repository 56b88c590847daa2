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


def test_2d_sr_holds_scoord_regions_on_the_source_instance(pydicom_file, tmp_path, debian_tool):
    debian_tool("dciodvfy")
    img = read_image(pydicom_file("CT_small.dcm"))  # one CT slice
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
    groups = back.content.get_planar_roi_measurement_groups()
    assert len(groups) == 3 and len(back.content.get_image_measurement_groups()) == 1
    shapes = [(g.roi.graphic_type.value, g.roi.value.tolist()) for g in groups]
    # DICOM pixel coordinates: (column, row), voxel index i -> i + 0.5 (PS3.3 C.18.6.1)
    assert shapes == [
        ("POLYLINE", [[25.5, 37.5], [35.5, 37.5], [35.5, 43.5], [25.5, 43.5], [25.5, 37.5]]),
        ("CIRCLE", [[60.5, 60.5], [64.5, 60.5]]),
        ("ELLIPSE", [[90.5, 14.5], [90.5, 26.5], [87.5, 20.5], [93.5, 20.5]]),  # major first
    ]
    for g in groups:
        ref = g.roi.ContentSequence[0].ReferencedSOPSequence[0]
        assert ref.ReferencedSOPInstanceUID == img.source.sop_instance_uids[0]
        assert g.get_qualitative_evaluations()[0].value.meaning == "Present"
    values = {m.name.meaning: (m.value, m.unit.value) for m in groups[0].get_measurements()}
    assert values == {"Width": (6.6, "mm"), "Probability": (0.91, "1")}
    assert groups[1].finding_type.meaning == "Calcification"


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
