"""The upload and query/retrieve pages in headless Chromium against ``medsight serve``.

Drop DICOM files (and a file that is not DICOM) on the upload page and watch the progress reach
100 % and the study appear; search a real Orthanc from the query page, retrieve a study and
follow its analysis.  Marked ``integration`` (Chromium, Playwright, Orthanc).
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from medsight.service.pacs.dimse import send_files

from .conftest import ADMIN_PASSWORD
from .pacs_servers import serve_medsight
from .test_viewer import _series_of_five, _wait

pytestmark = pytest.mark.integration

_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _serve(home: Path, packages: list[Path], **env_extra: str) -> contextlib.AbstractContextManager:
    return serve_medsight(home, packages, ADMIN_PASSWORD, **env_extra)


@contextlib.contextmanager
def _logged_in_page(debian_tool, base: str) -> Iterator:
    chromium = debian_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(f"{base}/ui")  # the address medsight serve prints
        assert page.url.endswith("/ui/login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/worklist")
        try:
            yield page
        finally:
            browser.close()


def test_upload_page_drop_progress_and_study_link(
    tmp_path, tiny_package, pydicom_file, debian_tool
):
    source = pydicom_file("MR_small.dcm")
    other = _series_of_five(source)[0]  # a second series of the same study
    dropped = [
        ("one.dcm", source.read_bytes()),
        ("two.dcm", other),
        ("notes.txt", b"not an image"),
    ]
    with (
        _serve(tmp_path / "home", [tiny_package.path]) as base,
        _logged_in_page(debian_tool, base) as page,
    ):
        page.click("header nav a[href='/ui/upload']")
        page.wait_for_url("**/ui/upload")
        transfer = page.evaluate_handle(
            """(files) => {
              const dt = new DataTransfer();
              for (const f of files) {
                const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], f.name));
              }
              return dt;
            }""",
            [{"name": n, "b64": base64.b64encode(b).decode()} for n, b in dropped],
        )
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        _wait(page, "document.getElementById('upload').dataset.finished === '1'")
        assert page.evaluate("document.getElementById('total').value") == 100
        assert page.inner_text("#total-label") == "100%"
        rows = page.locator("#files tbody tr")
        assert rows.count() == 3
        assert page.locator("#files tr.ok").count() == 2
        bad = page.locator("#files tr.failed")
        assert bad.count() == 1 and "notes.txt" in bad.inner_text()
        assert "not a readable DICOM file" in bad.inner_text()
        assert all(
            v == 100
            for v in page.evaluate(
                "Array.from(document.querySelectorAll('#files tr.ok progress')).map(p => p.value)"
            )
        )
        link = page.locator("#studies a.study-link")
        uid = pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID
        assert link.count() == 1 and link.inner_text() == uid
        _wait(
            page,
            "document.querySelector('#studies .study-state').textContent.startsWith('analysis ')",
        )
        link.click()
        page.wait_for_selector("#study[data-ready=yes]")
        assert page.locator("#series option").count() == 2  # both files in one study
        page.screenshot(path=str(tmp_path / "after-upload.png"), full_page=True)


def test_query_page_lists_orthanc_study_and_retrieves(
    tmp_path, tiny_package, orthanc, pydicom_file, debian_tool
):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.PatientID, ds.StudyInstanceUID = "QR-UI-7", pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.StudyDescription = "query page study"
    ct = tmp_path / "ct.dcm"
    ds.save_as(ct)
    assert send_files(orthanc.aet, [ct]) == 1
    env = {"MEDSIGHT_DICOMWEB_URL": orthanc.dicomweb, "MEDSIGHT_PUSH_RESULTS": "false"}
    with (
        _serve(tmp_path / "home", [tiny_package.path], **env) as base,
        _logged_in_page(debian_tool, base) as page,
    ):
        page.goto(f"{base}/ui/pacs")
        page.fill("#query input[name=modality]", "xx yy")  # refused before the PACS
        page.click("#query button[type=submit]")
        _wait(page, "document.getElementById('query-status').textContent.includes('modality')")
        page.fill("#query input[name=modality]", "CT")
        page.fill("#query input[name=patient_id]", "QR-UI-7")
        page.click("#query button[type=submit]")
        _wait(page, "document.getElementById('query').dataset.searched === '1'")
        rows = page.locator("#pacs-studies tbody tr")
        assert rows.count() == 1 and page.inner_text("#query-status") == "1 study found"
        text = rows.first.inner_text()
        assert "QR-UI-7" in text and "query page study" in text and "CT" in text
        rows.first.locator("button.retrieve").click()
        _wait(
            page,
            "document.querySelector('#pacs-studies .job-state').textContent"
            ".includes('analysis done')",
            timeout=30,
        )
        assert rows.first.locator("a.open").count() == 1
        page.screenshot(path=str(tmp_path / "query.png"), full_page=True)


def test_study_page_heatmap_by_slice_and_pictures_follow_the_series(
    tmp_path, tiny_package, pydicom_file, debian_tool
):
    source = pydicom_file("MR_small.dcm")
    files = [("files", ("one.dcm", source.read_bytes(), "application/dicom"))]
    files += [
        ("files", (f"s{i}.dcm", b, "application/dicom"))
        for i, b in enumerate(_series_of_five(source))
    ]
    with _serve(tmp_path / "home", [tiny_package.path]) as base:
        token = httpx.post(
            f"{base}/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        body = httpx.post(f"{base}/api/studies", files=files, headers=auth, timeout=60).json()
        job_id = body["jobs"][0]["id"]
        deadline = time.monotonic() + 120
        while httpx.get(f"{base}/api/jobs/{job_id}", headers=auth).json()["state"] != "done":
            assert time.monotonic() < deadline, "analysis did not finish"
            time.sleep(0.2)
        info = [
            httpx.get(f"{base}/api/jobs/{job_id}/overlays?series={i}", headers=auth).json()
            for i in range(2)
        ]
        on = [i for i, x in enumerate(info) if any(m["heatmap"] for m in x["models"])]
        assert len(on) == 1  # the classifier's heatmap lies on one series' grid only
        (model,) = [m for m in info[on[0]]["models"] if m["heatmap"]]
        assert model["picture"] and not model["mask"]
        heat = httpx.get(f"{base}/api/jobs/{job_id}/heatmaps/{model['model']}/0.png", headers=auth)
        assert heat.status_code == 200 and heat.headers["content-type"] == "image/png"
        with _logged_in_page(debian_tool, base) as page:
            page.goto(f"{base}/ui/studies/{body['studies'][0]}")
            page.wait_for_selector("#study[data-ready=yes]")
            figure = page.locator(f"#heatmaps figure[data-file='{model['picture']}']")
            for index in (1 - on[0], on[0]):
                page.select_option("#series", str(index))
                _wait(page, f"document.getElementById('series').value === '{index}'")
                time.sleep(0.3)
                here = index == on[0]
                if here:
                    _wait(page, "document.getElementById('heat').naturalWidth > 0")
                assert page.locator("#heat").is_visible() == here
                assert figure.is_visible() == here  # no stale picture beside another series
                assert page.locator("#heatmaps-elsewhere").is_visible() == (not here)
                assert page.locator("#legend .colourbar").is_visible() == here
            assert "heatmap" in page.inner_text("#legend")
            page.click("#toggle-overlay")
            assert not page.locator("#heat").is_visible() and not figure.is_visible()
