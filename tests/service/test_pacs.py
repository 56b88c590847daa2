"""PACS round trips against a real Orthanc: DICOMweb pull / STOW back, C-STORE SCP / SCU, C-ECHO.

Marked ``integration``; they need the Debian packages orthanc and orthanc-dicomweb.
"""

from __future__ import annotations

import io
import time

import highdicom as hd
import httpx
import pydicom
import pytest
from fastapi.testclient import TestClient

from medsight.service import RoutingRule, create_app
from medsight.service.pacs.dicomweb import search_series, search_studies
from medsight.service.pacs.dimse import echo, send_files

from .conftest import login, wait_job

pytestmark = pytest.mark.integration

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _series_modalities(url: str, study_uid: str) -> set[str]:
    return {s["00080060"]["Value"][0] for s in search_series(url, study_uid)}


def test_dicomweb_pull_analyse_and_stow_back(orthanc, settings, pydicom_file):
    ct = pydicom_file("CT_small.dcm")
    study_uid = pydicom.dcmread(ct).StudyInstanceUID
    assert echo(orthanc.aet)
    assert send_files(orthanc.aet, [ct]) == 1  # a modality pushes the study to the PACS
    found = search_studies(orthanc.dicomweb, StudyInstanceUID=study_uid)
    assert len(found) == 1
    cfg = settings.model_copy(update={"dicomweb_url": orthanc.dicomweb})
    with TestClient(create_app(cfg)) as client:
        admin = login(client)
        resp = client.post("/api/pacs/pull", json={"study_uid": study_uid}, headers=admin)
        assert resp.status_code == 202, resp.text
        job = wait_job(client, admin, resp.json()["id"])
        assert job["state"] == "done", job
        assert job["delivery"].startswith("STOW-RS: 2 object(s) stored"), job["delivery"]
        study = client.get(f"/api/studies/{study_uid}", headers=admin).json()
        assert study["source"] == "dicomweb" and study["n_files"] == 1
    assert {"CT", "SR", "OT"} <= _series_modalities(orthanc.dicomweb, study_uid)
    # the SR is retrievable from the PACS and parses as a TID 1500 report on the same study
    from dicomweb_client.api import DICOMwebClient

    web = DICOMwebClient(url=orthanc.dicomweb)
    sr_series = [
        s["0020000E"]["Value"][0]
        for s in search_series(orthanc.dicomweb, study_uid)
        if s["00080060"]["Value"][0] == "SR"
    ]
    (sr,) = web.retrieve_series(study_uid, sr_series[0])
    assert sr.SOPClassUID == COMPREHENSIVE_3D_SR and sr.StudyInstanceUID == study_uid
    buf = io.BytesIO()
    sr.save_as(buf)
    parsed = hd.sr.srread(io.BytesIO(buf.getvalue()))
    assert parsed.content.get_image_measurement_groups()


def test_orthanc_sends_over_dimse_and_results_come_back(
    orthanc, settings, pydicom_file, tiny_package, seg_package, debian_tool, tmp_path
):
    mr = pydicom_file("MR_small.dcm")
    study_uid = pydicom.dcmread(mr).StudyInstanceUID
    orthanc_id = httpx.post(f"{orthanc.url}/instances", content=mr.read_bytes()).json()[
        "ParentStudy"
    ]
    cfg = settings.model_copy(
        update={
            "dimse_port": orthanc.scp_port,
            "dimse_destination": orthanc.aet,
            "dimse_settle_s": 0.3,
            "packages": [tiny_package.path, seg_package.path],
            "rules": [
                RoutingRule(modality="CT", packages=[seg_package.id]),
                RoutingRule(modality="MR", urgency="stat"),
            ],
        }
    )
    with TestClient(create_app(cfg)) as client:
        admin = login(client)
        assert client.post("/api/pacs/echo", headers=admin).json()["ok"] is True
        ping = httpx.post(f"{orthanc.url}/modalities/medsight/echo", content=b"{}", timeout=20)
        assert ping.status_code == 200  # Orthanc's C-ECHO reaches medsight's SCP
        sent = httpx.post(
            f"{orthanc.url}/modalities/medsight/store", content=orthanc_id.encode(), timeout=30
        )
        assert sent.status_code == 200, sent.text
        deadline = time.monotonic() + 30
        items = []
        while time.monotonic() < deadline and not (items and items[0]["job_id"]):
            items = client.get("/api/worklist?modality=MR", headers=admin).json()
            time.sleep(0.1)
        assert items and items[0]["study_uid"] == study_uid and items[0]["urgency"] == "stat"
        job = wait_job(client, admin, items[0]["job_id"])
        assert job["state"] == "done", job
        assert job["packages"] == sorted([tiny_package.id, seg_package.id])
        # SEG + SR + one secondary capture per model
        assert job["delivery"].startswith("C-STORE: 4 object(s) sent"), job["delivery"]
    series = httpx.get(f"{orthanc.url}/studies/{orthanc_id}/series?expand").json()
    by_modality = {s["MainDicomTags"]["Modality"]: s for s in series}
    assert {"MR", "SEG", "SR", "OT"} <= set(by_modality)
    # the SEG in the PACS is a valid segmentation of the MR it came from
    seg_instance = by_modality["SEG"]["Instances"][0]
    data = httpx.get(f"{orthanc.url}/instances/{seg_instance}/file").content
    seg = hd.seg.segread(io.BytesIO(data))
    assert seg.StudyInstanceUID == study_uid
    source = seg.get_source_image_uids()
    assert source and source[0][0] == study_uid
    assert seg.get_segment_numbers()
    # and what the PACS holds passes dciodvfy, SEG and SR alike
    from medsight.reporting.validate import dciodvfy_errors

    debian_tool("dciodvfy")
    for modality in ("SEG", "SR"):
        instance = by_modality[modality]["Instances"][0]
        file = tmp_path / f"{modality}.dcm"
        file.write_bytes(httpx.get(f"{orthanc.url}/instances/{instance}/file").content)
        assert dciodvfy_errors(file) == [], modality
