"""Classification metrics against scikit-learn 1.9 (sklearn.metrics), the independent reference."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from medsight.evaluation import classification as cm


@pytest.fixture
def binary():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(np.clip(y * 0.3 + rng.normal(0.4, 0.25, 300), 0, 1), 2)  # rounding makes ties
    return y, s


def test_auc_matches_sklearn_with_ties(binary):
    y, s = binary
    assert cm.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def test_roc_and_pr_curves_match_sklearn(binary):
    y, s = binary
    fpr, tpr, thr = cm.roc_curve(y, s)
    rf, rt, rthr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, rf)
    np.testing.assert_allclose(tpr, rt)
    np.testing.assert_allclose(thr[1:], rthr[1:])
    precision, recall, pthr = cm.pr_curve(y, s)
    rp, rr, rpthr = skm.precision_recall_curve(y, s, drop_intermediate=False)
    # sklearn orders by increasing threshold and appends (precision 1, recall 0)
    np.testing.assert_allclose(precision, rp[:-1][::-1])
    np.testing.assert_allclose(recall, rr[:-1][::-1])
    np.testing.assert_allclose(pthr, rpthr[::-1])


def test_decision_metrics_match_sklearn(binary):
    y, s = binary
    d = (s >= 0.55).astype(int)
    assert cm.accuracy(y, d) == pytest.approx(skm.accuracy_score(y, d))
    assert cm.sensitivity(y, d) == pytest.approx(skm.recall_score(y, d))
    assert cm.specificity(y, d) == pytest.approx(skm.recall_score(1 - y, 1 - d))
    assert cm.ppv(y, d) == pytest.approx(skm.precision_score(y, d))
    assert cm.npv(y, d) == pytest.approx(skm.precision_score(1 - y, 1 - d))
    assert cm.f1_score(y, d) == pytest.approx(skm.f1_score(y, d))
    tn, fp, fn, tp = skm.confusion_matrix(y, d).ravel()
    assert cm.binary_counts(y, d) == cm.BinaryCounts(tp=tp, fp=fp, tn=tn, fn=fn)


def test_youden_threshold_is_the_brute_force_optimum(binary):
    y, s = binary
    t = cm.youden_threshold(y, s)
    j = {u: skm.recall_score(y, s >= u) + skm.recall_score(1 - y, s < u) - 1 for u in np.unique(s)}
    assert j[t] == pytest.approx(max(j.values()))


def test_multiclass_macro_auc_and_kappa_match_sklearn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 5, 400)
    logits = rng.normal(size=(400, 5)) + 1.5 * np.eye(5)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref = skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert cm.macro_auc(y, p) == pytest.approx(ref, abs=1e-12)
    d = p.argmax(1)
    ref_k = skm.cohen_kappa_score(y, d, weights="quadratic")
    assert cm.quadratic_weighted_kappa(y, d, n_classes=5) == pytest.approx(ref_k, abs=1e-12)
    np.testing.assert_array_equal(cm.confusion_matrix(y, d, 5), skm.confusion_matrix(y, d))


def test_multilabel_macro_auc_matches_sklearn():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, (200, 4))
    p = np.clip(y * 0.4 + rng.uniform(0, 0.6, (200, 4)), 0, 1)
    assert cm.macro_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p, average="macro"))
    d = (p > 0.5).astype(int)
    assert cm.accuracy(y, d) == pytest.approx(skm.accuracy_score(y, d))  # subset accuracy


@pytest.mark.parametrize(
    "call",
    [
        lambda: cm.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]),
        lambda: cm.sensitivity([0, 0], [1, 0]),
        lambda: cm.npv([1, 1], [1, 1]),
        lambda: cm.quadratic_weighted_kappa([1, 1], [1, 1], n_classes=3),
        lambda: cm.roc_auc([0, 2], [0.1, 0.2]),
    ],
)
def test_undefined_metrics_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
