"""The upload page in headless Chromium: leaving while files are in flight asks first
(``beforeunload``), a zip stored with skipped members is a warning (not all green), and sizes
below 1 KiB are in bytes.  Marked ``integration`` (Chromium, Playwright)."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest

from .test_ui_upload_query import _logged_in_page, _serve, _throttling_proxy
from .test_viewer import _wait

pytestmark = pytest.mark.integration

_LEAVE = """() => {
  const e = new Event("beforeunload", { cancelable: true });
  window.dispatchEvent(e);
  return e.defaultPrevented;
}"""


def _drop(page, files: list[tuple[str, bytes]]) -> None:
    transfer = page.evaluate_handle(
        """(files) => {
          const dt = new DataTransfer();
          for (const f of files) {
            const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
            dt.items.add(new File([bytes], f.name));
          }
          return dt;
        }""",
        [{"name": n, "b64": base64.b64encode(b).decode()} for n, b in files],
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def test_leaving_mid_upload_asks_and_partial_results_warn(
    tmp_path, tiny_package, pydicom_file, debian_tool
):
    source = pydicom_file("MR_small.dcm").read_bytes()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/mr.dcm", source)
        zf.writestr("a/readme.txt", b"not an image")
    with (
        _serve(tmp_path / "home", [tiny_package.path]) as server,
        _throttling_proxy(server, 256 * 1024) as base,
        _logged_in_page(debian_tool, base) as page,
    ):
        page.goto(f"{base}/ui/upload")
        page.uncheck("#analyse")
        assert page.evaluate(_LEAVE) is False  # nothing running: leave freely
        big = bytes(2 * 2**20)  # 8 s through the proxy
        _drop(page, [("big.dcm", big), ("study.zip", archive.getvalue()), ("tiny.txt", b"x" * 12)])
        _wait(page, "document.querySelector('#files tbody tr') !== null")
        assert page.evaluate(_LEAVE) is True  # a reload now would stop the upload: ask
        _wait(page, "document.getElementById('upload').dataset.finished === '1'", timeout=60)
        assert page.evaluate(_LEAVE) is False

        rows = {
            r.locator("td").first.inner_text(): (
                r.get_attribute("class"),
                r.locator("td").nth(1).inner_text(),
                r.locator("td").last.inner_text(),
            )
            for r in page.locator("#files tbody tr").all()
        }
        state, _, text = rows["study.zip"]
        assert state == "partial", rows
        assert text.startswith("warning: stored 1, skipped 1") and "readme.txt" in text
        assert rows["tiny.txt"][1] == "12 bytes"
        assert rows["tiny.txt"][0] == "failed" and rows["big.dcm"][0] == "failed"
        summary = page.locator("#summary")
        assert "1 with skipped content" in summary.inner_text()
        assert summary.get_attribute("class") == "warning"
        colour = page.evaluate(
            "getComputedStyle(document.querySelector('#files tr.partial td:last-child')).color"
        )
        assert colour == "rgb(154, 103, 0)"  # the warning colour, not the success green
