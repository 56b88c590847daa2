"""Worklist order and filters; reviewer feedback stored per finding."""

from __future__ import annotations

from medsight.service.settings import load_settings
from medsight.service.store import Store
from medsight.service.worklist import worklist

from .conftest import add_user, wait_job


def _study(store, uid, modality, urgency, *, state="done", **result):
    store.upsert_study(uid, modalities=modality, urgency=urgency)
    job, _ = store.submit(uid, ["m@1"], uid)
    if state == "queued":
        return job.id
    store.claim("w")
    if state == "done":
        store.finish(job.id, **result)
    elif state == "failed":
        store.finish(job.id, error="broken")
    return job.id


def test_priority_then_flagged_then_suspicion():
    store = Store("sqlite://")
    _study(store, "1.1", "CT", "routine", suspicion=0.4)  # oldest, unflagged
    _study(store, "1.2", "CT", "stat", suspicion=0.1)
    _study(store, "1.3", "MR", "routine", flagged=True, flag_urgency="urgent", suspicion=0.7)
    _study(store, "1.4", "CT", "routine", flagged=True, flag_urgency="urgent", suspicion=0.95)
    _study(store, "1.5", "CT", "stat", flagged=True, flag_urgency="urgent", suspicion=0.6)
    _study(store, "1.8", "CT", "routine", flagged=True, flag_urgency="routine", suspicion=0.5)
    _study(store, "1.7", "CR", "urgent", state="failed")
    _study(store, "1.6", "CT", "routine", state="queued")
    order = [i.study_uid for i in worklist(store)]
    assert order == ["1.5", "1.2", "1.4", "1.3", "1.7", "1.8", "1.1", "1.6"]
    assert [i.priority for i in worklist(store)][:5] == [
        "stat",
        "stat",
        "urgent",
        "urgent",
        "urgent",
    ]
    assert [i.study_uid for i in worklist(store, modality="mr")] == ["1.3"]
    assert [i.study_uid for i in worklist(store, status="queued")] == ["1.6"]
    assert [i.study_uid for i in worklist(store, status="failed")] == ["1.7"]
    assert [i.study_uid for i in worklist(store, modality="CT", status="done")] == [
        "1.5",
        "1.2",
        "1.4",
        "1.8",
        "1.1",
    ]


def test_feedback_is_stored_and_filters_reviewed(client, admin, ct_bytes):
    rad = add_user(client, admin, "rita", "radiologist")
    files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
    body = client.post("/api/studies", files=files, headers=rad, params={"urgency": "stat"}).json()
    job_id = body["jobs"][0]["id"]
    wait_job(client, rad, job_id)
    items = client.get("/api/worklist", headers=rad).json()
    assert [(i["study_uid"], i["urgency"], i["reviewed"]) for i in items] == [
        (body["studies"][0], "stat", False)
    ]
    assert client.get("/api/worklist?status=reviewed", headers=rad).json() == []
    url = f"/api/jobs/{job_id}/findings/0/feedback"
    assert client.put(url, json={"verdict": "confirm"}, headers=rad).status_code == 200
    resp = client.put(url, json={"verdict": "reject", "comment": "artefact"}, headers=rad)
    assert resp.status_code == 200
    assert client.put(url, json={"verdict": "maybe"}, headers=rad).status_code == 422
    bad = f"/api/jobs/{job_id}/findings/9/feedback"
    assert client.put(bad, json={"verdict": "confirm"}, headers=rad).status_code == 404
    stored = client.get(f"/api/jobs/{job_id}/feedback", headers=rad).json()
    assert [(f["finding"], f["verdict"], f["comment"], f["by"]) for f in stored] == [
        (0, "reject", "artefact", "rita")
    ]
    assert stored[0]["code"].endswith(":108369006")  # SNOMED CT neoplasm
    reviewed = client.get("/api/worklist?status=reviewed&modality=CT", headers=rad).json()
    assert [i["job_id"] for i in reviewed] == [job_id]
    # real-world accuracy so far: one reviewed finding, rejected
    positive = client.get(f"/api/jobs/{job_id}/report", headers=rad).json()["findings"][0][
        "positive"
    ]
    (summary,) = client.get("/api/feedback/summary", headers=rad).json()
    assert summary["model_id"] == "tiny-ct@0.0.1" and summary["reviewed"] == 1
    assert summary["agreement"] == 0.0
    assert summary["ppv" if positive else "npv"] == 0.0
    assert summary["npv" if positive else "ppv"] is None


def test_settings_file_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSIGHT_HOME", str(tmp_path / "from-env"))
    assert load_settings().home == tmp_path / "from-env"
    file = tmp_path / "medsight.toml"
    file.write_text(f'home = "{tmp_path / "from-file"}"\nmax_upload_bytes = 1000\n')
    monkeypatch.setenv("MEDSIGHT_SETTINGS", str(file))
    settings = load_settings()
    assert settings.home == tmp_path / "from-file" and settings.max_upload_bytes == 1000
    file.write_text("max_upload_bytes = -1\n")
    import pytest

    from medsight.core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="max_upload_bytes"):
        load_settings()
    file.write_text("nonsense = 1\n")
    with pytest.raises(InvalidInputError, match="nonsense"):
        load_settings()
