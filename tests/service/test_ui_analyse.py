"""A stored study that was never analysed: its page offers **Analyse** to reviewers, which
queues the job through the job API and shows the findings when it is done (Chromium); a
viewer is told who can start it."""

from __future__ import annotations

import httpx
import pydicom
import pytest

from .conftest import ADMIN_PASSWORD, add_user
from .test_ui_upload_query import _logged_in_page, _serve


def _upload_unanalysed(client, headers, data: bytes) -> str:
    files = [("files", ("mr.dcm", data, "application/dicom"))]
    resp = client.post("/api/studies", params={"analyse": "false"}, files=files, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()["studies"][0]


def test_not_analysed_study_page_offers_analyse_to_reviewers_only(client, admin, pydicom_file):
    uid = _upload_unanalysed(client, admin, pydicom_file("MR_small.dcm").read_bytes())
    viewer = add_user(client, admin, "vera", "viewer")
    page = client.get(f"/ui/studies/{uid}", cookies={"medsight_token": admin["Authorization"][7:]})
    assert page.status_code == 200
    assert 'id="analyse-now"' in page.text and "/ui/static/analyse.js" in page.text
    client.cookies.clear()
    seen = client.get(f"/ui/studies/{uid}", cookies={"medsight_token": viewer["Authorization"][7:]})
    assert 'id="analyse-now"' not in seen.text and "a radiologist or admin can start" in seen.text


@pytest.mark.integration
def test_analyse_button_queues_and_shows_the_findings(
    tmp_path, tiny_package, pydicom_file, debian_tool
):
    source = pydicom_file("MR_small.dcm")
    uid = pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID
    with _serve(tmp_path / "home", [tiny_package.path]) as base:
        token = httpx.post(
            f"{base}/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base) as api:
            assert _upload_unanalysed(api, auth, source.read_bytes()) == uid
        assert httpx.get(f"{base}/api/jobs", headers=auth).json() == []
        with _logged_in_page(debian_tool, base) as page:
            page.goto(f"{base}/ui/studies/{uid}")
            with page.expect_navigation(timeout=60_000):  # reloaded once the job is done
                page.click("#analyse-now")
            page.wait_for_selector(".impression")
            assert page.locator("#analyse-now").count() == 0
        jobs = httpx.get(f"{base}/api/jobs", headers=auth).json()
        assert [j["study_uid"] for j in jobs] == [uid] and jobs[0]["state"] == "done"
