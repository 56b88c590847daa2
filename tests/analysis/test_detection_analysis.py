"""The detection findings builder: findings above the operating threshold, sizes, marked image."""

from __future__ import annotations

import types

import numpy as np
import pytest

from medsight.analysis.detection import analyze_detection, region_measurements
from medsight.core.codes import DEPTH, DIAMETER, HEIGHT, MASS, WIDTH, Code
from medsight.core.findings import FindingKind, Region
from medsight.core.image import Image
from medsight.core.significance import Significance
from medsight.inference import detect
from medsight.inference.detect import Detection
from medsight.models.spec import (
    ArchitectureSpec,
    InputSpec,
    LabelSpec,
    ModelSpec,
    PreprocessingSpec,
)

CALCIFICATION = Code("129748009", "SCT", "Calcification")  # hand-made label code for the test


def _package(thresholds=None, ndim: int = 2):
    spec = ModelSpec(
        name="toy-det",
        version="0.1",
        task="detection",
        architecture=ArchitectureSpec(name="retinanet"),
        input=InputSpec(spatial_ndim=ndim),
        preprocessing=PreprocessingSpec(),
        labels=[
            LabelSpec(
                index=0, name="mass", code=MASS, significance="actionable", color=(255, 0, 0)
            ),
            LabelSpec(index=1, name="calcification", code=CALCIFICATION),
        ],
        thresholds={"score": 0.5} if thresholds is None else thresholds,
    )
    return types.SimpleNamespace(id="toy-det@0.1", spec=spec, path=None)


@pytest.fixture
def fake_detector(monkeypatch):
    """Replace the predictor by one returning ``found`` (what a real Detector returns)."""
    found: list[Detection] = []

    class _Fake:
        def __init__(self, package, device="auto"):
            self.package = package

        def detect(self, image, *, min_score=None):
            return [d for d in found if min_score is None or d.score >= min_score]

    monkeypatch.setattr(detect, "Detector", _Fake)
    return found


def test_one_finding_per_detection_above_the_threshold(fake_detector):
    fake_detector += [
        Detection(Region((30, 20), (10, 10), "ellipse"), 0.62, 0),
        Detection(Region((10, 40), (4, 6)), 0.91, 1),
        Detection(Region((50, 50), (8, 8)), 0.3, 0),  # below the operating threshold
    ]
    image = Image(np.random.default_rng(0).random((64, 64)).astype(np.float32), spacing=(0.5, 0.5))
    out = analyze_detection(_package(), image)
    assert not out.withheld
    assert [f.note for f in out.findings] == ["calcification #1", "mass #2"]
    calc, mass = out.findings
    assert calc.kind is FindingKind.DETECTION and calc.positive is True
    assert calc.probability == pytest.approx(0.91) and calc.finding == CALCIFICATION
    assert calc.region == Region((10, 40), (4, 6))
    assert "not a calibrated probability" in calc.reliability
    assert {m.concept: (m.value, m.unit.value) for m in calc.measurements} == {
        WIDTH: (2.0, "mm"),
        HEIGHT: (3.0, "mm"),
    }
    assert mass.finding == MASS and mass.significance is Significance.ACTIONABLE
    assert mass.actionable
    assert [(m.concept, m.value) for m in mass.measurements] == [(DIAMETER, 5.0)]
    assert out.picture is not None and out.picture.ndim == 3 and out.picture.shape[2] == 3
    # the marks are drawn: the picture differs from the same image with no detection
    fake_detector.clear()
    empty = analyze_detection(_package(), image)
    assert empty.findings == [] and not empty.withheld
    assert empty.picture.shape == out.picture.shape
    assert np.any(empty.picture != out.picture)


def test_sizes_in_pixels_without_a_known_spacing(fake_detector):
    fake_detector.append(Detection(Region((30, 20), (10, 10), "ellipse"), 0.8, 0))
    image = Image(np.zeros((64, 64), np.float32), meta={"spacing_known": False})
    (f,) = analyze_detection(_package(), image).findings
    assert [(m.value, m.unit_text) for m in f.measurements] == [(10.0, "pixels")]


def test_withheld_without_an_operating_threshold_or_with_an_unnamed_class(fake_detector):
    fake_detector.append(Detection(Region((30, 20), (10, 10)), 0.8, 0))
    image = Image(np.zeros((32, 32), np.float32), spacing=(1.0, 1.0))
    out = analyze_detection(_package(thresholds={}), image)
    assert out.findings == [] and out.picture is None
    assert "no operating score threshold" in out.withheld[0]
    fake_detector.append(Detection(Region((5, 5), (2, 2)), 0.9, 7))
    out = analyze_detection(_package(), image)
    assert out.findings == [] and "[7]" in out.withheld[0]


def test_region_measurements_3d():
    box = region_measurements(Region((5, 5, 5), (4, 6, 2)), (0.5, 0.5, 2.0))
    assert [(m.concept, m.value) for m in box] == [(WIDTH, 2.0), (HEIGHT, 3.0), (DEPTH, 4.0)]
    sphere = region_measurements(Region((5, 5, 5), (4, 4, 1), "ellipse"), (1.0, 1.0, 4.0))
    assert [(m.concept, m.value) for m in sphere] == [(DIAMETER, 4.0)]


def test_3d_volume_shows_the_slice_of_the_best_detection(fake_detector):
    from medsight.reporting.detection_marks import render_detections

    fake_detector.append(Detection(Region((10, 10, 6), (6, 6, 2)), 0.9, 0))
    vol = Image(np.zeros((24, 24, 10), np.float32), spacing=(1.0, 1.0, 2.0))
    out = analyze_detection(_package(ndim=3), vol)
    assert out.findings[0].measurements[-1].concept == DEPTH
    blank = render_detections(vol, [], slice_index=6)
    assert out.picture.shape == blank.shape and np.any(out.picture != blank)
    off = render_detections(vol, out.findings, slice_index=0)  # the box does not reach slice 1
    assert np.array_equal(off[40:], render_detections(vol, [], slice_index=0)[40:])


def _discs(root, n: int = 12, size: int = 48):
    """``n`` PNGs with a bright disc in three of every four, as a COCO file (2 per patient)."""
    import json

    from PIL import Image as PILImage

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    jj, ii = np.mgrid[0:size, 0:size]
    images, anns = [], []
    for k in range(n):
        arr = rng.normal(40, 8, (size, size))
        if k % 4 != 3:
            cx, cy, r = *rng.uniform(12, size - 12, 2), rng.uniform(5, 7)
            arr[(ii - cx) ** 2 + (jj - cy) ** 2 <= r * r] += 150
            bbox = [cx - r + 0.5, cy - r + 0.5, 2 * r, 2 * r]
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 1, "bbox": bbox})
        PILImage.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(root / f"im{k}.png")
        images.append({"id": k + 1, "file_name": f"im{k}.png", "patient_id": f"p{k // 2}"})
    cats = [{"id": 1, "name": "disc"}]
    (root / "ann.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    return root / "ann.json"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real detection package after a few RetinaNet steps on discs (wiring, not accuracy)."""
    from medsight.training.detect import DetectConfig, train_detector

    root = tmp_path_factory.mktemp("detector")
    ann = _discs(root / "discs", n=8)
    cfg = DetectConfig(
        data=f"coco:{ann}",
        out=root / "run",
        steps=4,
        val_every=4,
        block_inplanes=[8, 16],
        fpn_channels=8,
        device="cpu",
        threads=1,
    )
    return ann, train_detector(cfg, log=lambda s: None)


def test_a_real_detector_package_through_analyze_and_evaluate(trained, tmp_path):
    import json

    from medsight.analysis.pipeline import analyze
    from medsight.data import load_dataset
    from medsight.data.detection import annotations_of
    from medsight.evaluation.detection import froc
    from medsight.evaluation.detection_eval import evaluate_detector
    from medsight.inference.detect import Detector

    ann, pkg = trained
    threshold = pkg.spec.thresholds["score"]
    analyze(ann.parent / "im0.png", tmp_path / "report", packages=[pkg])
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [m["status"] for m in report["models"]] == ["ran"]
    assert all(
        f["kind"] == "detection" and f["probability"] >= threshold for f in report["findings"]
    )
    assert "detections, numbered by score" in report["images"][0]["caption"]
    assert (tmp_path / "report" / report["images"][0]["file"]).is_file()
    ds = load_dataset(f"coco:{ann}")
    seen: list = []

    class _Recording(Detector):  # the real predictor, its outputs kept for the check below
        def detect(self, image, **kw):
            seen.append(super().detect(image, **kw))
            return seen[-1]

    result = evaluate_detector(
        pkg, ds, tmp_path / "eval", split="all", n_resamples=20, detector=_Recording(pkg)
    )
    direct = froc(seen, [[a.region for a in annotations_of(c)] for c in ds])
    assert result["froc"]["sensitivities"] == pytest.approx(list(direct.sensitivities))
    assert result["n_lesions"] == 6 and result["operating_point"]["threshold"] == threshold
    assert (tmp_path / "eval" / "report.html").is_file()


def test_dicom_through_the_pipeline_gives_sc_sr_regions_and_fhir(
    trained, tmp_path, pydicom_file, monkeypatch
):
    """A DICOM slice through analyze (package, family, SC, SR, FHIR) with fixed detections from
    the predictor: the SR holds one image region per detection, on that slice."""
    import json
    import shutil

    import highdicom as hd

    from medsight.analysis.pipeline import analyze

    _, pkg = trained
    fixed = [
        Detection(Region((40, 50), (10, 8)), 0.95, 0),
        Detection(Region((90, 90), (6, 6)), 0.9, 0),
    ]

    class _Fixed:
        def __init__(self, package, device="auto"):
            pass

        def detect(self, image, *, min_score=None):
            return fixed

    monkeypatch.setattr(detect, "Detector", _Fixed)
    (tmp_path / "ct").mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "ct" / "ct.dcm")
    done = analyze(tmp_path / "ct", tmp_path / "ct_report", packages=[pkg])
    assert [f.region for f in done.report.findings] == [d.region for d in fixed]
    assert {k: v for k, v in done.dicom_errors.items() if k != "dciodvfy"} == {}
    outputs = done.report.outputs
    sr = hd.sr.srread(tmp_path / "ct_report" / outputs["DICOM SR"])
    groups = sr.content.get_image_measurement_groups()  # cornerstone RectangleROI groups:
    nums = [next(i for i in g[0].ContentSequence if i.ValueType == "NUM") for g in groups]
    scoords = [num.ContentSequence[0] for num in nums]  # the first NUM holds the SCOORD
    firsts = [[float(v) for v in s.GraphicData[:2]] for s in scoords]
    assert firsts == [[35.5, 46.5], [87.5, 87.5]]
    assert (tmp_path / "ct_report" / outputs["DICOM SC " + pkg.id]).is_file()
    bundle = json.loads((tmp_path / "ct_report" / "fhir_bundle.json").read_text())
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("BodyStructure") == 2


def test_a_detector_without_a_strong_validated_sensitivity_is_flagged_weak(fake_detector):
    from medsight.models.spec import MetricValue

    fake_detector.append(Detection(Region((30, 20), (10, 10), "ellipse"), 0.8, 0))
    image = Image(np.zeros((64, 64), np.float32), spacing=(0.5, 0.5))
    (f,) = analyze_detection(_package(), image).findings  # no metric recorded at all
    assert f.weak_model and "no validated sensitivity" in f.reliability
    pkg = _package()
    strong = MetricValue(name="sensitivity@1fp", value=0.9, ci_low=0.8, ci_high=0.95, split="test")
    pkg.spec = pkg.spec.model_copy(update={"metrics": [strong]})
    (f,) = analyze_detection(pkg, image).findings
    assert not f.weak_model and "weak" not in f.reliability
    low = strong.model_copy(update={"ci_low": 0.4})
    pkg.spec = pkg.spec.model_copy(update={"metrics": [low]})
    (f,) = analyze_detection(pkg, image).findings
    assert f.weak_model and "0.40 to 0.95" in f.reliability
