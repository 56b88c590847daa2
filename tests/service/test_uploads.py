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


def _multipart(files: list[tuple[str, bytes]], boundary: str = "medsight-test-boundary") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/dicom\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def _drive(client, headers: dict, body: bytes, cut: int | None, seen: list) -> list[dict]:
    """Send ``body`` to POST /api/studies straight through ASGI, in 64 KiB chunks; with ``cut``
    the client disconnects after ``cut`` bytes, else right after the whole body (while the
    server stores).  ``seen`` gets the incoming area's part files at the moment of leaving."""
    chunks = [body[i : i + 65536] for i in range(0, len(body) if cut is None else cut, 65536)]
    incoming = client.app.state.services.settings.home / "incoming"
    sent: list[dict] = []

    async def receive() -> dict:
        if chunks:
            chunk = chunks.pop(0)
            more = cut is not None or bool(chunks)
            return {"type": "http.request", "body": chunk, "more_body": more}
        seen.extend((p.name, p.stat().st_size) for p in incoming.rglob("*.part"))
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    auth = headers["Authorization"].encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/studies",
        "raw_path": b"/api/studies",
        "root_path": "",
        "query_string": b"analyse=true",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", auth),
            (b"content-type", b"multipart/form-data; boundary=medsight-test-boundary"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": dict(client.app_state),
    }
    client.portal.call(client.app, scope, receive, send)
    return sent


def _study_copy(ct_bytes: bytes, study_uid: str, pad: int = 0) -> bytes:
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(io.BytesIO(ct_bytes))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if pad:
        ds.add_new(0x00090010, "LO", "MEDSIGHT TEST")  # a private block: a large instance,
        ds.add_new(0x00091000, "OB", b"\0" * pad)  # so the body spans many chunks
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def _stored(settings) -> set[str]:
    studies = settings.home / "studies"
    return (
        {p.relative_to(studies).as_posix() for p in studies.rglob("*")}
        if studies.exists()
        else set()
    )


@pytest.mark.parametrize("when", ["mid-body", "while-storing"])
def test_client_disconnect_leaves_nothing_of_that_upload(client, admin, ct_bytes, settings, when):
    from pydicom.uid import generate_uid

    earlier, fresh = generate_uid(), generate_uid()
    first = _post(client, admin, [("files", ("a.dcm", _study_copy(ct_bytes, earlier)))])
    assert first.status_code == 201, first.text
    before, jobs_before = _stored(settings), client.get("/api/jobs", headers=admin).json()
    body = _multipart(
        [
            ("b.dcm", _study_copy(ct_bytes, earlier)),  # more of the stored study
            ("c.dcm", _study_copy(ct_bytes, fresh, pad=40_000)),
            ("d.dcm", _study_copy(ct_bytes, fresh, pad=400_000)),
        ]
    )
    seen: list = []
    cut = len(body) * 2 // 3 if when == "mid-body" else None
    sent = _drive(client, admin, body, cut, seen)
    if when == "mid-body":  # it streamed into the incoming area until the client left
        assert sorted(name for name, _ in seen) == ["00000.part", "00001.part", "00002.part"]
        assert 0 < max(seen)[1] < 400_000  # the last file only partly there
    assert sent[0]["status"] == 499  # nobody reads it; no 201, no 5xx
    assert _stored(settings) == before  # the earlier upload stays, nothing of this one
    assert not any((settings.home / "incoming").iterdir())
    assert client.get(f"/api/studies/{fresh}", headers=admin).status_code == 404
    assert client.get(f"/api/studies/{earlier}", headers=admin).json()["n_files"] == 1
    assert client.get("/api/jobs", headers=admin).json() == jobs_before
    audit = (settings.home / "audit" / "service.jsonl").read_text()
    assert '"upload_cancelled"' in audit
    # the same body, sent in full, is stored and queued
    resp = client.post(
        "/api/studies",
        content=body,
        headers={**admin, "Content-Type": "multipart/form-data; boundary=medsight-test-boundary"},
    )
    assert resp.status_code == 201 and resp.json()["stored"] == 3, resp.text
    assert sorted(resp.json()["studies"]) == sorted([earlier, fresh])
    assert not any((settings.home / "incoming").iterdir())
