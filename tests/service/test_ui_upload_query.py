"""The upload and query/retrieve pages in headless Chromium against ``medsight serve``.

Drop DICOM files (and a file that is not DICOM) on the upload page and watch the progress reach
100 % and the study appear; cancel an upload that a throttling proxy keeps in flight and check
that the page says what was kept and the server kept nothing else; search a real Orthanc from
the query page, retrieve a study and follow its analysis.  Marked ``integration`` (Chromium,
Playwright, Orthanc).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
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


@contextlib.contextmanager
def _throttling_proxy(target: str, upload_bytes_per_s: int) -> Iterator[str]:
    """A loopback TCP proxy to ``target`` (``http://host:port``) that forwards what the browser
    sends at ``upload_bytes_per_s`` per connection (answers pass at full speed), so an upload
    stays in flight long enough to be cancelled.  Yields its base URL; stopped on exit."""
    host, port = target.removeprefix("http://").split(":")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    open_sockets: list[socket.socket] = [listener]

    def pump(src: socket.socket, dst: socket.socket, rate: int | None) -> None:
        try:
            while not stop.is_set():
                data = src.recv(16384)
                if not data:
                    break
                if rate:
                    time.sleep(len(data) / rate)
                dst.sendall(data)
        except OSError:
            pass
        finally:  # one side gone: close both, as a disconnecting client would
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while not stop.is_set():
            try:
                browser, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection((host, int(port)))
            open_sockets.extend([browser, server])
            for args in ((browser, server, upload_bytes_per_s), (server, browser, None)):
                threading.Thread(target=pump, args=args, daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.close()
        thread.join(timeout=5)


def test_upload_cancel_keeps_the_finished_files_only(
    tmp_path, tiny_package, pydicom_file, debian_tool
):
    source = pydicom_file("MR_small.dcm")
    uid = pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID
    home = tmp_path / "home"
    incoming = home / "incoming"
    big = 6 * 2**20  # 12 s each through the proxy: cancelled long before
    with (
        _serve(home, [tiny_package.path]) as server,
        _throttling_proxy(server, 512 * 1024) as base,
        _logged_in_page(debian_tool, base) as page,
    ):
        page.goto(f"{base}/ui/upload")
        assert page.locator("#cancel").is_disabled()
        transfer = page.evaluate_handle(
            """([b64, big]) => {
              const dt = new DataTransfer();
              const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
              dt.items.add(new File([bytes], "small.dcm"));
              for (const name of ["big1.dcm", "big2.dcm", "big3.dcm"])
                dt.items.add(new File([new Uint8Array(big)], name));
              dt.items.add(new File([bytes], "late.dcm"));  // waits for a free slot
              return dt;
            }""",
            [base64.b64encode(source.read_bytes()).decode(), big],
        )
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        _wait(page, "document.querySelector('#files tr.ok') !== null")
        deadline = time.monotonic() + 20  # the three big ones are streaming in on the server
        while len([p for p in incoming.rglob("*.part") if p.stat().st_size > 0]) < 3:
            assert time.monotonic() < deadline, list(incoming.rglob("*"))
            time.sleep(0.05)
        assert not page.locator("#cancel").is_disabled()
        page.click("#cancel")
        _wait(page, "document.getElementById('upload').dataset.cancelled === '1'")
        assert page.evaluate("document.getElementById('upload').dataset.finished") is None
        assert page.locator("#cancel").is_disabled()
        summary = page.inner_text("#summary")
        assert summary.startswith("cancelled: 1 of 5 files uploaded"), summary
        rows = {
            r.locator("td").first.inner_text(): (r.get_attribute("class"), r.inner_text())
            for r in page.locator("#files tbody tr").all()
        }
        assert rows["small.dcm"][0] == "ok" and "stored 1" in rows["small.dcm"][1]
        for name in ("big1.dcm", "big2.dcm", "big3.dcm"):
            assert rows[name][0] == "cancelled" and "cancelled at" in rows[name][1]
        assert rows["late.dcm"][0] == "cancelled" and "not sent" in rows["late.dcm"][1]
        state = page.inner_text("#studies .study-state")
        assert state == "upload cancelled: not queued for analysis"
        # the server: the aborted requests leave nothing; the finished one stays, not analysed
        deadline = time.monotonic() + 20
        while any(incoming.iterdir()):
            assert time.monotonic() < deadline, list(incoming.rglob("*"))
            time.sleep(0.05)
        stored = [p.relative_to(home / "studies") for p in (home / "studies").rglob("*.dcm")]
        assert len(stored) == 1 and stored[0].parts[0] == uid
        token = httpx.post(
            f"{server}/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server}/api/studies/{uid}", headers=auth).json()["n_files"] == 1
        assert httpx.get(f"{server}/api/jobs", headers=auth).json() == []
        audit = [json.loads(line) for line in (home / "audit" / "service.jsonl").open()]
        actions = [a["action"] for a in audit]
        assert actions.count("upload_cancelled") == 3 and actions.count("upload_study") == 1
        page.screenshot(path=str(tmp_path / "cancelled.png"), full_page=True)
        # a new drop after the cancel is a new batch that uploads and queues as usual
        again = page.evaluate_handle(
            """(b64) => {
              const dt = new DataTransfer();
              const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
              dt.items.add(new File([bytes], "again.dcm"));
              return dt;
            }""",
            base64.b64encode(_series_of_five(source)[0]).decode(),
        )
        page.dispatch_event("#drop", "drop", {"dataTransfer": again})
        _wait(page, "document.getElementById('upload').dataset.finished === '2'")
        assert page.locator("#files tbody tr").count() == 1
        assert page.inner_text("#summary") == "1/1 files done"
        _wait(page, "document.querySelector('#studies .study-state').textContent"
                    ".startsWith('analysis ')")  # fmt: skip


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
