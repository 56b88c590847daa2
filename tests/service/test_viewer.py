"""The web viewer in headless Chromium against ``medsight serve`` on loopback.

Log in, find the study on the worklist, scroll slices, change the window, toggle the AI
overlay, accept a finding; screenshots are checked for the key elements.
"""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from .conftest import ADMIN_PASSWORD
from .pacs_servers import serve_medsight

pytestmark = pytest.mark.integration


def _series_of_five(source) -> list[bytes]:
    """Five slices of a second series in the source file's study (a 3D series to scroll)."""
    out = []
    series_uid = pydicom.uid.generate_uid()
    for k in range(5):
        ds = pydicom.dcmread(source)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = "five slices"
        ds.InstanceNumber = k + 1
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 5.0 * k]
        arr = ds.pixel_array.astype(np.int16)
        arr[: 10 * (k + 1), :10] = arr.max()  # a bright block that grows slice by slice
        ds.PixelData = arr.tobytes()
        buf = io.BytesIO()
        ds.save_as(buf)
        out.append(buf.getvalue())
    return out


@pytest.fixture
def served(tmp_path, tiny_package, seg_package):
    packages = [tiny_package.path, seg_package.path]
    with serve_medsight(tmp_path / "home", packages, ADMIN_PASSWORD) as base:
        yield base


def _prepare(base, source) -> tuple[str, str, dict]:
    token = httpx.post(
        f"{base}/api/auth/login", data={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    files = [("files", ("one.dcm", source.read_bytes(), "application/dicom"))]
    files += [
        ("files", (f"s{i}.dcm", b, "application/dicom"))
        for i, b in enumerate(_series_of_five(source))
    ]
    body = httpx.post(f"{base}/api/studies", files=files, headers=auth, timeout=60).json()
    job_id = body["jobs"][0]["id"]
    deadline = time.monotonic() + 60
    while httpx.get(f"{base}/api/jobs/{job_id}", headers=auth).json()["state"] != "done":
        assert time.monotonic() < deadline, "analysis did not finish"
        time.sleep(0.1)
    return body["studies"][0], job_id, auth


def _wait(page, expression: str, timeout: float = 20.0) -> None:
    """Poll ``expression`` until true (``page.evaluate`` is not subject to the page's CSP,
    which forbids the eval that ``wait_for_function`` needs)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def _image(png: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(png)).convert("L"), dtype=np.int16)


def test_viewer_login_worklist_study_overlay_and_accept(
    served, tmp_path, pydicom_file, debian_tool
):
    chromium = debian_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    uid, job_id, auth = _prepare(served, pydicom_file("MR_small.dcm"))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{served}/ui/worklist")
        assert page.url.endswith("/ui/login")  # not logged in: the login page
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "wrong-password")
        page.click("button[type=submit]")
        assert "wrong username or password" in page.inner_text(".error")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/worklist")
        rows = page.locator("#worklist tbody tr")
        assert rows.count() == 1 and "done" in rows.first.inner_text()
        page.screenshot(path=str(tmp_path / "worklist.png"))
        page.click("#worklist a.open")
        page.wait_for_selector("#study[data-ready=yes]")
        _wait(page, "document.getElementById('image').naturalWidth > 0")
        assert page.inner_text("#slice-label") == "3/5"  # starts mid-way in the 5-slice series
        first = page.locator("#image").screenshot()
        # scroll to the last slice: the bright block grows, so the image changes
        page.fill("#slice", "4")
        page.dispatch_event("#slice", "input")
        _wait(page, "document.getElementById('image').src.includes('/slices/4.png')")
        _wait(page, "document.getElementById('image').complete")
        assert page.inner_text("#slice-label") == "5/5"
        last = page.locator("#image").screenshot()
        assert np.abs(_image(first) - _image(last)).mean() > 1
        # a narrow window changes contrast
        page.fill("#width", "50")
        page.dispatch_event("#width", "change")
        _wait(page, "document.getElementById('image').src.includes('width=50')")
        _wait(page, "document.getElementById('image').complete")
        narrow = page.locator("#image").screenshot()
        assert np.abs(_image(narrow) - _image(last)).mean() > 1
        # the models ran on the single-slice series: no mask is drawn over the 5-slice one
        mask = page.locator("#mask")
        _wait(page, "document.getElementById('mask').dataset.missing !== undefined")
        assert not mask.is_visible()
        # the report's pictures (Grad-CAM and contours) were made on the other series: not shown
        # beside this one (no stale thumbnail), a note says where they are
        heatmaps = page.locator("#heatmaps img.heatmap")
        assert heatmaps.count() == 2 and not heatmaps.first.is_visible()
        assert page.locator("#heatmaps-elsewhere").is_visible()
        # on the series the segmentation model ran on, its mask lies over the slice
        one = page.locator("#series option").filter(has_text="(1)").get_attribute("value")
        page.select_option("#series", one)
        _wait(
            page,
            "(() => { const m = document.getElementById('mask');"
            " return m.complete && m.naturalWidth > 0 && !m.hidden; })()",
        )
        assert mask.is_visible()
        assert heatmaps.first.is_visible() and not page.locator("#heatmaps-elsewhere").is_visible()
        assert page.evaluate(
            "Array.from(document.querySelectorAll('#heatmaps img')).every(i => i.naturalWidth > 0)"
        )
        # the legend names the mask's label in its colour; the heatmap has its colour bar
        legend = page.locator("#legend")
        assert legend.is_visible() and "bright" in legend.inner_text()
        assert page.locator("#legend .colourbar").is_visible()
        _wait(page, "document.getElementById('heat').naturalWidth > 0")
        assert page.locator("#heat").is_visible()
        box, under = mask.bounding_box(), page.locator("#image").bounding_box()
        assert (box["x"], box["y"], box["width"]) == (under["x"], under["y"], under["width"])
        page.screenshot(path=str(tmp_path / "study-overlay-on.png"), full_page=True)
        page.click("#toggle-overlay")
        assert not heatmaps.first.is_visible() and not mask.is_visible()
        assert not legend.is_visible() and not page.locator("#heat").is_visible()
        assert page.inner_text("#toggle-overlay").endswith("off")
        page.click("#toggle-overlay")
        assert heatmaps.first.is_visible() and mask.is_visible()
        # findings and the report; accept the classifier's finding
        rows = page.locator("#findings tbody tr")
        assert rows.count() == 2
        row = rows.filter(has_text="tiny-ct@0.0.1")
        assert "Neoplasm" in row.inner_text()
        assert "mm2" in rows.filter(has_text="bright").inner_text()  # a 2D mask: its area
        assert "requires review" in page.inner_text(".disclaimer")
        accepted = int(row.get_attribute("data-index"))
        row.locator("button.accept").click()
        _wait(
            page,
            "Array.from(document.querySelectorAll('#findings .verdict'))"
            ".some(v => v.textContent === 'accepted')",
        )
        page.screenshot(path=str(tmp_path / "study-accepted.png"), full_page=True)
        report = page.request.get(f"{served}/api/jobs/{job_id}/files/report.html")
        assert report.ok and "tiny-ct@0.0.1" in report.text()
        browser.close()
    # no script error (a 404 the browser may log is not one, e.g. its favicon request)
    assert all("404" in e for e in console_errors), console_errors
    feedback = httpx.get(f"{served}/api/jobs/{job_id}/feedback", headers=auth).json()
    assert [(f["finding"], f["verdict"], f["by"]) for f in feedback] == [
        (accepted, "confirm", "admin")
    ]

    for name in ("worklist.png", "study-overlay-on.png", "study-accepted.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    shot = np.asarray(PILImage.open(tmp_path / "study-overlay-on.png").convert("RGB"))
    assert shot.std() > 10  # not a blank page
    audit = (tmp_path / "home" / "audit" / "service.jsonl").read_text()
    assert '"view_images"' in audit and '"review_finding"' in audit and uid in audit
