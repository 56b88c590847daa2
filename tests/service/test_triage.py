"""Triage by the clinical meaning of labels: benign and normal never flag, actionable findings
raise a study to their urgency, and the worklist says why a study is flagged."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from medsight.analysis.pipeline import AnalysisResult
from medsight.core.codes import Code
from medsight.core.findings import Finding, FindingKind
from medsight.models.spec import LabelSpec, ModelSpec
from medsight.reporting.report import Report
from medsight.service import create_app
from medsight.service.store import Store
from medsight.service.worklist import assess, worklist

from .conftest import ADMIN_PASSWORD, login, wait_job

ZOO = Path(__file__).resolve().parents[2] / "src" / "medsight" / "zoo"


def _label(package: str, name: str) -> tuple[ModelSpec, LabelSpec]:
    spec = ModelSpec.model_validate_json((ZOO / package / "model.json").read_text())
    return spec, next(lab for lab in spec.labels if lab.name == name)


def _finding(package: str, name: str, probability: float, positive: bool = True) -> Finding:
    """A classification finding of a zoo package's label, as the runner builds it."""
    spec, lab = _label(package, name)
    assert lab.code is not None
    return Finding(
        lab.code,
        spec.name,
        spec.version,
        kind=FindingKind.CLASSIFICATION,
        probability=probability,
        positive=positive,
        note=lab.name,
        significance=lab.significance,
        urgency=lab.urgency,
    )


def _study(store: Store, uid: str, urgency: str, findings: list[Finding]) -> None:
    store.upsert_study(uid, modalities="US", urgency=urgency)
    job, _ = store.submit(uid, ["m@1"], uid)
    store.claim("w")
    store.finish(job.id, **dataclasses.asdict(assess(findings)))


def test_benign_and_no_retinopathy_sort_below_an_urgent_malignancy():
    store = Store("sqlite://")
    # oldest and most "probable" first: the old any-positive rule put these on top
    _study(store, "1.1", "routine", [_finding("breastmnist-smallcnn", "benign or normal", 0.99)])
    _study(
        store,
        "1.2",
        "routine",
        [_finding("retinamnist-smallcnn", "DR grade 0 (no diabetic retinopathy)", 0.98)],
    )
    _study(store, "1.3", "urgent", [_finding("breastmnist-smallcnn", "malignant", 0.91)])
    items = worklist(store)
    assert [i.study_uid for i in items] == ["1.3", "1.1", "1.2"]
    top, benign, normal = items
    assert top.flagged and top.priority == "urgent" and top.suspicion == 0.91
    assert top.flag_reason == "flagged: Malignant (probability 0.91, urgent)"
    for item in (benign, normal):
        assert not item.flagged and not item.unknown_significance
        assert item.suspicion == 0.0 and item.flag_reason == ""


def test_urgent_finding_ranks_a_routine_order_above_routine_studies_without_findings():
    store = Store("sqlite://")
    _study(store, "2.1", "routine", [])  # oldest
    _study(store, "2.2", "routine", [_finding("breastmnist-smallcnn", "malignant", 0.3, False)])
    _study(store, "2.3", "routine", [_finding("pneumoniamnist-smallcnn", "pneumonia", 0.8)])
    _study(store, "2.4", "urgent", [])
    _study(store, "2.5", "stat", [])
    items = worklist(store)
    # stat order, then the pneumonia (urgent finding, flagged) above the urgent order without
    # findings, then routine: a not-positive malignancy probability still orders by suspicion
    assert [i.study_uid for i in items] == ["2.5", "2.3", "2.4", "2.2", "2.1"]
    assert items[1].priority == "urgent" and items[1].urgency == "routine"
    assert items[3].suspicion == 0.3 and not items[3].flagged


def test_moderate_retinopathy_flags_at_routine_urgency():
    t = assess([_finding("retinamnist-smallcnn", "DR grade 2 (moderate)", 0.6)])
    assert (t.flagged, t.flag_urgency) == (True, "routine")
    mild = assess([_finding("retinamnist-smallcnn", "DR grade 1 (mild)", 0.6)])
    assert not mild.flagged and mild.suspicion == 0.0


def test_unknown_significance_is_shown_below_flags_and_above_nothing():
    def unstated(p: float) -> Finding:  # a package made before labels carried their meaning
        return Finding(
            Code("old-1", "99MEDSIGHT", "c1"),
            "old",
            "1",
            kind=FindingKind.CLASSIFICATION,
            probability=p,
            positive=True,
            note="c1",
        )

    t = assess([unstated(0.7)])
    assert not t.flagged and t.unknown_significance and t.suspicion == 0.7
    assert t.flag_reason.startswith("unknown significance: ")
    store = Store("sqlite://")
    _study(store, "3.1", "routine", [])
    _study(store, "3.2", "routine", [unstated(0.7)])
    _study(store, "3.3", "routine", [_finding("breastmnist-smallcnn", "malignant", 0.6)])
    _study(store, "3.4", "routine", [_finding("adrenalmnist3d-smallcnn", "adrenal mass", 0.9)])
    # urgent malignancy; then at routine: the adrenal mass flag, unknown significance, nothing
    assert [i.study_uid for i in worklist(store)] == ["3.3", "3.4", "3.2", "3.1"]


def test_anatomy_and_lesion_segmentations():
    def seg(package: str, name: str) -> Finding:
        spec, lab = _label(package, name)
        assert lab.code is not None
        return Finding(
            lab.code, spec.name, spec.version, significance=lab.significance, urgency=lab.urgency
        )

    hippo = assess(
        [seg("hippocampus-dynunet", "anterior"), seg("hippocampus-dynunet", "posterior")]
    )
    assert hippo == type(hippo)()  # anatomy: nothing to triage
    lesion = assess([seg("busi-lesion-dynunet", "lesion")])
    assert lesion.flagged and lesion.flag_urgency == "routine"
    assert lesion.flag_reason == "flagged: Lesion (segmented, routine)"


def test_flag_reason_in_the_worklist_api(settings, ct_bytes):
    malignant = _finding("breastmnist-smallcnn", "malignant", 0.91)

    def analyse(study, out, packages):
        out.mkdir(parents=True, exist_ok=True)
        report = Report(input=str(study), findings=[malignant], impression="AI suggests: ...")
        return AnalysisResult(report=report, out_dir=out, dicom_errors={})

    from fastapi.testclient import TestClient

    with TestClient(create_app(settings, analyse=analyse, deliver=lambda job, path: "")) as client:
        admin = login(client)
        files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
        body = client.post("/api/studies", files=files, headers=admin).json()
        job = wait_job(client, admin, body["jobs"][0]["id"])
        assert job["flagged"] and job["flag_urgency"] == "urgent"
        (item,) = client.get("/api/worklist", headers=admin).json()
        assert item["flagged"] and item["priority"] == "urgent" and item["urgency"] == "routine"
        assert item["flag_reason"] == "flagged: Malignant (probability 0.91, urgent)"
        form = {"username": "admin", "password": ADMIN_PASSWORD}
        page = client.post("/ui/login", data=form)  # follows to the worklist page
        assert page.status_code == 200 and 'id="worklist"' in page.text
        assert "FLAGGED" in page.text and "Malignant (probability 0.91, urgent)" in page.text


def test_a_database_from_before_triage_gains_the_new_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    store.upsert_study("4.1", modalities="CT")
    job, _ = store.submit("4.1", ["m@1"], "d")
    store.engine.dispose()
    with sqlite3.connect(tmp_path / "old.db") as con:  # the jobs table as older versions made it
        for col in ("flag_urgency", "flag_reason", "unknown_significance"):
            con.execute(f"ALTER TABLE jobs DROP COLUMN {col}")
        for table in ("alembic_version", "workers", "seg_edits"):  # older versions had none
            con.execute(f"DROP TABLE {table}")
    store = Store(url)
    store.claim("w")
    assert store.finish(job.id, worker="w", flagged=True, flag_reason="flagged: x")
    (item,) = worklist(store)
    assert item.flag_reason == "flagged: x" and item.flag_urgency == ""
