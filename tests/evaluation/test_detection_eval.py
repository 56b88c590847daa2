"""FROC / CPM against hand-computed cases and the LUNA16 formula; bootstrap CIs; the evaluator.

Reference: the LUNA16 evaluation script ``noduleCADEvaluationLUNA16.py`` (``computeFROC``:
``fps = fpr * n_FP / n_images``, ``sens = tpr * n_hit / n_lesions`` from sklearn's
``roc_curve`` over the best hit of each lesion and the false positives, then ``numpy.interp``).
"""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from medsight.core import InvalidInputError
from medsight.core.case import Box, Case
from medsight.core.findings import Region
from medsight.core.image import Image
from medsight.evaluation.detection import froc, froc_bootstrap, match_image
from medsight.evaluation.detection_eval import evaluate_detector
from medsight.inference.detect import Detection
from medsight.models.spec import LabelSpec


def _det(i: float, j: float, score: float, label: int = 0) -> Detection:
    return Detection(Region((i, j), (4, 4)), score, label)


def _hand_case():
    """4 images, 3 lesions; worked out by hand below."""
    truths = [
        [Region((10, 10), (4, 4)), Region((30, 30), (6, 6), "ellipse")],
        [Region((20, 20), (2, 2))],  # missed
        [],  # normal image with two false positives
    ]
    preds = [
        [_det(10, 10, 0.9), _det(11, 11, 0.6), _det(30, 32, 0.7), _det(50, 50, 0.8)],
        [_det(40, 40, 0.5)],
        [_det(5, 5, 0.95), _det(6, 6, 0.3)],
    ]
    return preds, truths


def test_froc_hand_computed_with_double_hit_miss_and_normal_images():
    preds, truths = _hand_case()
    r = froc(preds, truths, n_images=4)  # a fourth image: normal, no detection
    # TP scores 0.9 (lesion 1, its second hit 0.6 ignored), 0.7 (lesion 2, inside the ellipse)
    # FP scores 0.95, 0.8, 0.5, 0.3; 3 lesions, 4 images. Descending: FP TP FP TP FP FP
    np.testing.assert_allclose(r.fps, [0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(r.sens, [0, 0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(r.thresholds[1:], [0.95, 0.9, 0.8, 0.7, 0.5, 0.3])
    np.testing.assert_allclose(r.sensitivities, [1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert r.cpm == pytest.approx(0.6)
    assert (r.n_lesions, r.n_detected, r.n_false_positives, r.n_ignored) == (3, 2, 4, 1)
    assert r.at_threshold(0.7) == (pytest.approx(2 / 3), 0.5)
    assert r.at_threshold(0.99) == (0.0, 0.0)
    # without the fourth image every FP rate is a third higher
    assert froc(preds, truths).fps[-1] == pytest.approx(4 / 3)


def test_ties_between_a_hit_and_a_false_positive_interpolate_on_the_diagonal():
    truths = [[Region((5, 5), (2, 2)), Region((20, 20), (2, 2))], []]
    preds = [[_det(5, 5, 0.5)], [_det(1, 1, 0.5)]]
    r = froc(preds, truths, fp_rates=(0.25, 0.5, 1.0))
    np.testing.assert_allclose(r.fps, [0, 0.5])
    np.testing.assert_allclose(r.sens, [0, 0.5])
    np.testing.assert_allclose(r.sensitivities, [0.25, 0.5, 0.5])


def test_a_detection_inside_two_overlapping_lesions_hits_both_as_luna16():
    lesions = [Region((10, 10), (6, 6)), Region((12, 10), (6, 6))]
    m = match_image([_det(11, 10, 0.8), _det(10, 10, 0.4)], lesions)
    assert m.lesion_scores.tolist() == [0.8, 0.8]
    assert m.fp_scores.size == 0 and m.ignored == 2


def test_detections_on_irrelevant_regions_count_neither_way():
    lesion, difficult = Region((10, 10), (6, 6)), Region((30, 30), (6, 6))
    dets = [_det(10, 10, 0.8), _det(30, 31, 0.6), _det(50, 50, 0.5), _det(11, 10, 0.4)]
    m = match_image(dets, [lesion], [difficult, Region((11, 10), (2, 2))])
    # 0.8 hits the lesion; 0.4 too (an extra hit, even though it lies in an irrelevant region);
    # 0.6 lies only in the difficult one: left out; 0.5 is a false positive
    assert (m.lesion_scores.tolist(), m.fp_scores.tolist(), m.ignored, m.irrelevant) == (
        [0.8],
        [0.5],
        1,
        1,
    )
    with_irrelevant = froc([dets], [[lesion]], irrelevant=[[difficult]])
    without = froc([dets], [[lesion]])
    np.testing.assert_allclose(with_irrelevant.fps, [0, 0, 1])
    np.testing.assert_allclose(without.fps, [0, 0, 1, 2])
    assert (with_irrelevant.n_false_positives, with_irrelevant.n_irrelevant) == (1, 1)
    with pytest.raises(InvalidInputError, match="irrelevant"):
        froc([dets], [[lesion]], irrelevant=[[], []])


def test_no_false_positives_and_no_hits():
    truths = [[Region((5, 5), (2, 2))], [Region((9, 9), (2, 2))]]
    r = froc([[_det(5, 5, 0.7)], []], truths)
    assert r.sensitivities == (0.5,) * 5  # LUNA16: no FP, the curve sits at FP rate 0
    miss = froc([[_det(50, 50, 0.7)], []], truths)
    assert miss.cpm == 0.0 and miss.n_false_positives == 1
    with pytest.raises(InvalidInputError, match="no annotated lesion"):
        froc([[_det(1, 1, 0.5)]], [[]])
    with pytest.raises(InvalidInputError, match="images"):
        froc([[]], [[], []])


def test_arrays_of_centres_and_scores_and_3d():
    truths = [[Region((5, 5, 5), (4, 4, 2), "ellipse")]]
    r = froc([(np.array([[5, 5, 5.9], [5, 5, 7]]), np.array([0.6, 0.9]))], truths, (1.0,))
    assert (r.n_detected, r.n_false_positives, r.sensitivities) == (1, 1, (1.0,))
    with pytest.raises(InvalidInputError, match="2D centres"):
        froc([([(5, 5)], [0.5])], truths)


def _luna16(lesion_scores, fp_scores, n_images, rates):
    """The LUNA16 computeFROC formula with sklearn's roc_curve (independent reference)."""
    hit = lesion_scores[np.isfinite(lesion_scores)]
    gt = np.r_[np.ones(hit.size), np.zeros(fp_scores.size)]
    fpr, tpr, _ = roc_curve(gt, np.r_[hit, fp_scores])
    fps = fpr * fp_scores.size / n_images
    sens = tpr * hit.size / lesion_scores.size
    return np.interp(rates, fps, sens)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_luna16_formula_on_random_data(seed):
    rng = np.random.default_rng(seed)
    preds, truths = [], []
    for _ in range(25):
        lesions = [
            Region(tuple(rng.uniform(10, 90, 2)), (8, 8), "ellipse")
            for _ in range(rng.integers(0, 3))
        ]
        n = rng.integers(0, 6)
        centres = rng.uniform(0, 100, (n, 2))
        for lesion in lesions:  # a hit most of the time
            if rng.random() < 0.7:
                centres = np.vstack([centres, np.asarray(lesion.center) + rng.normal(0, 1, 2)])
        scores = np.round(rng.random(len(centres)), 2)  # rounding makes ties
        preds.append((centres, scores))
        truths.append(lesions)
    rates = np.array([0.125, 0.25, 0.5, 1, 2, 4, 8])
    r = froc(preds, truths, rates)
    matches = [match_image(p, t) for p, t in zip(preds, truths, strict=True)]
    ref = _luna16(
        np.concatenate([m.lesion_scores for m in matches]),
        np.concatenate([m.fp_scores for m in matches]),
        25,
        rates,
    )
    np.testing.assert_allclose(r.sensitivities, ref)


def _replicated(k: int):
    preds, truths = _hand_case()
    return preds * k, truths * k


def test_bootstrap_ci_contains_the_estimate_and_narrows_with_more_images():
    small = froc_bootstrap(*_replicated(3), n_resamples=300, seed=1)
    large = froc_bootstrap(*_replicated(30), n_resamples=300, seed=1)
    for ci in (small, large):
        assert ci.cpm.low <= ci.result.cpm <= ci.cpm.high
        for point, s in zip(ci.result.sensitivities, ci.sensitivities, strict=True):
            assert s.low <= point <= s.high
    assert small.result.cpm == pytest.approx(large.result.cpm)
    assert large.cpm.high - large.cpm.low < 0.6 * (small.cpm.high - small.cpm.low)
    assert small.resampled == "images" and small.cpm.n_valid > 250


def test_bootstrap_by_patient_resamples_whole_patients():
    preds, truths = _replicated(4)
    one = froc_bootstrap(preds, truths, groups=["p"] * len(preds), n_resamples=50)
    assert one.resampled == "patients"
    assert one.cpm.low == one.cpm.high == one.result.cpm  # one patient: every resample is all
    many = froc_bootstrap(preds, truths, groups=list(range(len(preds))), n_resamples=50)
    assert many.cpm.high > many.cpm.low
    with pytest.raises(InvalidInputError, match="patient ids"):
        froc_bootstrap(preds, truths, groups=["p"])


class _BrightSpotDetector:
    """A detector of bright connected spots: centre = centroid, score = peak intensity."""

    def detect(self, image: Image) -> list[Detection]:
        from scipy import ndimage

        arr = np.asarray(image.array, dtype=float)
        labels, n = ndimage.label(arr > 0)
        out = []
        for k in range(1, n + 1):
            centre = ndimage.center_of_mass(arr > 0, labels, k)
            score = float(arr[labels == k].max())
            out.append(Detection(Region(centre, (3, 3)), score, 0 if score > 0.5 else 1))
        return sorted(out, key=lambda d: -d.score)


def _spot_case(i: int, spots, boxes, patient: str, site: str) -> Case:
    arr = np.zeros((40, 40), np.float32)
    for ci, cj, value in spots:
        arr[ci - 1 : ci + 2, cj - 1 : cj + 2] = value
    return Case(
        f"c{i}",
        patient_id=patient,
        images={"image": Image(arr)},
        label=tuple(boxes),
        attributes={"site": site},
        split="test",
    )


def test_evaluate_detector_writes_json_html_and_plot(tmp_path):
    cases = [
        _spot_case(0, [(10, 10, 0.9), (30, 30, 0.7)], [Box(8, 8, 12, 12, "mass")], "p0", "A"),
        _spot_case(1, [(20, 20, 0.4)], [Box(18, 18, 22, 22, "calcification")], "p1", "B"),
        _spot_case(2, [], [Box(5, 30, 9, 34, "mass")], "p1", "B"),
        _spot_case(3, [(25, 5, 0.6)], [], "p2", "C"),
        _spot_case(4, [(5, 5, 0.8)], [Box(3, 3, 7, 7, "mass")], "p3", "B"),
    ]
    package = types.SimpleNamespace(
        id="toy-detector@1",
        spec=types.SimpleNamespace(
            labels=[LabelSpec(index=0, name="mass"), LabelSpec(index=1, name="calcification")],
            thresholds={"score": 0.65},
        ),
    )
    out = tmp_path / "eval"
    report = evaluate_detector(
        package, cases, out, by=["site"], n_resamples=100, detector=_BrightSpotDetector()
    )
    # lesions: c0 mass hit 0.9, c1 calcification hit 0.4, c2 mass missed, c4 mass hit 0.8
    # FPs: c0 0.7, c3 0.6; 5 images. Curve: (0, 1/4) (0, 2/4) (.2, 2/4) (.4, 2/4) (.4, 3/4)
    assert report["n_lesions"] == 4 and report["n_cases"] == 5
    assert report["froc"]["sensitivities"] == pytest.approx([0.5, 0.75, 0.75, 0.75, 0.75])
    cpm = next(m for m in report["metrics"] if m["name"] == "cpm")
    assert cpm["value"] == pytest.approx(0.7) and cpm["low"] <= 0.7 <= cpm["high"]
    assert report["froc"]["ci"]["resampled"] == "patients"
    assert report["operating_point"] == {
        "threshold": 0.65,
        "sensitivity": pytest.approx(0.5),
        "fp_per_image": pytest.approx(0.2),
    }
    assert report["per_class"]["mass"]["n_lesions"] == 3
    assert report["per_class"]["calcification"]["sensitivities"] == [1.0] * 5
    site_a = report["subgroups"]["site=A"]  # c0 alone: its lesion hit above its one FP
    assert (site_a["n"], site_a["n_lesions"], site_a["value"]) == (1, 1, 1.0)
    assert not site_a["estimable"] and "fewer than 10 cases" in site_a["ci_note"]
    assert report["subgroups"]["site=B"]["value"] == pytest.approx(2 / 3)
    assert report["subgroups_without_lesions"] == [{"group": "site=C", "n": 1}]
    missed = [x for x in report["lesions"] if not x["detected"]]
    assert [(x["case_id"], x["class"]) for x in missed] == [("c2", "mass")]
    assert json.loads((out / "report.json").read_text())["metrics"][0]["name"] == "cpm"
    html = (out / "report.html").read_text()
    assert "sensitivity@0.25fp" in html and "data:image/png;base64," in html
    assert (out / "froc.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_detector_leaves_out_detections_on_difficult_annotations(tmp_path):
    from medsight.data.detection import Annotation

    difficult = Annotation(Region((30, 30), (4, 4)), "mass", {"difficult": "1"})
    cases = [
        _spot_case(
            0, [(10, 10, 0.9), (30, 30, 0.7)], [Box(8, 8, 12, 12, "mass"), difficult], "a", "A"
        ),
        _spot_case(1, [(20, 20, 0.6)], [], "b", "A"),
    ]
    package = types.SimpleNamespace(
        id="toy",
        spec=types.SimpleNamespace(labels=[LabelSpec(index=0, name="mass")], thresholds={}),
    )
    report = evaluate_detector(
        package, cases, tmp_path, n_resamples=20, detector=_BrightSpotDetector()
    )
    assert report["n_lesions"] == 1 and report["n_irrelevant_regions"] == 1
    assert report["froc"]["n_false_positives"] == 1 and report["froc"]["n_irrelevant"] == 1
    assert report["operating_point"] is None  # the package stores no operating threshold


def test_evaluate_detector_refuses_cases_without_box_truth(tmp_path):
    case = Case("c", images={"image": Image(np.zeros((4, 4)))}, label=1)
    package = types.SimpleNamespace(
        id="x", spec=types.SimpleNamespace(labels=[LabelSpec(index=0, name="m")], thresholds={})
    )
    with pytest.raises(InvalidInputError, match="no detection label"):
        evaluate_detector(package, [case], tmp_path, detector=_BrightSpotDetector())
