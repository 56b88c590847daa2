"""Query the PACS (QIDO-RS against a real Orthanc) through ``GET /api/pacs/studies``, retrieve.

Marked ``integration``; needs the Debian packages orthanc and orthanc-dicomweb.
"""

from __future__ import annotations

import pydicom
import pytest
from fastapi.testclient import TestClient

from medsight.service import create_app
from medsight.service.pacs.dimse import send_files
from medsight.service.pacs.query import StudyQuery

from .conftest import add_user, login, wait_job


def test_query_validation():
    assert StudyQuery(date="20240102").filters() == {"StudyDate": "20240102"}
    assert StudyQuery(date="20240102-20240105").filters()["StudyDate"] == "20240102-20240105"
    for bad in ({"date": "yesterday"}, {"modality": "C T"}, {"patient_id": "a\\b"}):
        with pytest.raises(ValueError):
            StudyQuery(**bad)


def test_query_needs_a_configured_pacs(client, admin):
    resp = client.get("/api/pacs/studies", params={"patient_id": "x"}, headers=admin)
    assert resp.status_code == 400 and "no DICOMweb PACS" in resp.json()["detail"]
    resp = client.get("/api/pacs/studies", params={"date": "soon"}, headers=admin)
    assert resp.status_code == 422


@pytest.mark.integration
def test_query_orthanc_then_retrieve(orthanc, settings, pydicom_file, tmp_path):
    # a study of its own (other tests send CT_small to the same Orthanc and get results back)
    head = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    head.PatientID, head.StudyInstanceUID = "QR-TEST-1", pydicom.uid.generate_uid()
    head.SeriesInstanceUID = pydicom.uid.generate_uid()
    head.StudyDate = "19870605"  # a date no other study in this Orthanc has (CT_small's is shared)
    head.SOPInstanceUID = head.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ct = tmp_path / "ct.dcm"
    head.save_as(ct)
    assert send_files(orthanc.aet, [ct]) == 1
    cfg = settings.model_copy(update={"dicomweb_url": orthanc.dicomweb})
    with TestClient(create_app(cfg)) as client:
        admin = login(client)
        viewer = add_user(client, admin, "vera", "viewer")
        assert client.get("/api/pacs/studies", headers=viewer).status_code == 403

        def find(**params):
            resp = client.get("/api/pacs/studies", params=params, headers=admin)
            assert resp.status_code == 200, resp.text
            return resp.json()

        (row,) = find(patient_id=head.PatientID)
        assert row["study_uid"] == head.StudyInstanceUID and row["modalities"] == ["CT"]
        assert row["local"] is False and row["job"] is None and row["instances"] == 1
        assert find(patient_id=head.PatientID, modality="mr") == []
        assert len(find(modality="CT", date=f"{head.StudyDate}-{head.StudyDate}")) == 1
        assert find(patient_id="nobody-here") == []
        resp = client.post(
            "/api/pacs/pull", json={"study_uid": head.StudyInstanceUID}, headers=admin
        )
        assert resp.status_code == 202, resp.text
        assert wait_job(client, admin, resp.json()["id"])["state"] == "done"
        (row,) = find(patient_id=head.PatientID, modality="CT")
        assert row["local"] is True and row["job"]["state"] == "done"
