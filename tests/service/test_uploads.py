"""Bad uploads and bad paths get a 4xx with a clear message; the service keeps running."""

from __future__ import annotations

import io
import zipfile

import pytest
from fastapi.testclient import TestClient

from medsight.service import create_app

from .conftest import login, wait_job


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _post(client, headers, files, **kw):
    return client.post("/api/studies", files=files, headers=headers, **kw)


@pytest.mark.parametrize(
    ("name", "problem"),
    [("../evil.dcm", "path escapes"), ("/etc/evil.dcm", "path escapes"), ("a/../../x", "escapes")],
)
def test_zip_member_escaping_is_rejected(client, admin, ct_bytes, settings, name, problem):
    data = _zip({"ok.dcm": ct_bytes, name: ct_bytes})
    resp = _post(client, admin, [("files", ("s.zip", data, "application/zip"))])
    assert resp.status_code == 400 and problem in resp.json()["detail"]
    assert not (settings.home / "studies").exists() or not any(
        (settings.home / "studies").rglob("*.dcm")
    )
    assert not (settings.home.parent / "evil.dcm").exists()


def test_malformed_uploads(client, admin, ct_bytes):
    cases = [
        ([("files", ("x.dcm", b"not dicom at all", "application/dicom"))], "holds no DICOM"),
        ([("files", ("s.zip", b"PK\x03\x04garbage", "application/zip"))], "not a readable zip"),
        ([("other", ("x.dcm", ct_bytes, "application/dicom"))], "no 'files' field"),
    ]
    for files, problem in cases:
        resp = _post(client, admin, files)
        assert resp.status_code == 400 and problem in resp.json()["detail"], resp.text
    resp = client.post(
        "/api/studies",
        content=b"--xx\r\nContent-Disposition: form-data; name=files; filename=a\r\n\r\nabc",
        headers={**admin, "Content-Type": "multipart/form-data; boundary=xx"},
    )
    assert 400 <= resp.status_code < 500
    resp = client.post("/api/studies", content=ct_bytes, headers={**admin, "Content-Type": "x/y"})
    assert resp.status_code == 400 and "multipart/form-data" in resp.json()["detail"]
    # a DICOM among junk: the good file is stored, the junk listed
    files = [
        ("files", ("ct.dcm", ct_bytes, "application/dicom")),
        ("files", ("notes.txt", b"hello", "text/plain")),
    ]
    resp = _post(client, admin, files, params={"analyse": "false"})
    assert resp.status_code == 201 and resp.json()["stored"] == 1
    assert resp.json()["skipped"][0].startswith("notes.txt: not a readable DICOM file")
    assert client.get("/api/health").status_code == 200


def test_dicom_with_traversing_uid_is_rejected(client, admin, ct_bytes):
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(ct_bytes))
    ds.StudyInstanceUID = "../../x"
    buf = io.BytesIO()
    ds.save_as(buf)
    resp = _post(client, admin, [("files", ("x.dcm", buf.getvalue(), "application/dicom"))])
    assert resp.status_code == 400 and "UID missing or malformed" in resp.json()["detail"]


def test_size_limits(settings, ct_bytes):
    small = settings.model_copy(
        update={"max_upload_bytes": 4000, "max_unzipped_bytes": 100_000, "max_upload_files": 3}
    )
    with TestClient(create_app(small)) as client:
        admin = login(client)
        resp = _post(client, admin, [("files", ("ct.dcm", ct_bytes, "application/dicom"))])
        assert resp.status_code == 413 and "larger than" in resp.json()["detail"]
        bomb = _zip({"big.dcm": b"\0" * 200_000})  # compresses to a few hundred bytes
        resp = _post(client, admin, [("files", ("b.zip", bomb, "application/zip"))])
        assert resp.status_code == 413 and "unpacks to more than" in resp.json()["detail"]
        many = _zip({f"{i}.dcm": b"x" for i in range(5)})
        resp = _post(client, admin, [("files", ("m.zip", many, "application/zip"))])
        assert resp.status_code == 413 and "holds 5 files" in resp.json()["detail"]
        resp = _post(client, admin, [("files", (f"{i}", b"x")) for i in range(5)])
        assert 400 <= resp.status_code < 500
        assert client.get("/api/health").status_code == 200


def test_result_file_paths_cannot_escape(client, admin, ct_bytes, settings):
    job = _post(client, admin, [("files", ("ct.dcm", ct_bytes, "application/dicom"))]).json()
    job_id = job["jobs"][0]["id"]
    wait_job(client, admin, job_id)
    (settings.home / "secret.txt").write_text("no")
    for name in ("../../secret.txt", "..%2F..%2Fsecret.txt", "%2e%2e/%2e%2e/secret.txt"):
        resp = client.get(f"/api/jobs/{job_id}/files/{name}", headers=admin)
        assert resp.status_code in (400, 404), (name, resp.status_code)
        assert resp.text != "no"
    assert client.get("/api/studies/..%2F..%2Fetc", headers=admin).status_code in (400, 404)
    assert client.get("/api/jobs/nope/report", headers=admin).status_code == 404


def test_result_not_ready_is_409(settings, ct_bytes):
    with TestClient(create_app(settings.model_copy(update={"run_worker": False}))) as client:
        admin = login(client)
        job = _post(client, admin, [("files", ("ct.dcm", ct_bytes, "application/dicom"))]).json()
        resp = client.get(f"/api/jobs/{job['jobs'][0]['id']}/report", headers=admin)
        assert resp.status_code == 409 and "state queued" in resp.json()["detail"]


def _patient_copy(ct_bytes: bytes, patient: str, study_uid: str) -> bytes:
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(io.BytesIO(ct_bytes))
    ds.PatientID, ds.PatientName, ds.StudyInstanceUID = patient, f"{patient}^Test", study_uid
    ds.SeriesInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_two_patients_in_one_upload_get_a_report_each(client, admin, ct_bytes):
    from pydicom.uid import generate_uid

    a, b = generate_uid(), generate_uid()
    archive = _zip({"a/1.dcm": _patient_copy(ct_bytes, "PAT-A", a),
                    "b/1.dcm": _patient_copy(ct_bytes, "PAT-B", b)})  # fmt: skip
    resp = _post(client, admin, [("files", ("two.zip", archive, "application/zip"))])
    assert resp.status_code == 201, resp.text
    jobs = resp.json()["jobs"]
    assert sorted(resp.json()["studies"]) == sorted([a, b]) and len(jobs) == 2
    for job in jobs:
        done = wait_job(client, admin, job["id"])
        report = client.get(f"/api/jobs/{done['id']}/report", headers=admin).json()
        expected = "PAT-A" if report["study"]["StudyInstanceUID"] == a else "PAT-B"
        assert report["study"]["PatientID"] == expected
        bundle = client.get(f"/api/jobs/{done['id']}/files/fhir_bundle.json", headers=admin).json()
        ids = {
            i["value"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Patient"
            for i in e["resource"].get("identifier", [])
        }
        assert ids == {expected}


def test_a_second_patient_under_a_stored_study_uid_is_refused(client, admin, ct_bytes):
    from pydicom.uid import generate_uid

    uid = generate_uid()
    first = _post(client, admin, [("files", ("a.dcm", _patient_copy(ct_bytes, "PAT-A", uid)))])
    assert first.status_code == 201
    mixed = _zip({"b.dcm": _patient_copy(ct_bytes, "PAT-B", uid),
                  "c.dcm": _patient_copy(ct_bytes, "PAT-A", uid)})  # fmt: skip
    resp = _post(client, admin, [("files", ("m.zip", mixed, "application/zip"))])
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["stored"] == 1 and len(body["skipped"]) == 1
    assert "belongs to patient PAT-A" in body["skipped"][0] and "PAT-B" in body["skipped"][0]
