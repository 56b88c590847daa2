"""The rendered report.html in headless Chromium: key elements present, images load."""

from __future__ import annotations

import pytest

from medsight.analysis.pipeline import analyze

pytestmark = pytest.mark.integration


def test_report_renders_in_chromium(tmp_path, pydicom_file, debian_tool, tiny_classifier):
    chromium = debian_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    analyze(pydicom_file("CT_small.dcm"), tmp_path / "out", [tiny_classifier()])
    html = tmp_path / "out" / "report.html"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.goto(html.as_uri())
        assert "requires review by a qualified clinician" in page.inner_text("#disclaimer")
        assert page.inner_text("#impression").startswith("AI suggests:")
        assert "tiny-ct@0.0.1" in page.inner_text("#models")
        assert page.locator("#findings tr").count() == 2  # header + one finding
        assert page.evaluate(
            "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000
