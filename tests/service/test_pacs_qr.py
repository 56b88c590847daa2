"""DIMSE query/retrieve through ``/api/pacs``: C-FIND studies, C-MOVE one to medsight's SCP.

The integration tests run against the real Orthanc of ``pacs_servers.py`` (Debian packages
orthanc and orthanc-dicomweb), which knows medsight as modality ``MEDSIGHT`` at the port its
C-STORE SCP listens on; the others need no server.
"""

from __future__ import annotations

import json
import time

import pydicom
import pytest
from fastapi.testclient import TestClient

from medsight.core.errors import InvalidInputError
from medsight.service import RoutingRule, ServiceSettings, create_app
from medsight.service.pacs.dimse import send_files
from medsight.service.pacs.qr import check_move_settings
from medsight.service.pacs.query import PacsSource, StudyQuery, choose_source
from medsight.service.settings import load_settings

from .conftest import ADMIN_PASSWORD, login

PEER = "PACS@127.0.0.1:1"  # nothing listens on port 1: a test that reaches it fails


def test_query_needs_a_criterion_that_is_not_only_wildcards():
    for empty in ({}, {"patient_id": "*"}, {"patient_name": "**?", "accession": " "}):
        with pytest.raises(ValueError, match="not only wildcards"):
            StudyQuery(**empty)
    assert StudyQuery(patient_name="DOE*").filters() == {"PatientName": "DOE*"}
    assert StudyQuery(accession="A12?").filters() == {"AccessionNumber": "A12?"}
    with pytest.raises(ValueError):
        StudyQuery(accession="A\\B")


def test_qr_peer_setting_is_validated(tmp_path):
    assert ServiceSettings(home=tmp_path, dimse_qr_peer=" ORTHANC@pacs:4242").dimse_qr_peer == (
        "ORTHANC@pacs:4242"
    )
    for bad in (
        "ORTHANC",
        "@pacs:4242",
        "A@pacs:0",
        "A@pacs:65536",
        "A@:4242",
        "TOO-LONG-AE-TITLE@h:1",
    ):
        with pytest.raises(ValueError, match="AE@host:port"):
            ServiceSettings(home=tmp_path, dimse_qr_peer=bad)
    file = tmp_path / "s.json"
    file.write_text(json.dumps({"home": str(tmp_path), "dimse_qr_peer": "pacs:4242"}))
    with pytest.raises(InvalidInputError, match="dimse_qr_peer"):
        load_settings(file)


def test_source_is_the_configured_one_or_asked_for(tmp_path):
    web, peer = "http://127.0.0.1:1/dicom-web", PEER
    none = ServiceSettings(home=tmp_path)
    with pytest.raises(InvalidInputError, match="no PACS is configured"):
        choose_source(none)
    dimse = none.model_copy(update={"dimse_qr_peer": peer})
    both = dimse.model_copy(update={"dicomweb_url": web})
    assert choose_source(dimse) == PacsSource.DIMSE
    assert choose_source(none.model_copy(update={"dicomweb_url": web})) == PacsSource.DICOMWEB
    assert choose_source(both) == PacsSource.DICOMWEB
    assert choose_source(both, "dimse") == PacsSource.DIMSE
    with pytest.raises(InvalidInputError, match="dicomweb_url"):
        choose_source(dimse, "dicomweb")
    with pytest.raises(InvalidInputError, match="dimse_qr_peer"):
        choose_source(none.model_copy(update={"dicomweb_url": web}), "dimse")


def test_missing_settings_are_refused_by_the_api(settings):
    with TestClient(create_app(settings.model_copy(update={"run_worker": False}))) as client:
        admin = login(client)
        uid = {"study_uid": "1.2.3.4"}
        resp = client.get("/api/pacs/studies?source=dimse&patient_id=x", headers=admin)
        assert resp.status_code == 400 and "dimse_qr_peer" in resp.json()["detail"]
        resp = client.post("/api/pacs/pull?source=dimse", json=uid, headers=admin)
        assert resp.status_code == 400 and "dimse_qr_peer" in resp.json()["detail"]
        resp = client.get("/api/pacs/studies", params={"patient_id": "*"}, headers=admin)
        assert resp.status_code == 422 and "wildcards" in resp.text
    peer_only = settings.model_copy(update={"run_worker": False, "dimse_qr_peer": PEER})
    with TestClient(create_app(peer_only)) as client:
        admin = login(client)
        resp = client.post("/api/pacs/pull", json=uid, headers=admin)  # DIMSE: the only one
        assert resp.status_code == 400 and "dimse_port" in resp.json()["detail"]
        assert "C-STORE SCP" in resp.json()["detail"]
        resp = client.post("/api/pacs/pull", json={**uid, "packages": ["x"]}, headers=admin)
        assert resp.status_code == 400 and "routing rules" in resp.json()["detail"]
        assert client.get("/api/pacs/pulls/nope", headers=admin).status_code == 404
    strict = peer_only.model_copy(update={"dimse_port": 1, "dimse_allowed_aes": ["CT01"]})
    with pytest.raises(InvalidInputError, match=r"dimse_allowed_aes.*'PACS'"):
        check_move_settings(strict)


def test_the_page_offers_the_source_when_both_are_configured(settings):
    def page(**update) -> str:
        cfg = settings.model_copy(update={"run_worker": False, **update})
        with TestClient(create_app(cfg)) as client:
            client.post("/ui/login", data={"username": "admin", "password": ADMIN_PASSWORD})
            resp = client.get("/ui/pacs")
            assert resp.status_code == 200
            return resp.text

    assert 'id="not-configured"' in page() and 'name="source"' not in page()
    dimse_only = page(dimse_qr_peer=PEER)
    assert 'id="not-configured"' not in dimse_only and 'name="source"' not in dimse_only
    both = page(dimse_qr_peer=PEER, dicomweb_url="http://127.0.0.1:1/dicom-web")
    assert 'name="source"' in both
    assert both.index('value="dicomweb"') < both.index('value="dimse"')  # the default first


def _study(pydicom_file, tmp_path, patient: str, date: str, n: int = 1, **more) -> list:
    """``n`` CT instances of one new study; ``more`` sets attributes per instance (lists)."""
    head = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    head.StudyInstanceUID = pydicom.uid.generate_uid()
    head.SeriesInstanceUID = pydicom.uid.generate_uid()
    head.PatientID, head.StudyDate = patient, date
    head.AccessionNumber = f"ACC{patient[-4:]}"
    files = []
    for i in range(n):
        head.SOPInstanceUID = head.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        head.InstanceNumber = i + 1
        for key, values in more.items():
            setattr(head, key, values[i])
        files.append(tmp_path / f"{patient}-{i}.dcm")
        head.save_as(files[-1])
    return files


def _qr_settings(settings, orthanc, **more):
    return settings.model_copy(
        update={
            "dimse_qr_peer": orthanc.aet,
            "dimse_port": orthanc.scp_port,
            "dimse_settle_s": 0.3,
            "push_results": False,
            **more,
        }
    )


def _wait_pull(client, headers, pull: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while pull["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, pull
        time.sleep(0.05)
        resp = client.get(f"/api/pacs/pulls/{pull['id']}", headers=headers)
        assert resp.status_code == 200, resp.text
        pull = resp.json()
    return pull


def _audit(settings) -> list[dict]:
    lines = (settings.home / "audit" / "service.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.integration
def test_c_find_then_c_move_a_study_queued_once(orthanc, settings, pydicom_file, tmp_path):
    files = _study(pydicom_file, tmp_path, "QR-DIMSE-1", "19790214", n=2)
    uid = pydicom.dcmread(files[0]).StudyInstanceUID
    assert send_files(orthanc.aet, files) == 2
    cfg = _qr_settings(settings, orthanc, dicomweb_url=orthanc.dicomweb)
    with TestClient(create_app(cfg)) as client:
        admin = login(client)

        def find(**params):
            resp = client.get("/api/pacs/studies", params=params, headers=admin)
            assert resp.status_code == 200, resp.text
            return resp.json()

        (row,) = find(source="dimse", patient_id="QR-DIMSE-1")
        assert row["study_uid"] == uid and row["modalities"] == ["CT"] and row["instances"] == 2
        assert row["date"] == "19790214" and row["local"] is False and row["job"] is None
        (web,) = find(source="dicomweb", patient_id="QR-DIMSE-1")  # the same row as QIDO-RS
        assert row == web
        assert [r["study_uid"] for r in find(source="dimse", date="19790213-19790215")] == [uid]
        assert find(source="dimse", date="1979-02-15-1979-03-01") == []
        assert [r["study_uid"] for r in find(source="dimse", accession="ACCSE-1")] == [uid]
        assert find(source="dimse", patient_id="QR-DIMSE-1", modality="MR") == []
        assert find(source="dimse", patient_id="nobody-here") == []

        resp = client.post("/api/pacs/pull?source=dimse", json={"study_uid": uid}, headers=admin)
        assert resp.status_code == 202, resp.text
        assert resp.json()["kind"] == "pull" and resp.json()["state"] in ("moving", "receiving")
        pull = _wait_pull(client, admin, resp.json())
        assert pull["state"] == "done", pull
        assert (pull["completed"], pull["failed"], pull["warning"], pull["received"]) == (
            2,
            0,
            0,
            2,
        )
        assert pull["job"] and pull["job"]["study_uid"] == uid
        study = client.get(f"/api/studies/{uid}", headers=admin).json()
        assert study["source"] == "dimse" and study["n_files"] == 2
        time.sleep(cfg.dimse_settle_s + 0.5)  # past the SCP's settle time: still one job
        store = client.app.state.services.store
        assert [j.id for j in store.jobs_for(uid)] == [pull["job"]["id"]]
        (row,) = find(source="dimse", patient_id="QR-DIMSE-1")
        assert row["local"] is True and row["job"]["id"] == pull["job"]["id"]

        # a second retrieve of the same content reuses the job the SCP queued
        resp = client.post("/api/pacs/pull?source=dimse", json={"study_uid": uid}, headers=admin)
        again = _wait_pull(client, admin, resp.json())
        assert again["state"] == "done" and again["job"]["id"] == pull["job"]["id"]

        # an unknown study is refused before any move, naming it
        unknown = "1.2.826.0.1.3680043.8.498.1"
        resp = client.post(
            "/api/pacs/pull", params={"source": "dimse"}, json={"study_uid": unknown}, headers=admin
        )
        assert resp.status_code == 404, resp.text
        assert unknown in resp.json()["detail"] and "not on the PACS" in resp.json()["detail"]
    events = [e for e in _audit(cfg) if e["action"] in ("query_pacs", "pull_study")]
    assert {e["inputs"]["source"] for e in events} == {"dimse", "dicomweb"}
    (first, _again) = [e["inputs"] for e in events if e["action"] == "pull_study"]
    assert first["study"] == uid and first["source"] == "dimse" and first["state"] == "done"
    assert (first["completed"], first["failed"], first["job"]) == (2, 0, pull["job"]["id"])


@pytest.mark.integration
def test_partial_move_is_an_error_and_keeps_what_arrived(orthanc, settings, pydicom_file, tmp_path):
    # Orthanc files the two instances under two patients (its study key is patient + UID);
    # medsight's SCP stores the first and refuses the second: one study holds one patient
    files = _study(
        pydicom_file, tmp_path, "QR-PART-1", "19790301", n=2, PatientID=["QR-PART-1", "QR-PART-2"]
    )
    uid = pydicom.dcmread(files[0]).StudyInstanceUID
    assert send_files(orthanc.aet, files) == 2
    cfg = _qr_settings(settings, orthanc, rules=[RoutingRule(modality="MR")])
    with TestClient(create_app(cfg)) as client:
        admin = login(client)
        both = {"patient_id": "QR-PART-*"}  # two Orthanc studies; past the limit, a C-CANCEL
        rows = client.get("/api/pacs/studies", params=both, headers=admin).json()
        assert sorted(r["patient_id"] for r in rows) == ["QR-PART-1", "QR-PART-2"]
        rows = client.get("/api/pacs/studies", params={**both, "limit": 1}, headers=admin).json()
        assert len(rows) == 1 and rows[0]["study_uid"] == uid
        resp = client.post("/api/pacs/pull", json={"study_uid": uid}, headers=admin)
        assert resp.status_code == 202, resp.text
        pull = _wait_pull(client, admin, resp.json())
        assert pull["state"] == "failed" and pull["job"] is None, pull
        assert pull["received"] == 1, pull  # Orthanc breaks the move off and reports 0 / 0
        assert uid in pull["error"] and "0 completed, 0 failed" in pull["error"]
        assert "1 instance(s) of it arrived here and are kept" in pull["error"]
        time.sleep(cfg.dimse_settle_s + 0.5)
        study = client.get(f"/api/studies/{uid}", headers=admin).json()
        assert study["n_files"] == 1 and study["source"] == "dimse"  # what arrived is kept


@pytest.mark.integration
def test_a_pacs_that_does_not_know_medsight_is_named(orthanc, settings):
    cfg = _qr_settings(settings, orthanc, ae_title="NOT-KNOWN", run_worker=False)
    with TestClient(create_app(cfg)) as client:
        admin = login(client)
        resp = client.get("/api/pacs/studies", params={"patient_id": "QR-*1"}, headers=admin)
        assert resp.status_code == 502, resp.text
        assert orthanc.aet in resp.json()["detail"] and "'NOT-KNOWN'" in resp.json()["detail"]


@pytest.mark.integration
def test_query_page_searches_and_retrieves_over_dimse(
    tmp_path, tiny_package, orthanc, pydicom_file, debian_tool
):
    from .test_ui_upload_query import _logged_in_page, _serve
    from .test_viewer import _wait

    files = _study(pydicom_file, tmp_path, "QR-UI-DIMSE", "19790412")
    assert send_files(orthanc.aet, files) == 1
    env = {
        "MEDSIGHT_DICOMWEB_URL": orthanc.dicomweb,
        "MEDSIGHT_DIMSE_QR_PEER": orthanc.aet,
        "MEDSIGHT_DIMSE_PORT": str(orthanc.scp_port),
        "MEDSIGHT_DIMSE_SETTLE_S": "0.3",
        "MEDSIGHT_PUSH_RESULTS": "false",
    }
    with (
        _serve(tmp_path / "home", [tiny_package.path], **env) as base,
        _logged_in_page(debian_tool, base) as page,
    ):
        page.goto(f"{base}/ui/pacs")
        page.select_option("#query select[name=source]", "dimse")
        page.fill("#query input[name=patient_id]", "QR-UI-DIMSE")
        page.click("#query button[type=submit]")
        _wait(page, "document.getElementById('query').dataset.searched === '1'")
        rows = page.locator("#pacs-studies tbody tr")
        assert rows.count() == 1 and "19790412" in rows.first.inner_text()
        rows.first.locator("button.retrieve").click()
        _wait(
            page,
            "document.querySelector('#pacs-studies .job-state').textContent"
            ".includes('analysis done')",
            timeout=60,
        )
        assert rows.first.locator("a.open").count() == 1
