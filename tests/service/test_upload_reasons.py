"""Why an uploaded file was skipped: a truncated DICOM file is called truncated (pydicom alone
reads it silently, and the UID check would blame its UIDs), and is never stored cut short."""

from __future__ import annotations


def _upload(client, headers, *files):
    parts = [("files", (name, data, "application/dicom")) for name, data in files]
    return client.post("/api/studies?analyse=false", files=parts, headers=headers)


def test_truncated_files_are_skipped_as_truncated(client, admin, ct_bytes, settings):
    cuts = {
        "pixels-cut.dcm": ct_bytes[: len(ct_bytes) // 2],  # pixel data cut short
        "header-cut.dcm": ct_bytes[:800],  # inside the header, before the UIDs end
        "meta-only.dcm": ct_bytes[:300],  # the file meta and nothing after it
    }
    resp = _upload(client, admin, ("whole.dcm", ct_bytes), *cuts.items())
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["stored"] == 1
    reasons = {line.split(":", 1)[0]: line for line in body["skipped"]}
    assert set(reasons) == set(cuts)
    for line in reasons.values():
        assert "truncated" in line, line
        assert "UID" not in line, line
    # nothing of the truncated files was stored, and no spooled copy is left
    stored = list((settings.home / "studies").rglob("*.dcm"))
    assert len(stored) == 1 and stored[0].stat().st_size >= len(ct_bytes) - 512
    assert not list((settings.home / "studies").glob(".upload-*"))


def test_an_upload_of_only_a_truncated_file_says_truncated(client, admin, ct_bytes):
    resp = _upload(client, admin, ("cut.dcm", ct_bytes[: len(ct_bytes) - 100]))
    assert resp.status_code == 400
    assert "truncated" in resp.json()["detail"] and "UID" not in resp.json()["detail"]
