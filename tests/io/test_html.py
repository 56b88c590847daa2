"""The shared Jinja helper: packaged templates, autoescaping, strict names, atomic writes."""

from __future__ import annotations

import jinja2
import pytest

from medsight.evaluation.classification_eval import render_html
from medsight.io.html import render, write_html


def _report(model: str) -> dict:
    metric = {"name": "auc<b>", "value": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n": 3}
    return {
        "model": model, "data": "d", "split": "test", "n_cases": 3, "n_patients": 2,
        "task": "binary", "thresholds": {"a": 0.5}, "temperature": 1.0,
        "bootstrap": {"n_resamples": 10}, "metrics": [metric], "calibration": {"ece": 0.1},
        "labels": ["neg", "pos"], "confusion_matrix": [[1, 0], [1, 1]],
        "subgroups": {"sex": {"groups": {"F": {"n": 2, "auc": metric}, "M": {"n": 1}},
                              "gaps": {"auc": 0.2}}},
    }  # fmt: skip


def test_classification_page_escapes_and_keeps_its_content():
    page = render_html(_report("<script>x</script>"), {"roc.png": b"abc"})
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "auc&lt;b&gt;" in page and "0.900 (0.800 to 0.950)" in page
    assert "Subgroups by sex" in page and "Largest gap between groups: auc 0.200" in page
    assert "<td>-</td>" in page and page.count("data:image/png;base64,YWJj") == 1


def test_unknown_names_fail_and_writes_are_whole(tmp_path):
    with pytest.raises(jinja2.UndefinedError):
        render("segmentation_eval.html.j2", r={})
    report = {"model": "m", "split": "test", "n_cases": 1, "tta": False, "metrics": []}
    path = write_html(tmp_path / "report.html", "segmentation_eval.html.j2", r=report)
    assert "mirror TTA off" in path.read_text() and list(tmp_path.iterdir()) == [path]
