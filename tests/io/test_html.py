"""The shared Jinja helper: packaged templates, autoescaping, strict names, atomic writes."""

from __future__ import annotations

import jinja2
import pytest

from medsight.evaluation.classification_eval import render_html
from medsight.io.html import environment, render, template_names, write_html


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


EVIL = "<script>alert(1)</script>"  # a name or value from outside, in every page


def _index_page(tmp_path) -> str:
    from medsight.reporting.report import write_index

    row = {"folder": "s1", "study_instance_uid": "1.2", "patient_id": EVIL, "status": "analysed",
           "impression": "i", "error": ""}  # fmt: skip
    return write_index([row], tmp_path)[1].read_text("utf-8")


def _report_page(tmp_path) -> str:
    from medsight.reporting.report import Report, write_report

    return write_report(Report(input=EVIL, impression=EVIL), tmp_path)[1].read_text("utf-8")


def _viewer(name: str, tmp_path, **context) -> str:
    from types import SimpleNamespace as NS

    user = NS(username=EVIL, role=NS(value="radiologist"))
    return render(f"medsight.service.viewer:{name}", user=user, **context)


def _study_page(tmp_path) -> str:
    import json
    from types import SimpleNamespace as NS

    from medsight.reporting.report import Report, write_report

    report = json.loads(write_report(Report(input="x", impression=EVIL), tmp_path)[0].read_text())
    study = NS(uid="1.2", description="", patient_id="P", modalities="CT")
    job = NS(id="j1", state="done", error="")
    return _viewer("study.html", tmp_path, study=study, job=job, report=report, has_mask=False,
                   verdicts={})  # fmt: skip


def _worklist_page(tmp_path) -> str:
    import datetime
    from types import SimpleNamespace as NS

    item = NS(flagged=True, unknown_significance=False, flag_reason=EVIL, priority="stat",
              urgency="stat", suspicion=0.5, patient_id="P", modalities="CT", description="",
              study_uid="1.2", status="done", reviewed=False,
              received=datetime.datetime(2026, 1, 1))  # fmt: skip
    return _viewer("worklist.html", tmp_path, items=[item], modality="", status="")


def _qc_page(tmp_path) -> str:
    from types import SimpleNamespace as NS

    r = NS(dataset=EVIL, n_cases=1, task="t", n_unreadable=0, severities={}, counts={"k": 1})
    fp = NS(median_shape=(1, 1), median_spacing=(1.0, 1.0), orientations={}, dtypes={})
    finding = {"severity": "error", "kind": "k", "message": EVIL, "files": ["a", "b"], "more": 0,
               "strip": None}  # fmt: skip
    return render("qc.html.j2", r=r, fp=fp, plots=[], findings=[finding])


def _synth_report(model: str) -> dict:
    memo = {"n": 1, "quantiles": {"median": 0.5}, "near_copy_fraction": 0.0}
    return {"model": model, "n_synthetic": 1, "n_cases": 1, "split": "test", "n_train": 1,
            "sampling": {"sampler": "DDIM", "steps": 2, "seed": 0}, "encoder": "e",
            "metrics": [{"name": "frechet_distance", "value": 1.0, "low": 0.5, "high": 2.0}],
            "memorisation": {"measure": "r", "threshold": 0.95, "synthetic": memo,
                             "real_heldout": memo},
            "per_class": {"a": {"n_real": 1, "n_synthetic": 1}}, "notes": []}  # fmt: skip


def _detection_page(tmp_path) -> str:
    froc = {"n_detected": 1, "n_false_positives": 2, "n_irrelevant": 0,
            "ci": {"cpm": {"n_resamples": 10}, "resampled": "images"}}  # fmt: skip
    metric = {"name": "cpm", "value": 0.5, "low": 0.4, "high": 0.6, "n_valid": 10}
    group = {"n": 2, "n_lesions": 1, "value": 0.5, "estimable": False, "ci_note": EVIL}
    r = {"model": EVIL, "split": "test", "n_cases": 2, "n_lesions": 1, "froc": froc,
         "n_irrelevant_regions": 0, "hit_rule": "centre inside", "metrics": [metric],
         "operating_point": None, "per_class": {}, "fp_rates": [1], "subgroups": {"F": group},
         "subgroups_without_lesions": []}  # fmt: skip
    return render("detection_eval.html.j2", r=r, froc_png="")


def _risk_page(tmp_path) -> str:
    metric = {"name": "auc", "value": 0.7, "ci_low": 0.6, "ci_high": 0.8, "n": 9}
    report = {"model": EVIL, "target": "survival", "survival": False, "split": "test",
              "patients": 9, "excluded": {"no outcome": 1}, "n_resamples": 10,
              "metrics": [metric], "subgroups": {}, "permutation_importance": []}  # fmt: skip
    return render("risk_eval.html.j2", report=report, plots={"importance": ""}, metric="auc")


PAGES = {
    "detection_eval.html.j2": _detection_page,
    "risk_eval.html.j2": _risk_page,
    "classification_eval.html.j2": lambda tmp: render_html(_report(EVIL), {}),
    "qc.html.j2": _qc_page,
    "segmentation_eval.html.j2": lambda tmp: render(
        "segmentation_eval.html.j2",
        r={"model": EVIL, "split": "test", "n_cases": 1, "tta": False, "metrics": []},
    ),
    "synth_eval.html.j2": lambda tmp: render("synth_eval.html.j2", r=_synth_report(EVIL)),
    "denoise_eval.html.j2": lambda tmp: render(
        "denoise_eval.html.j2",
        r={
            "model": EVIL,
            "split": "test",
            "n_cases": 1,
            "noise": {"model": "rician", "levels": [5], "seed": 0},
            "conventions": "",
            "metrics": [],
            "subgroups": {},
            "figure": None,
        },
    ),
    "medsight.reporting:index.html.j2": _index_page,
    "medsight.reporting:report.html.j2": _report_page,
    "medsight.service.viewer:base.html": lambda tmp: _viewer("base.html", tmp),
    "medsight.service.viewer:login.html": lambda tmp: render(
        "medsight.service.viewer:login.html", user=None, error=EVIL
    ),
    "medsight.service.viewer:study.html": _study_page,
    "medsight.service.viewer:worklist.html": _worklist_page,
    "medsight.service.viewer:upload.html": lambda tmp: _viewer(
        "upload.html", tmp, max_bytes=1, max_mib=1
    ),
    "medsight.service.viewer:pacs.html": lambda tmp: _viewer(
        "pacs.html", tmp, configured=True, sources=["dicomweb", "dimse"]
    ),
    "medsight.service.viewer:analyse_button.html": lambda tmp: _viewer(
        "analyse_button.html", tmp, study={"uid": EVIL}
    ),
    "medsight.service.viewer:account.html": lambda tmp: _viewer(
        "account.html", tmp, is_admin=True, policy=EVIL, roles=["viewer", "admin"]
    ),
}
PACKAGES = ["medsight.io", "medsight.reporting", "medsight.service.viewer"]


def test_every_packaged_template_is_covered():
    shipped = [name for package in PACKAGES for name in template_names(package)]
    assert sorted(shipped) == sorted(PAGES)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_template_renders_through_the_one_environment_escaped(name, tmp_path):
    env = environment()
    assert env.autoescape is True and env.undefined is jinja2.StrictUndefined
    env.get_template(name)  # loads (and its {% extends %} resolves) through the one loader
    page = PAGES[name](tmp_path)
    if name.endswith("base.html"):
        assert "<script" not in page and "&lt;script&gt;" in page  # the user's name
    else:
        assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_names_resolve_in_their_package_and_nothing_else_builds_an_environment():
    from pathlib import Path

    import medsight

    with pytest.raises(jinja2.TemplateNotFound):
        render("report.html.j2", r={})  # a bare name is medsight.io's, not the reporting one
    with pytest.raises(jinja2.TemplateNotFound):
        render("medsight.reporting:../report.py")
    page = render("medsight.service.viewer:login.html", user=None, error="")
    assert page.startswith("<!doctype html>") and "Log in" in page  # extends base.html beside it
    with pytest.raises(jinja2.UndefinedError):
        render("medsight.service.viewer:login.html", error="")  # strict: user must be passed
    src = Path(medsight.__file__).parent
    others = [p for p in src.rglob("*.py") if "jinja2" in p.read_text("utf-8")]
    assert others == [src / "io" / "html.py"]
