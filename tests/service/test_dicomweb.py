"""The DICOMweb front (QIDO-RS, WADO-RS, STOW-RS) of the service's store, with httpx.

One module-scoped service holds an MR study analysed by a tiny segmentation package (so its
DICOMweb study also holds the DICOM SEG and SR that job wrote) and a CT study of another
patient.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset

from medsight.service import ServiceSettings, create_app
from medsight.service.dicomweb.multipart import read_parts, write_parts

from .conftest import ADMIN_PASSWORD, add_user, login, wait_job

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
EVLE = "1.2.840.10008.1.2.1"


@pytest.fixture(scope="module")
def world(tmp_path_factory, seg_package, pydicom_file):
    home = tmp_path_factory.mktemp("dicomweb") / "home"
    settings = ServiceSettings(
        home=home, packages=[seg_package.path], admin_password=ADMIN_PASSWORD, worker_poll_s=0.05
    )
    with TestClient(create_app(settings)) as client:
        admin = login(client)
        mr = pydicom_file("MR_small.dcm").read_bytes()
        ct = pydicom_file("CT_small.dcm").read_bytes()
        files = [("files", ("mr.dcm", mr, "application/dicom"))]
        body = client.post("/api/studies", files=files, headers=admin).json()
        job = wait_job(client, admin, body["jobs"][0]["id"], timeout=120)
        assert job["state"] == "done", job
        files = [("files", ("ct.dcm", ct, "application/dicom"))]
        ct_study = client.post(
            "/api/studies", files=files, headers=admin, params={"analyse": "false"}
        ).json()["studies"][0]
        viewer = add_user(client, admin, "vera", "viewer")
        yield {
            "client": client,
            "admin": admin,
            "viewer": viewer,
            "mr": body["studies"][0],
            "ct": ct_study,
            "mr_ds": pydicom.dcmread(io.BytesIO(mr)),
            "home": home,
        }


def _values(items: list[dict], tag: str) -> list:
    return [i[tag]["Value"][0] for i in items if tag in i and "Value" in i[tag]]


def test_qido_study_search_filters(world):
    client, h, mr, ct = world["client"], world["viewer"], world["mr"], world["ct"]
    mr_ds = world["mr_ds"]
    resp = client.get("/dicomweb/studies", headers=h)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/dicom+json")
    assert sorted(_values(resp.json(), "0020000D")) == sorted([mr, ct])

    def uids(**params) -> list[str]:
        r = client.get("/dicomweb/studies", params=params, headers=h)
        assert r.status_code == 200, r.text
        return _values(r.json(), "0020000D")

    assert uids(PatientID=mr_ds.PatientID) == [mr]
    assert uids(ModalitiesInStudy="CT") == [ct]
    assert uids(StudyInstanceUID=ct) == [ct]
    assert sorted(uids(StudyInstanceUID=f"{mr},{ct}")) == sorted([mr, ct])
    family = str(mr_ds.PatientName).split("^")[0]
    assert mr in uids(PatientName=family[:3].lower(), fuzzymatching="true")
    assert mr not in uids(PatientName=family[:3].lower())  # no fuzzy: exact match only
    assert mr in uids(PatientName=family[:2] + "*")
    date = str(mr_ds.StudyDate)
    assert mr in uids(StudyDate=f"{date}-") and mr not in uids(StudyDate=f"-{int(date) - 1}")
    assert len(uids(limit="1")) == 1 and len(uids(limit="1", offset="1")) == 1
    assert uids(limit="1") != uids(limit="1", offset="1")
    study = client.get(
        "/dicomweb/studies", params={"StudyInstanceUID": mr, "includefield": "00180080"}, headers=h
    ).json()[0]
    assert "00180080" in study  # RepetitionTime of the first instance
    mods = study["00080061"]["Value"]
    assert {"MR", "SEG", "SR"} <= set(mods)  # the analysis results are part of the study
    bad = client.get("/dicomweb/studies", params={"NoSuchKey": "1"}, headers=h)
    assert bad.status_code == 400 and "NoSuchKey" in bad.json()["detail"]


def test_series_and_instances_hold_the_analysis_results(world):
    client, h, mr = world["client"], world["viewer"], world["mr"]
    series = client.get(f"/dicomweb/studies/{mr}/series", headers=h).json()
    modalities = _values(series, "00080060")
    assert sorted(modalities) == sorted(set(modalities)) and {"MR", "SEG", "SR"} <= set(modalities)
    seg_series = next(s for s in series if s["00080060"]["Value"] == ["SEG"])
    seg_uid = seg_series["0020000E"]["Value"][0]
    only = client.get(f"/dicomweb/studies/{mr}/series", params={"Modality": "SEG"}, headers=h)
    assert _values(only.json(), "0020000E") == [seg_uid]
    inst = client.get(f"/dicomweb/studies/{mr}/series/{seg_uid}/instances", headers=h).json()
    assert _values(inst, "00080016") == [SEG_CLASS]
    all_inst = client.get(f"/dicomweb/studies/{mr}/instances", headers=h).json()
    assert len(all_inst) >= 3
    missing = client.get(f"/dicomweb/studies/{mr}/series/1.2.3/instances", headers=h)
    assert missing.status_code == 404
    assert client.get("/dicomweb/studies/1.2.3/series", headers=h).status_code == 404


def test_metadata_is_valid_dicom_json_with_bulk_data_uris(world):
    client, h, mr = world["client"], world["viewer"], world["mr"]
    resp = client.get(f"/dicomweb/studies/{mr}/metadata", headers=h)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/dicom+json")
    items = resp.json()
    by_modality = {i["00080060"]["Value"][0]: i for i in items}
    mr_item, seg_item, sr_item = by_modality["MR"], by_modality["SEG"], by_modality["SR"]
    uri = mr_item["7FE00010"]["BulkDataURI"]
    assert "/bulkdata/7FE00010" in uri and "Value" not in mr_item["7FE00010"]
    for item in items:  # each item reads back as a dataset
        ds = Dataset.from_json(json.dumps(item), bulk_data_uri_handler=lambda *_: b"")
        assert ds.StudyInstanceUID == mr
    assert "00620002" in seg_item  # SegmentSequence
    assert "0040A730" in sr_item and "7FE00010" not in sr_item  # ContentSequence, no pixels
    seg_ds = Dataset.from_json(json.dumps(seg_item), bulk_data_uri_handler=lambda *_: b"")
    ref_series = seg_ds.ReferencedSeriesSequence[0].SeriesInstanceUID
    assert ref_series == world["mr_ds"].SeriesInstanceUID  # the SEG points at the MR series
    series_uid = mr_item["0020000E"]["Value"][0]
    sop = mr_item["00080018"]["Value"][0]
    one = client.get(
        f"/dicomweb/studies/{mr}/series/{series_uid}/instances/{sop}/metadata", headers=h
    ).json()
    assert len(one) == 1 and one[0]["00080018"]["Value"] == [sop]
    bulk = client.get(uri.replace("http://testserver", ""), headers=h)
    ((data, _),) = read_parts(bulk.content, bulk.headers["content-type"])
    assert data == world["mr_ds"].PixelData


def _frame_url(world) -> str:
    ds = world["mr_ds"]
    series, sop = ds.SeriesInstanceUID, ds.SOPInstanceUID
    return f"/dicomweb/studies/{world['mr']}/series/{series}/instances/{sop}"


def test_frames_in_the_accepted_transfer_syntax(world):
    client, h, ds = world["client"], world["viewer"], world["mr_ds"]
    url = _frame_url(world) + "/frames/1"
    for accept in (
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
        'multipart/related; type="application/octet-stream"',
        f"multipart/related; type=application/octet-stream; transfer-syntax={EVLE}",
    ):
        resp = client.get(url, headers={**h, "Accept": accept})
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("multipart/related")
        ((data, ctype),) = read_parts(resp.content, resp.headers["content-type"])
        assert ctype == f"application/octet-stream; transfer-syntax={EVLE}"
        pixels = np.frombuffer(data, dtype="<i2").reshape(ds.Rows, ds.Columns)
        assert np.array_equal(pixels, ds.pixel_array)
    jpeg_only = "multipart/related; type=image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"
    assert client.get(url, headers={**h, "Accept": jpeg_only}).status_code == 406
    assert client.get(_frame_url(world) + "/frames/2", headers=h).status_code == 400


def test_instance_retrieve_returns_the_stored_file(world):
    client, h, ds = world["client"], world["viewer"], world["mr_ds"]
    resp = client.get(_frame_url(world), headers=h)
    assert resp.status_code == 200
    ((data, ctype),) = read_parts(resp.content, resp.headers["content-type"])
    assert ctype == "application/dicom"
    got = pydicom.dcmread(io.BytesIO(data))
    assert got.SOPInstanceUID == ds.SOPInstanceUID and got.PixelData == ds.PixelData
    whole = client.get(f"/dicomweb/studies/{world['mr']}", headers=h)
    classes = {
        pydicom.dcmread(io.BytesIO(d)).SOPClassUID
        for d, _ in read_parts(whole.content, whole.headers["content-type"])
    }
    assert SEG_CLASS in classes and ds.SOPClassUID in classes


def _new_instance(source: Dataset, study: str | None = None) -> bytes:
    ds = source.copy()
    ds.file_meta = source.file_meta.copy()
    ds.StudyInstanceUID = study or pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_stow_round_trip_and_role(world):
    client, admin, viewer = world["client"], world["admin"], world["viewer"]
    data = _new_instance(world["mr_ds"])
    sent = pydicom.dcmread(io.BytesIO(data))
    body, ctype = write_parts([(data, "application/dicom")], "application/dicom")
    refused = client.post(
        "/dicomweb/studies", content=body, headers={**viewer, "Content-Type": ctype}
    )
    assert refused.status_code == 403
    resp = client.post("/dicomweb/studies", content=body, headers={**admin, "Content-Type": ctype})
    assert resp.status_code == 200, resp.text
    stored = resp.json()["00081199"]["Value"]
    assert stored[0]["00081155"]["Value"] == [sent.SOPInstanceUID]
    found = client.get(
        "/dicomweb/studies", params={"StudyInstanceUID": sent.StudyInstanceUID}, headers=viewer
    ).json()
    assert len(found) == 1
    back = client.get(
        f"/dicomweb/studies/{sent.StudyInstanceUID}/series/{sent.SeriesInstanceUID}"
        f"/instances/{sent.SOPInstanceUID}",
        headers=viewer,
    )
    ((again, _),) = read_parts(back.content, back.headers["content-type"])
    assert pydicom.dcmread(io.BytesIO(again)).PixelData == sent.PixelData
    # into the wrong study: refused with a FailedSOPSequence
    wrong = client.post(
        f"/dicomweb/studies/{world['ct']}", content=body, headers={**admin, "Content-Type": ctype}
    )
    assert wrong.status_code == 409 and "00081198" in wrong.json()
    not_multipart = client.post(
        "/dicomweb/studies", content=data, headers={**admin, "Content-Type": "application/dicom"}
    )
    assert not_multipart.status_code == 400


def test_reads_need_authentication_and_are_audited(world):
    client, mr, home = world["client"], world["mr"], world["home"]
    for url in ("/dicomweb/studies", f"/dicomweb/studies/{mr}/metadata", _frame_url(world)):
        resp = client.get(url, headers={"Authorization": "Bearer not-a-token"})
        assert resp.status_code == 401
        fresh = TestClient(client.app)  # no cookie, no token
        assert fresh.get(url).status_code == 401
    token = world["viewer"]["Authorization"].removeprefix("Bearer ")
    cookie_client = TestClient(client.app, cookies={"medsight_token": token})
    assert cookie_client.get(f"/dicomweb/studies/{mr}/metadata").status_code == 200
    records = [
        json.loads(line) for line in (home / "audit" / "service.jsonl").read_text().splitlines()
    ]
    reads = [r for r in records if r["action"] == "dicomweb_metadata" and r["actor"] == "vera"]
    assert reads and reads[-1]["inputs"]["study"] == mr
