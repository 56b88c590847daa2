"""Subgroup CIs that cannot be estimated say so; group thresholds; mitigation comparison.

Independent references: Fairlearn's ``MetricFrame`` with scikit-learn's ``recall_score``
(per-group sensitivity) and ``roc_auc_score``.
"""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import MetricFrame, true_positive_rate
from sklearn.metrics import roc_auc_score

from medsight.evaluation.classification_eval import render_html
from medsight.evaluation.classification_report import subgroup_lines, subgroup_metrics
from medsight.evaluation.estimability import check_ci, subgroup_mean
from medsight.evaluation.fairness import compare_methods, fit_group_thresholds
from medsight.io.html import render


def _binary(y, p):
    p = np.asarray(p, dtype=float)
    return np.asarray(y), np.c_[1 - p, p]


def test_tiny_subgroup_reports_point_estimate_and_not_estimable():
    # F: 3 cases (1 positive); M: 30 cases, 15 positives, informative scores with overlap
    rng = np.random.default_rng(1)
    y_m = np.array([0, 1] * 15)
    p_m = np.clip(0.35 + 0.3 * y_m + rng.normal(0, 0.15, 30), 0, 1)
    y = np.r_[[0, 0, 1], y_m]
    p = np.r_[[0.2, 0.7, 0.9], p_m]
    sex = ["F"] * 3 + ["M"] * 30
    r = subgroup_metrics("binary", *_binary(y, p), sex, {"1": 0.5}, n_resamples=200)
    f = r["groups"]["F"]
    assert f["n"] == 3 and f["positives"] == 1
    for name in ("auc", "accuracy", "sensitivity", "specificity"):
        assert f[name]["estimable"] is False and f[name]["ci_low"] is None
        assert f[name]["ci_high"] is None and "n=3, positives=1" in f[name]["ci_note"]
    assert f["accuracy"]["value"] == pytest.approx(2 / 3)  # point estimate kept
    assert f["auc"]["value"] == pytest.approx(1.0)
    m = r["groups"]["M"]
    assert m["auc"]["estimable"] is True and m["auc"]["ci_note"] == ""
    assert m["auc"]["ci_low"] < m["auc"]["value"] < m["auc"]["ci_high"]
    assert m["auc"]["value"] == pytest.approx(roc_auc_score(y_m, p_m))
    assert r["gaps"] == {}  # F is too small for any gap
    page = render_html(
        {
            "model": "m", "data": "d", "split": "test", "n_cases": 33, "n_patients": 33,
            "task": "binary", "thresholds": {"1": 0.5}, "temperature": None,
            "bootstrap": {"n_resamples": 200}, "metrics": [], "calibration": {"ece": 0.1},
            "labels": ["0", "1"], "confusion_matrix": None, "subgroups": {"sex": r},
        },
        {},
    )  # fmt: skip
    assert "0.000 (0.000 to 0.000)" not in page
    assert "0.667 (not estimable (n=3, positives=1): fewer than 10 cases)" in page
    line = subgroup_lines({"sex": r})[0]
    assert "F (n=3) auc 1.000 [not estimable (n=3, positives=1" in line
    assert "M (n=30) auc" in line and "to" in line


def test_enough_cases_but_few_positives_blocks_only_class_metrics():
    y = np.array([1, 1] + [0] * 18)
    p = np.linspace(0.1, 0.9, 20)
    r = subgroup_metrics("binary", *_binary(y, p), ["F"] * 20, {"1": 0.5}, n_resamples=100)
    f = r["groups"]["F"]
    assert (
        f["sensitivity"]["estimable"] is False
        and "fewer than 5 positives" in (f["sensitivity"]["ci_note"])
    )
    assert f["auc"]["estimable"] is False
    assert f["specificity"]["estimable"] is True and f["accuracy"]["estimable"] is True


def test_zero_width_and_rarely_defined_bootstraps_are_not_estimable():
    assert "zero-width" in check_ci(40, low=1.0, high=1.0, n_valid=100, n_resamples=100).note
    assert "only 50 of 100" in check_ci(40, low=0.2, high=0.8, n_valid=50, n_resamples=100).note
    y = np.array([0, 1] * 10)
    r = subgroup_metrics("binary", *_binary(y, np.where(y, 0.9, 0.1)), ["F"] * 20, n_resamples=50)
    assert r["groups"]["F"]["auc"]["value"] == 1.0 and not r["groups"]["F"]["auc"]["estimable"]


def test_subgroup_means_for_segmentation_and_denoising_reports():
    small = subgroup_mean([0.9, 0.8], ["a", "b"], n_resamples=50)
    assert small["estimable"] is False and small["ci_low"] is None and "n=2" in small["ci_note"]
    rng = np.random.default_rng(0)
    big = subgroup_mean(rng.normal(0.8, 0.05, 30), [f"p{i // 2}" for i in range(30)])
    assert big["estimable"] and big["ci_low"] < big["value"] < big["ci_high"]
    assert big["patients"] == 15
    report = {
        "model": "m", "split": "test", "n_cases": 2, "tta": False, "metrics": [],
        "subgroups": {"site=a": {"dice": 0.85, **small}},
    }  # fmt: skip
    page = render("segmentation_eval.html.j2", r=report)
    assert "not estimable (n=2): fewer than 10 cases" in page and "site=a" in page


def _shifted(n=600, seed=0):
    """Scores where group F's positives score lower: a sensitivity gap at one threshold."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    score = 0.3 + 0.35 * y - 0.2 * ((sex == "F") & (y == 1)) + rng.normal(0, 0.1, n)
    return y, np.clip(score, 0, 1), sex


def test_group_thresholds_equalise_sensitivity_per_fairlearn():
    y, s, sex = _shifted()
    gt = fit_group_thresholds(y, s, sex, 0.5, attribute="sex", label="yes")
    assert gt.attribute == "sex" and gt.skipped == {}
    assert gt.target_sensitivity == pytest.approx(np.mean(s[y == 1] >= 0.5))
    d = np.array([s[i] >= gt.thresholds[sex[i]] for i in range(len(y))], dtype=int)
    tpr = MetricFrame(metrics=true_positive_rate, y_true=y, y_pred=d, sensitive_features=sex)
    for v in ("F", "M"):
        assert tpr.by_group[v] >= gt.target_sensitivity - 1e-12
        # the highest such threshold: any higher one misses the target
        mine = (sex == v) & (y == 1)
        above = s[mine][s[mine] > gt.thresholds[v]]
        assert len(above) / mine.sum() < gt.target_sensitivity
    before = MetricFrame(
        metrics=true_positive_rate, y_true=y, y_pred=(s >= 0.5).astype(int), sensitive_features=sex
    )
    assert before.difference() > 0.3 and tpr.difference() < 0.05


def test_small_group_keeps_the_global_threshold():
    y, s, sex = _shifted(200)
    sex = sex.astype(object)
    sex[:4] = "X"
    y[:4] = 1
    sex[4:6] = None
    gt = fit_group_thresholds(y, s, sex, 0.5, attribute="sex")
    assert "X" not in gt.thresholds and "needs 5 each" in gt.skipped["X"]
    assert set(gt.thresholds) == {"F", "M"} and gt.counts["X"]["positives"] == 4


def test_compare_methods_paired_change_and_not_estimable_gaps():
    y, s, sex = _shifted(800, seed=3)
    patients = [f"p{i // 2}" for i in range(len(y))]
    gt = fit_group_thresholds(y, s, sex, 0.5)
    d_group = np.array([s[i] >= gt.thresholds[sex[i]] for i in range(len(y))], dtype=int)
    methods = {"none": (s, (s >= 0.5).astype(int)), "group thresholds": (s, d_group)}
    r = compare_methods(y, methods, sex, patients, n_resamples=300, seed=0)
    assert r["groups"] == ["F", "M"] and r["gap_definition"] == "F minus M"
    gap = r["methods"]["none"]["sensitivity_gap"]
    f, m = (sex == "F") & (y == 1), (sex == "M") & (y == 1)
    assert gap["value"] == pytest.approx(np.mean(s[f] >= 0.5) - np.mean(s[m] >= 0.5))
    assert gap["ci_high"] < 0  # F is missed more often, and the CI shows it
    auc_gap = r["methods"]["none"]["auc_gap"]["value"]
    assert auc_gap == pytest.approx(roc_auc_score(y[sex == "F"], s[sex == "F"]) -
                                    roc_auc_score(y[sex == "M"], s[sex == "M"]))  # fmt: skip
    change = r["change_vs_none"]["group thresholds"]
    assert change["abs_sensitivity_gap"]["ci_high"] < 0  # the gap shrank, beyond the noise
    assert change["auc"]["value"] == 0.0 and not change["auc"]["estimable"]  # same scores
    # a group with 3 positives: its gaps are not estimable, and say why
    y2 = y.copy()
    y2[(sex == "F") & (y == 1)] = 0
    y2[np.flatnonzero(sex == "F")[:3]] = 1
    r2 = compare_methods(y2, methods, sex, patients, n_resamples=50)
    g2 = r2["methods"]["none"]["sensitivity_gap"]
    assert g2["estimable"] is False and g2["ci_low"] is None and "group F" in g2["ci_note"]
    assert r2["methods"]["none"]["specificity_gap"]["estimable"] is True


def test_subgroup_mean_leaves_out_undefined_values():
    r = subgroup_mean([0.5, float("nan")], ["a", "b"], n_resamples=10)
    assert r["value"] == 0.5 and r["n"] == 1 and r["n_undefined"] == 1 and not r["estimable"]
    assert subgroup_mean([float("nan")], ["a"])["value"] is None
