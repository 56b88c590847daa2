"""Logout, worklist paging, the mask overlay endpoint, and the C-STORE SCP on its own."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medsight.core.image import Image
from medsight.io import write_image
from medsight.service import RoutingRule, create_app
from medsight.service.errors import DeliveryError
from medsight.service.pacs.dimse import echo, send_files
from medsight.service.worker import result_dir

from .conftest import login, wait_job
from .pacs_servers import free_port


def test_logout_revokes_the_token(client):
    headers = login(client)
    assert client.get("/api/me", headers=headers).status_code == 200
    assert client.post("/api/auth/logout", headers=headers).status_code == 200
    assert client.get("/api/me", headers=headers).status_code == 401


def test_worklist_paging(client, admin):
    store = client.app.state.services.store
    for i in range(5):
        store.upsert_study(f"1.2.{i}", modalities="CT")
    full = [i["study_uid"] for i in client.get("/api/worklist", headers=admin).json()]
    page = client.get("/api/worklist?limit=2&offset=1", headers=admin).json()
    assert [i["study_uid"] for i in page] == full[1:3]
    assert client.get("/api/worklist?limit=0", headers=admin).status_code == 422


def test_mask_overlay_slices(client, admin, settings):
    store = client.app.state.services.store
    store.upsert_study("1.2.3", modalities="CT")
    job, _ = store.submit("1.2.3", ["m@1"], "d")
    store.claim("w")
    mask = np.zeros((8, 6, 3), dtype=np.uint8)
    mask[2:4, 1:3, 1] = 1  # i = columns 2-3, j = rows 1-2, on slice 1 only
    write_image(Image(mask), result_dir(settings, job.id) / "mask_seg.nii.gz")
    url = f"/api/jobs/{job.id}/masks/1.png"
    assert client.get(url, headers=admin).status_code == 409  # not done yet
    store.finish(job.id)
    from io import BytesIO

    from PIL import Image as PILImage

    png = PILImage.open(BytesIO(client.get(url, headers=admin).content))
    rgba = np.asarray(png)
    assert png.mode == "RGBA" and rgba.shape == (6, 8, 4)
    assert sorted(zip(*np.nonzero(rgba[..., 3]), strict=True)) == [
        (1, 2),
        (1, 3),
        (2, 2),
        (2, 3),
    ]
    empty = PILImage.open(BytesIO(client.get(url.replace("1.png", "0.png"), headers=admin).content))
    assert np.asarray(empty)[..., 3].max() == 0
    assert client.get(url.replace("1.png", "7.png"), headers=admin).status_code == 400


def test_store_scp_queues_by_rule_and_checks_calling_ae(settings, pydicom_file):
    port = free_port()
    cfg = settings.model_copy(
        update={
            "dimse_port": port,
            "dimse_allowed_aes": ["MODALITY"],
            "dimse_settle_s": 0.1,
            "rules": [RoutingRule(description="no such study")],  # nothing matches: store only
        }
    )
    dest = f"MEDSIGHT@127.0.0.1:{port}"
    with TestClient(create_app(cfg)) as client:
        admin = login(client)
        assert echo(dest, calling_ae="MODALITY")
        with pytest.raises(DeliveryError, match="association rejected"):
            send_files(dest, [pydicom_file("CT_small.dcm")], calling_ae="INTRUDER")
        assert send_files(dest, [pydicom_file("CT_small.dcm")], calling_ae="MODALITY") == 1
        deadline = time.monotonic() + 10
        items: list = []
        while not items and time.monotonic() < deadline:
            items = client.get("/api/worklist", headers=admin).json()
            time.sleep(0.05)
        assert len(items) == 1 and items[0]["status"] == "new"  # stored, no rule matched
        uid = items[0]["study_uid"]
        assert client.get(f"/api/studies/{uid}", headers=admin).json()["source"] == "dimse"
        # a radiologist can still queue it by hand
        resp = client.post(f"/api/studies/{uid}/jobs", json={"study_uid": uid}, headers=admin)
        assert resp.status_code == 202
        assert wait_job(client, admin, resp.json()["id"])["state"] == "done"


def test_invalid_dicom_objects_are_held_back(tmp_path, pydicom_file, debian_tool):
    import pydicom

    from medsight.service.pacs.delivery import validated

    debian_tool("dciodvfy")
    good = tmp_path / "good.dcm"
    good.write_bytes(pydicom_file("CT_small.dcm").read_bytes())
    ds = pydicom.dcmread(good)
    del ds.Modality  # type 1 in every IOD
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad)
    ok, notes = validated([good, bad])
    assert bad not in ok and len(notes) == 1 and notes[0].startswith("bad.dcm held back")


def test_login_throttle_and_security_headers(client):
    for _ in range(5):
        resp = client.post("/api/auth/login", data={"username": "admin", "password": "guess-123"})
        assert resp.status_code == 401
    resp = client.post("/api/auth/login", data={"username": "admin", "password": "guess-123"})
    assert resp.status_code == 429 and "too many failed logins" in resp.json()["detail"]
    # the right password is refused too while the account is locked out
    from .conftest import ADMIN_PASSWORD

    locked = client.post("/api/auth/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert locked.status_code == 429
    page = client.get("/ui/login")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert client.get("/api/health").headers["x-content-type-options"] == "nosniff"


def test_scp_waits_for_the_whole_study_and_queues_it_once(settings, pydicom_file, tmp_path):
    import pydicom

    port = free_port()
    ct = pydicom_file("CT_small.dcm")
    second = tmp_path / "second.dcm"
    ds = pydicom.dcmread(ct)
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()  # another series of the same study
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(second)
    cfg = settings.model_copy(update={"dimse_port": port, "dimse_settle_s": 1.0})
    dest = f"MEDSIGHT@127.0.0.1:{port}"
    with TestClient(create_app(cfg)) as client:
        admin = login(client)
        assert send_files(dest, [ct]) == 1  # one series per association, as modalities do
        assert send_files(dest, [second]) == 1
        uid = ds.StudyInstanceUID
        deadline = time.monotonic() + 20
        while not (jobs := client.get(f"/api/studies/{uid}", headers=admin).json()["jobs"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        job = wait_job(client, admin, jobs[0]["id"])
        study = client.get(f"/api/studies/{uid}", headers=admin).json()
        assert study["n_files"] == 2 and len(study["jobs"]) == 1 and job["state"] == "done"


def test_received_but_unqueued_studies_are_queued_at_start(settings, pydicom_file):
    """A crash inside the settle time leaves a stored, recorded, unqueued study behind."""
    import pydicom

    from medsight.service.store import Store
    from medsight.service.worker import study_dir

    ct = pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(ct)
    uid = ds.StudyInstanceUID
    folder = study_dir(settings, uid) / ds.SeriesInstanceUID
    folder.mkdir(parents=True)
    (folder / f"{ds.SOPInstanceUID}.dcm").write_bytes(ct.read_bytes())
    store = Store(settings.resolved_database_url())
    store.upsert_study(uid, modalities="CT", source="dimse", n_files=1)
    assert store.studies_without_jobs(source="dimse") == [uid]
    store.engine.dispose()
    cfg = settings.model_copy(update={"dimse_port": free_port()})
    with TestClient(create_app(cfg)) as client:
        admin = login(client)
        jobs = client.get(f"/api/studies/{uid}", headers=admin).json()["jobs"]
        assert len(jobs) == 1
        assert wait_job(client, admin, jobs[0]["id"])["state"] == "done"


def test_a_rule_naming_an_unknown_package_stops_the_start(settings):
    cfg = settings.model_copy(
        update={"dimse_port": free_port(), "rules": [RoutingRule(packages=["typo@1"])]}
    )
    from medsight.core.errors import InvalidInputError

    app = create_app(cfg)
    with pytest.raises(InvalidInputError, match="unknown package id 'typo@1'"), TestClient(app):
        pass
