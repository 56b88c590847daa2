"""What the pages say beside a decision (issue 22, a new user's trial): the operating threshold,
the weak-model flag and reliability, a study no model is made for, the worklist's suspicion
without a probability, no caching of patient data, no server paths, and roles on the pages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medsight.core.codes import Code
from medsight.core.findings import Finding, FindingKind
from medsight.core.image import Image
from medsight.models import ModelPackage
from medsight.models.registry import build_network
from medsight.models.spec import LabelSpec, MetricValue, ModelSpec, Significance, Urgency
from medsight.reporting.report import Report, impression, write_report
from medsight.service import ServiceSettings, create_app
from medsight.service.store import Store
from medsight.service.worklist import assess, worklist

from .conftest import ADMIN_PASSWORD, add_user, login, wait_job

MALIGNANT = Code("malignant", "99TEST", "Malignant")


def _breast_like(folder: Path, *, group: dict | None = None) -> ModelPackage:
    """A binary package laid out like the zoo's BreastMNIST one: actionable class 0, the
    threshold stored on class 1 (0.948: malignant from about 0.052), weak validated metrics."""
    import torch

    from medsight.models.demo import demo_classifier

    base = demo_classifier(folder / "base", "tiny-breast").spec.model_dump()
    base["labels"] = [
        LabelSpec(
            index=0,
            name="malignant",
            significance=Significance.ACTIONABLE,
            urgency=Urgency.URGENT,
        ),
        LabelSpec(index=1, name="benign or normal", significance=Significance.BENIGN),
    ]
    base["thresholds"] = {"benign or normal": 0.948}
    base["metrics"] = [
        MetricValue(name="accuracy", value=0.6, ci_low=0.5, ci_high=0.7, split="test", n=50)
    ]
    if group is not None:
        base["group_thresholds"] = group
    spec = ModelSpec(**base)
    torch.manual_seed(0)
    return ModelPackage.save(folder / "pkg", spec, build_network(spec.architecture).state_dict())


def test_classification_finding_carries_the_threshold_of_its_own_label(tmp_path):
    from medsight.analysis.classification import analyze_classification
    from medsight.analysis.output import RunOptions

    pkg = _breast_like(tmp_path)
    rng = np.random.default_rng(0)
    image = Image(rng.normal(size=(16, 16)), spatial_ndim=2, modality="CT")
    (f,) = analyze_classification(pkg, image, RunOptions(explain=False)).findings
    assert f.finding.meaning.lower() == "malignant"
    assert f.threshold == pytest.approx(1 - 0.948)  # the malignant label's own threshold
    assert f.positive == (f.probability > 1 - 0.948) and f.weak_model and f.reliability
    group = {
        "attribute": "sex",
        "label": "benign or normal",
        "target_sensitivity": 0.9,
        "global_threshold": 0.948,
        "thresholds": {"F": 0.9},
    }
    grouped = _breast_like(tmp_path / "g", group=group)
    options = RunOptions(explain=False, attributes={"sex": "F"})
    (g,) = analyze_classification(grouped, image, options).findings
    assert g.threshold == pytest.approx(0.1) and "sex=F" in g.note
    unknown = RunOptions(explain=False, attributes={"sex": "M"})  # no group threshold: global
    assert analyze_classification(grouped, image, unknown).findings[0].threshold == (
        pytest.approx(1 - 0.948)
    )


def _finding(p: float, threshold: float | None, positive: bool = True) -> Finding:
    return Finding(
        MALIGNANT,
        "m",
        "1",
        kind=FindingKind.CLASSIFICATION,
        probability=p,
        positive=positive,
        threshold=threshold,
        significance="actionable",
        urgency="urgent",
    )


def test_every_decision_text_names_its_operating_threshold(tmp_path):
    from medsight.service.routes.cds_hooks import _summary

    f = _finding(0.06, 1 - 0.948)
    said = "probability 0.06, positive at the operating threshold 0.05"
    assert said in impression([f])
    assert assess([f]).flag_reason == f"flagged: Malignant ({said}, urgent)"
    assert _summary(f) == f"AI (preliminary): Malignant ({said}, urgent)"
    close = _finding(0.0518, 0.052, positive=False)  # both would print 0.05
    assert "probability 0.052, negative at the operating threshold 0.052" in impression([close])
    write_report(Report(input="study 1.2", findings=[f]), tmp_path)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "positive at the operating threshold 0.05" in html
    saved = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert saved["findings"][0]["threshold"] == pytest.approx(0.052)


def test_a_report_json_without_threshold_still_loads_and_says_nothing_of_it(tmp_path):
    write_report(Report(input="x", findings=[_finding(0.7, 0.5)]), tmp_path)
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    del data["findings"][0]["threshold"]  # written before findings carried one
    old = Report.model_validate(data)
    assert old.findings[0].threshold is None
    assert impression(old.findings) == "AI suggests: Malignant present (probability 0.70)."
    assert "operating threshold" not in assess(old.findings).flag_reason


def _ui_login(client: TestClient, username: str, password: str) -> None:
    resp = client.post("/ui/login", data={"username": username, "password": password})
    assert resp.status_code == 200 and "/ui/worklist" in str(resp.url), resp.text


@pytest.fixture
def breast_client(tmp_path):
    pkg = _breast_like(tmp_path / "packages")
    settings = ServiceSettings(
        home=tmp_path / "home",
        packages=[pkg.path],
        admin_password=ADMIN_PASSWORD,
        worker_poll_s=0.05,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_study_page_and_worklist_show_threshold_weak_model_and_reliability(breast_client, ct_bytes):
    client = breast_client
    admin = login(client)
    files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
    body = client.post("/api/studies", files=files, headers=admin).json()
    job = wait_job(client, admin, body["jobs"][0]["id"])
    uid = body["studies"][0]
    assert job["state"] == "done", job
    report = client.get(f"/api/jobs/{job['id']}/report", headers=admin).json()
    (f,) = report["findings"]
    assert f["threshold"] == pytest.approx(0.052) and f["positive"] and f["weak_model"]
    assert report["input"] == f"study {uid}"  # the study, not the server's folder
    html = client.get(f"/api/jobs/{job['id']}/files/report.html", headers=admin).text
    assert f"from study {uid}" in html and "/studies/" not in html
    _ui_login(client, "admin", ADMIN_PASSWORD)
    page = client.get(f"/ui/studies/{uid}").text
    row = page.split('id="findings"')[1].split("</table>")[0]
    assert "(weak model)" in row and f["reliability"] in row
    assert re.search(r"(positive|negative) at the operating threshold 0\.0\d+", row)
    listed = client.get("/ui/worklist").text
    assert "positive at the operating threshold 0.05" in listed


def test_empty_findings_table_says_no_findings(client, admin, ct_bytes):
    from medsight.service.worker import result_dir

    files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
    body = client.post("/api/studies", files=files, headers=admin).json()
    job = wait_job(client, admin, body["jobs"][0]["id"])
    path = result_dir(client.app.state.services.settings, job["id"]) / "report.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    report["findings"] = []  # every model withheld
    path.write_text(json.dumps(report), encoding="utf-8")
    _ui_login(client, "admin", ADMIN_PASSWORD)
    page = client.get(f"/ui/studies/{body['studies'][0]}").text
    assert 'id="no-findings">No findings.</p>' in page and 'id="findings"' not in page


def test_a_study_no_model_is_made_for_ends_done_saying_so(tmp_path, tiny_classifier, ct_bytes):
    us_only = tiny_classifier("tiny-us", modalities=("US",))
    settings = ServiceSettings(
        home=tmp_path / "home",
        packages=[us_only.path],
        admin_password=ADMIN_PASSWORD,
        worker_poll_s=0.05,
    )
    with TestClient(create_app(settings)) as client:
        admin = login(client)
        files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
        body = client.post("/api/studies", files=files, headers=admin).json()
        job = wait_job(client, admin, body["jobs"][0]["id"])
        assert (job["state"], job["error"]) == ("done", ""), job
        report = client.get(f"/api/jobs/{job['id']}/report", headers=admin).json()
        assert report["impression"].startswith("No model applies to this study")
        assert [(m["model_id"], m["status"]) for m in report["models"]] == [
            ("tiny-us@0.0.1", "skipped")
        ]
        assert (
            report["models"][0]["reason"]
            and report["models"][0]["reason"] in (report["impression"])
        )
        assert report["input"] == f"study {body['studies'][0]}"
        html = client.get(f"/api/jobs/{job['id']}/files/report.html", headers=admin).text
        assert "tiny-us@0.0.1</b> (skipped)" in html
        (item,) = client.get("/api/worklist", headers=admin).json()
        assert item["no_model"] and item["suspicion"] is None and job["suspicion"] is None
        _ui_login(client, "admin", ADMIN_PASSWORD)
        row = client.get("/ui/worklist").text.split("<tbody>")[1]
        assert '<td class="status">no model applies' in row and "failed" not in row
        assert '<td class="suspicion">—</td>' in row


def test_worklist_suspicion_is_a_dash_without_a_probability(tmp_path):
    store = Store("sqlite://")
    store.upsert_study("1.1", modalities="CT", urgency="routine")
    store.submit("1.1", ["m@1"], "1.1")  # queued: no probability yet
    store.upsert_study("1.2", modalities="CT", urgency="routine")
    job, _ = store.submit("1.2", ["m@1"], "1.2")
    store.claim("w")
    from medsight.service.worklist import job_columns

    store.finish(job.id, **job_columns([]))  # every model withheld: nothing to rank by
    store.upsert_study("1.3", modalities="CT", urgency="routine")
    job3, _ = store.submit("1.3", ["m@1"], "1.3")
    store.claim("w")
    store.finish(job3.id, **job_columns([_finding(0.004, 0.5, positive=False)]))
    items = {i.study_uid: i for i in worklist(store)}
    assert items["1.1"].suspicion is None and items["1.2"].suspicion is None
    assert items["1.3"].suspicion == pytest.approx(0.004)
    assert next(i.study_uid for i in worklist(store)) == "1.3"  # a probability ranks above none
    from medsight.io.html import render

    html = render(
        "medsight.service.viewer:worklist.html",
        user=None,
        items=list(items.values()),
        modality="",
        status="",
    )
    cells = re.findall(r'<td class="suspicion">([^<]*)</td>', html)
    assert sorted(cells) == sorted(["—", "—", "&lt;0.01"])
    assert "0.00" not in cells


def test_pages_and_patient_data_are_not_cached_static_assets_are(client, admin, ct_bytes):
    files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
    body = client.post("/api/studies", files=files, headers=admin).json()
    job = wait_job(client, admin, body["jobs"][0]["id"])
    _ui_login(client, "admin", ADMIN_PASSWORD)
    for url in (
        "/ui/worklist",
        f"/ui/studies/{body['studies'][0]}",
        "/ui/upload",
        "/api/worklist",
        f"/api/jobs/{job['id']}/report",
        f"/api/jobs/{job['id']}/files/report.html",
    ):
        resp = client.get(url, headers=admin)
        assert resp.status_code == 200, url
        assert resp.headers["cache-control"] == "no-store", url
        assert resp.headers["pragma"] == "no-cache", url
    css = client.get("/ui/static/viewer.css")
    assert css.status_code == 200 and "no-store" not in css.headers.get("cache-control", "")


def test_a_failed_analysis_names_the_study_not_its_folder(client, admin, pydicom_file):
    from medsight.service.worker import study_dir

    files = [("files", ("mr.dcm", pydicom_file("MR_small.dcm").read_bytes(), "application/dicom"))]
    body = client.post("/api/studies", files=files, headers=admin).json()
    uid = body["studies"][0]
    first = wait_job(client, admin, body["jobs"][0]["id"])
    for f in study_dir(client.app.state.services.settings, uid).rglob("*.dcm"):
        f.write_bytes(b"garbage")
    again, _ = client.app.state.services.store.submit(uid, first["packages"], "other")
    failed = wait_job(client, admin, again.id)
    assert failed["state"] == "failed" and failed["error"].startswith(f"study {uid}")
    assert "MEDSIGHT_HOME" not in failed["error"] and "/studies/" not in failed["error"]


def test_viewer_role_sees_no_upload_link_and_the_page_says_why(client, admin):
    add_user(client, admin, "vera", "viewer")
    _ui_login(client, "vera", "vera-password")
    nav = client.get("/ui/worklist").text.split("<nav>")[1].split("</nav>")[0]
    assert "/ui/upload" not in nav and "/ui/pacs" not in nav
    page = client.get("/ui/upload").text
    assert 'id="upload-denied"' in page and "needs the radiologist" in page
    assert 'id="drop"' not in page and "upload.js" not in page
    client.get("/ui/logout")
    _ui_login(client, "admin", ADMIN_PASSWORD)
    assert "/ui/upload" in client.get("/ui/worklist").text
    assert 'id="drop"' in client.get("/ui/upload").text
