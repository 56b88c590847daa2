"""OHIF Viewer v3 in headless Chromium on ``medsight serve``: a study, its AI SEG and SR.

Upload an MR study, let a tiny segmentation package analyse it (the job writes a DICOM SEG and
a TID 1500 SR), log in on the worklist, follow its OHIF link and check that the viewport
renders the image, that the SEG and SR series are in the study browser, that the SEG opens as
a segmentation (its segment in the segmentation panel) and the SR display set loads.

OHIF renders with WebGL; headless Chromium with ``--disable-gpu`` gets it from SwiftShader
(``--use-angle=swiftshader --enable-unsafe-swiftshader``).  Needs the OHIF build
(``scripts/setup-viewer.sh``) and Debian's chromium; skipped without them locally, failed
under ``CI=true``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from medsight.models.package import ModelPackage
from medsight.service.dicomweb.multipart import read_parts

from .conftest import ADMIN_PASSWORD
from .pacs_servers import free_port, stop_process

pytestmark = pytest.mark.integration

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


@pytest.fixture(scope="module")
def ohif_dist() -> Path:
    from medsight.service.viewer.ohif import default_dist

    dist = Path(os.environ.get("MEDSIGHT_VIEWER_DIST") or default_dist())
    if not (dist / "index.html").is_file():
        why = f"no OHIF build at {dist} (run bash scripts/setup-viewer.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return dist


@pytest.fixture(scope="module")
def bright_package(seg_package, tmp_path_factory):
    """The trained tiny package with hand-set weights: it labels the brightest pixels "bright".

    A one-step-trained network paints a few scattered pixels (six on MR_small, in the image's
    corners), too few to tell a SEG that OHIF draws from one it does not.  These weights pass
    the input straight through DynUNet's top level (one channel, centre taps 1, the rest 0), so
    the "bright" logit is ``4 * (z - 1)`` of the twice instance-normalised intensity: a
    deterministic mask of the bright tissue, cut to its largest component.
    """
    import torch

    state = {k: torch.zeros_like(v) for k, v in seg_package.state_dict().items()}
    for key, out, inp in [
        ("input_block.conv1.conv.weight", 0, 0),
        ("input_block.conv2.conv.weight", 0, 0),
        ("upsamples.1.conv_block.conv1.conv.weight", 0, 4),  # the skip: after 4 upsampled
        ("upsamples.1.conv_block.conv2.conv.weight", 0, 0),
    ]:
        state[key][out, inp, 1, 1] = 1.0
    for key, value in state.items():
        if "norm" in key and key.endswith("weight"):
            value.fill_(1.0)
    state["output_block.conv.conv.weight"][1, 0] = 4.0
    state["output_block.conv.conv.bias"][1] = -4.0
    spec = seg_package.spec.model_copy(
        update={
            "name": "bright-threshold",
            "intended_use": "Test fixture only: hand-set weights that label bright pixels.",
            "extra": {**seg_package.spec.extra, "postprocessing": {"1": "largest_component"}},
        }
    )
    plan = (seg_package.path / "plan.json").read_text()
    path = tmp_path_factory.mktemp("bright") / "bright-threshold"
    return ModelPackage.save(path, spec, state, extra_files={"plan.json": plan})


@pytest.fixture
def served(tmp_path, bright_package, ohif_dist):
    port = free_port()
    env = {
        **os.environ,
        "MEDSIGHT_HOME": str(tmp_path / "home"),
        "MEDSIGHT_PACKAGES": json.dumps([str(bright_package.path)]),
        "MEDSIGHT_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MEDSIGHT_WORKER_POLL_S": "0.05",
        "MEDSIGHT_VIEWER_DIST": str(ohif_dist),
    }
    env.pop("MEDSIGHT_SETTINGS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "medsight.cli.app", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115 - the child owns it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "medsight serve did not start"
            time.sleep(0.2)
        yield base
    finally:
        stop_process(proc)


def _analysed_study(base: str, source: Path) -> tuple[str, dict[str, str], str, int]:
    """Upload ``source`` and wait for its analysis: the study UID, series numbers by modality,
    the SEG's first segment label and how many pixels its mask holds."""
    token = httpx.post(
        f"{base}/api/auth/login", data={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    files = [("files", ("mr.dcm", source.read_bytes(), "application/dicom"))]
    body = httpx.post(f"{base}/api/studies", files=files, headers=auth, timeout=60).json()
    job_id, uid = body["jobs"][0]["id"], body["studies"][0]
    deadline = time.monotonic() + 120
    while (job := httpx.get(f"{base}/api/jobs/{job_id}", headers=auth).json())["state"] not in (
        "done",
        "failed",
    ):
        assert time.monotonic() < deadline, "analysis did not finish"
        time.sleep(0.1)
    assert job["state"] == "done", job
    series = httpx.get(f"{base}/dicomweb/studies/{uid}/series", headers=auth).json()
    numbers = {s["00080060"]["Value"][0]: str(s["00200011"]["Value"][0]) for s in series}
    assert {"MR", "SEG", "SR"} <= set(numbers), numbers
    seg_series = next(s for s in series if s["00080060"]["Value"] == ["SEG"])
    resp = httpx.get(
        f"{base}/dicomweb/studies/{uid}/series/{seg_series['0020000E']['Value'][0]}",
        headers=auth,
    )
    ((data, _),) = read_parts(resp.content, resp.headers["content-type"])
    seg = pydicom.dcmread(io.BytesIO(data))
    label = str(seg.SegmentSequence[0].SegmentLabel)
    return uid, numbers, label, int(np.count_nonzero(seg.pixel_array))


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _coloured(rgb: np.ndarray) -> int:
    """Pixels whose channels differ by more than 40 (not grey)."""
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 40).sum())


def _click_if_there(page, name: str, timeout_ms: float) -> None:
    button = page.get_by_text(name, exact=True)
    try:
        button.first.wait_for(state="visible", timeout=timeout_ms)
    except Exception:  # the dialog did not come up: nothing to dismiss
        return
    button.first.click()


def test_ohif_opens_the_study_with_the_ai_seg_and_sr(served, tmp_path, pydicom_file, debian_tool):
    chromium = debian_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    uid, numbers, label, seg_pixels = _analysed_study(served, pydicom_file("MR_small.dcm"))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        failed: list[str] = []
        page.on(
            "response",
            lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        page.goto(f"{served}/ui/login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/worklist")
        link = page.locator(f'a.ohif[href="/ohif/viewer?StudyInstanceUIDs={uid}"]')
        assert link.count() == 1
        link.click()
        page.wait_for_url("**/ohif/viewer?StudyInstanceUIDs=*")
        viewport = page.locator(".cornerstone-viewport-element").first
        viewport.wait_for(state="visible", timeout=60_000)
        _click_if_there(page, "Skip all", 5_000)  # OHIF's onboarding tour
        _click_if_there(page, "Confirm and hide", 2_000)  # "for investigational use only"
        # the image renders: the viewport is far from one flat colour
        deadline = time.monotonic() + 30
        while (before := _pixels(viewport.screenshot())).std() < 10:
            assert time.monotonic() < deadline, "the OHIF viewport stayed blank"
            time.sleep(0.5)
        # the AI series are in the study browser
        seg_thumb = page.get_by_text(f"S:{numbers['SEG']}", exact=True)
        sr_thumb = page.get_by_text(f"S:{numbers['SR']}", exact=True)
        seg_thumb.wait_for(timeout=20_000)
        sr_thumb.wait_for(timeout=20_000)
        # the SEG opens as a segmentation over the MR image
        seg_thumb.dblclick()
        page.get_by_role("button", name="Yes").click(timeout=30_000)
        page.locator("[data-cy=panelSegmentation-btn]").click()
        page.get_by_text(label, exact=True).first.wait_for(timeout=30_000)  # panel: segment
        # the overlay: coloured pixels over the grey-scale MR image; the 64 x 64 image fills
        # the ~800 px viewport, so each SEG pixel covers ~150 screen pixels (half at least)
        assert seg_pixels >= 50, f"the SEG holds {seg_pixels} pixels: too few to see"
        deadline = time.monotonic() + 20
        while _coloured(_pixels(viewport.screenshot())) <= _coloured(before) + 50 * seg_pixels:
            if time.monotonic() > deadline:
                page.screenshot(path=str(tmp_path / "ohif-seg.png"))
                raise AssertionError(f"the SEG overlay did not appear ({tmp_path}/ohif-seg.png)")
            time.sleep(0.5)
        # the SR display set loads in the viewport
        sr_thumb.dblclick()
        time.sleep(3)
        page.screenshot(path=str(tmp_path / "ohif-sr.png"))
        page.locator("[data-cy=trackedMeasurements-btn]").click()
        time.sleep(2)
        page.screenshot(path="/tmp/f2_meas1.png")
        open("/tmp/f2_html1.txt", "w").write(page.content())
        page.get_by_text("SR", exact=True).first.click()
        time.sleep(3)
        page.screenshot(path="/tmp/f2_meas2.png")
        open("/tmp/f2_html2.txt", "w").write(page.content())
        assert not [f for f in failed if "/dicomweb/" in f], failed
        browser.close()
