"""The "What if" panel in headless Chromium against ``medsight serve`` on loopback.

Draw a box on the slice and re-run the classifier (the new probability is shown), brush on
the mask and save it (the new version is listed, with its measurements), ask a risk what-if.
"""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage

from .conftest import ADMIN_PASSWORD
from .pacs_servers import serve_medsight
from .whatif_models import toy_risk

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path, tiny_package, seg_package):
    risk = toy_risk(tmp_path)
    packages = [p.path for p in (tiny_package, seg_package, risk)]
    with serve_medsight(tmp_path / "home", packages, ADMIN_PASSWORD) as base:
        yield base


def _wait(page, expression: str, timeout: float = 30.0) -> None:
    """Poll ``expression`` (``page.evaluate`` is not subject to the page's CSP)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def _drag(page, box, start, end) -> None:
    page.mouse.move(box["x"] + start[0], box["y"] + start[1])
    page.mouse.down()
    for t in (0.25, 0.5, 0.75, 1.0):
        page.mouse.move(
            box["x"] + start[0] + t * (end[0] - start[0]),
            box["y"] + start[1] + t * (end[1] - start[1]),
        )
    page.mouse.up()


def test_whatif_panel_occlusion_risk_and_mask_edit(served, tmp_path, pydicom_file, debian_tool):
    chromium = debian_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    token = httpx.post(
        f"{served}/api/auth/login", data={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    files = [("files", ("mr.dcm", pydicom_file("MR_small.dcm").read_bytes()))]
    body = httpx.post(f"{served}/api/studies", files=files, headers=auth, timeout=60).json()
    uid, job_id = body["studies"][0], body["jobs"][0]["id"]
    deadline = time.monotonic() + 90
    while httpx.get(f"{served}/api/jobs/{job_id}", headers=auth).json()["state"] != "done":
        assert time.monotonic() < deadline, "analysis did not finish"
        time.sleep(0.1)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 1400})
        errors: list[str] = []
        bad: list[str] = []
        page.on("response", lambda r: bad.append(f"{r.status} {r.url}") if r.status >= 400 else 0)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{served}/ui/login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/worklist")
        page.goto(f"{served}/ui/studies/{uid}")
        page.wait_for_selector("#whatif[data-ready=yes]")
        _wait(page, "document.getElementById('image').naturalWidth > 0")
        canvas = page.locator("#whatif-canvas")
        # occlusion: draw a box over the left half of the 384-px view, re-run; "Draw box"
        # brings the image into view first (the tools are below it)
        in_view = """() => { const r = document.getElementById('image').getBoundingClientRect();
                       return r.top >= 0 && r.bottom <= innerHeight; }"""
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        assert not page.evaluate(in_view)
        page.click("#whatif-draw-box")
        assert page.evaluate(in_view)
        box = canvas.bounding_box()
        assert box["width"] == page.locator("#image").bounding_box()["width"]
        _drag(page, box, (10, 10), (190, 370))
        # the 64 px image shown at 384 px: the box in image pixels, columns i and rows j
        assert page.inner_text("#whatif-box") == "box 31 x 61 px at column 1, row 1"
        page.select_option("#whatif-fill", "zero")
        page.check("#whatif-map-on")
        page.click("#whatif-run")
        _wait(page, "/->/.test(document.getElementById('whatif-occlusion-result').textContent)")
        shown = page.inner_text("#whatif-occlusion-result")
        tools = httpx.get(f"{served}/api/jobs/{job_id}/whatif", headers=auth).json()
        occ = httpx.post(  # the same question through the API gives the numbers shown
            f"{served}/api/jobs/{job_id}/whatif/occlusion",
            json={
                "finding": tools["findings"][0]["index"],
                "region": {"box": [1, 1, 32, 62]},
                "fill": "zero",
            },
            headers=auth,
        ).json()
        label, new = next(iter(occ["changed"]["probabilities"].items()))
        assert f"{label}: " in shown and f"-> {new:.3f}" in shown
        notes = page.inner_text("#whatif-occlusion-notes")
        assert occ["caveat"] in notes  # the edited image is unlike the training images
        (decision,) = occ["decisions"]
        flips = "flips" if decision["flipped"] else "unchanged"
        cut = "" if decision["threshold"] is None else f" {decision['threshold']:.3f}"
        assert f"Decision at the operating threshold{cut} {flips}" in notes
        assert page.locator("#whatif-map-figure").is_visible()
        assert "Occlusion sensitivity" in page.inner_text("#whatif-map-figure figcaption")
        assert page.locator("#whatif-map-figure .whatif-colorbar").is_visible()
        # risk form: baseline, then an older patient -> the risk rises
        risk = page.locator(".whatif-risk")
        risk.locator("input[name=age]").fill("60")
        risk.locator("select[name=sex]").select_option("F")
        risk.locator("select[name=smoker]").select_option("0")
        risk.locator("button.whatif-baseline").click()
        risk.locator("input[name=age]").fill("80")
        risk.locator("button.whatif-ask").click()
        _wait(page, "/\\(\\+/.test(document.querySelector('.whatif-risk-result').textContent)")
        assert "probability: 0.378 -> " in risk.locator(".whatif-risk-result").inner_text()
        # brush a stroke on the mask and save it as version 2
        page.click("#whatif-brush")  # far below the image: the page scrolls, so measure again
        box = canvas.bounding_box()
        _drag(page, box, (60, 300), (300, 300))
        assert page.is_enabled("#whatif-save")
        page.click("#whatif-save")
        _wait(page, "!!document.querySelector('#whatif-versions li[data-version=\"2\"]')")
        assert "by admin" in page.inner_text("#whatif-versions li[data-version='2']")
        assert "saved v2" in page.inner_text("#whatif-seg-result")
        assert "mm2" in page.inner_text("#whatif-seg-result")
        _wait(page, "document.getElementById('whatif-mask').naturalWidth > 0")
        assert page.locator("#whatif-mask").is_visible()
        # the page says which version the overlay and the numbers show; v2 replaces v1 on the
        # image, in the legend's colour, and the findings table gets v2's measurements
        shown = page.inner_text("#whatif-seg-shown")
        assert shown.startswith("Overlay: v2 (edited by admin from v1)") and "mm2" in shown
        assert page.evaluate("document.getElementById('mask').style.visibility") == "hidden"
        legend = page.evaluate("document.querySelector('#legend-labels li').dataset.colour")
        png = httpx.get(
            f"{served}/api/jobs/{job_id}/segmentation/versions/2/masks/0.png", headers=auth
        )
        rgba = np.asarray(PILImage.open(io.BytesIO(png.content)))
        drawn = rgba[rgba[..., 3] > 0][0][:3]
        assert "#" + "".join(f"{int(c):02x}" for c in drawn) == legend.lower()
        seg_row = page.locator("#findings tbody tr", has=page.locator(".whatif-vn"))
        assert seg_row.count() == 1
        assert seg_row.locator(".whatif-vn").inner_text().startswith("v2 (edited by admin): ")
        assert seg_row.locator(".whatif-v1").inner_text().startswith("v1 (model): ")
        page.screenshot(path=str(tmp_path / "whatif.png"), full_page=True)
        browser.close()
    # no script error and no failed request of the page; the browser's own favicon request may
    # log a 404 (it is not one of the page's responses)
    assert bad == [] and all("404" in e for e in errors), (errors, bad)
    versions = httpx.get(f"{served}/api/jobs/{job_id}/segmentation/versions", headers=auth)
    assert [v["version"] for v in versions.json()] == [1, 2]
    assert versions.json()[1]["operations"][0]["op"] == "brush"
    audit = (tmp_path / "home" / "audit" / "service.jsonl").read_text()
    assert '"whatif_occlusion"' in audit and '"edit_segmentation"' in audit
