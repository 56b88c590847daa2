"""OHIF Viewer v3 in headless Chromium on ``medsight serve``: a study, its AI SEG and SR.

Upload an MR study, let a tiny segmentation package analyse it (the job writes a DICOM SEG and
a TID 1500 SR), log in on the worklist, follow its OHIF link and check that the viewport
renders the image, that the SEG and SR series are in the study browser, that the SEG opens as
a segmentation (its segment in the segmentation panel and its overlay in the viewport) and that
the SR opens with the segment's outline (its TID 1410 SCOORD) drawn where the overlay was, and
that loading the SR into OHIF's measurement tracking lists the finding's long axis (a Length
with the cornerstone tracking identifier) in the measurement panel, in mm, with the SR's value;
and that a detection finding's box in an SR (cornerstone's RectangleROI layout) is listed there
with its area in mm2.

The package is the trained tiny one with hand-set weights (:func:`bright_package`), so its
mask is large and deterministic.  OHIF 3.12 lists in its tracked-measurements panel only
"rehydratable" measurements (cornerstone-dicom-sr ``isRehydratable``: a cornerstone tool
Tracking Identifier or a graphic its adapters register), which the free outline is not; the
long-axis group is (:func:`medsight.reporting.sr_regions.long_axis_group`).

OHIF renders with WebGL; headless Chromium with ``--disable-gpu`` gets it from SwiftShader
(``--use-angle=swiftshader --enable-unsafe-swiftshader``).  Needs the OHIF build
(``scripts/setup-viewer.sh``) and Debian's chromium; skipped without them locally, failed
under ``CI=true``.
"""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from medsight.models.package import ModelPackage
from medsight.service.dicomweb.multipart import read_parts

from .conftest import ADMIN_PASSWORD
from .pacs_servers import serve_medsight

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
    home, packages = tmp_path / "home", [bright_package.path]
    with serve_medsight(
        home, packages, ADMIN_PASSWORD, MEDSIGHT_VIEWER_DIST=str(ohif_dist)
    ) as base:
        yield base


def _analysed_study(base: str, source: Path) -> tuple[str, dict[str, str], str, np.ndarray]:
    """Upload ``source`` and wait for its analysis: the study UID, series numbers by modality,
    the SEG's first segment label and its (one frame) mask."""
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
    return uid, numbers, label, np.asarray(seg.pixel_array) > 0


def _sr_lengths(base: str, uid: str) -> list[float]:
    """The Length values (mm) of the study's SR long-axis groups, read back over DICOMweb."""
    import highdicom as hd

    from medsight.reporting.sr_regions import CORNERSTONE_LENGTH

    token = httpx.post(
        f"{base}/api/auth/login", data={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    series = httpx.get(f"{base}/dicomweb/studies/{uid}/series", headers=auth).json()
    sr_series = next(s for s in series if s["00080060"]["Value"] == ["SR"])
    resp = httpx.get(
        f"{base}/dicomweb/studies/{uid}/series/{sr_series['0020000E']['Value'][0]}",
        headers=auth,
    )
    ((data, _),) = read_parts(resp.content, resp.headers["content-type"])
    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(io.BytesIO(data)))
    return [
        float(m.value)
        for g in sr.content.get_image_measurement_groups()
        if g.tracking_identifier == CORNERSTONE_LENGTH
        for m in g.get_measurements()
        if m.unit.value == "mm"
    ]


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _coloured(rgb: np.ndarray) -> int:
    """Pixels whose channels differ by more than 40 (not grey)."""
    return int(_colour_mask(rgb).sum())


def _colour_mask(rgb: np.ndarray) -> np.ndarray:
    return (rgb.max(axis=2) - rgb.min(axis=2)) > 40


def _green(rgb: np.ndarray) -> np.ndarray:
    """Where green outshines red and blue by 60 (OHIF draws SR annotations in green)."""
    return rgb[..., 1] - np.maximum(rgb[..., 0], rgb[..., 2]) > 60


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def _click_if_there(page, name: str, timeout_ms: float) -> None:
    button = page.get_by_text(name, exact=True)
    try:
        button.first.wait_for(state="visible", timeout=timeout_ms)
    except Exception:  # the dialog did not come up: nothing to dismiss
        return
    button.first.click()


def _tracked_values(page, pattern: str, tmp_path: Path) -> list[float]:
    """Accept OHIF's offer to track the SR's measurements and read the numbers matching
    ``pattern`` from its measurement panel.

    OHIF finds the SR rehydratable and asks "Do you want to continue tracking measurements for
    this study?" (else: its LOAD button, then the question); yes: the panel lists them.
    """
    question = page.get_by_text("Do you want to continue tracking measurements", exact=False)
    try:
        question.first.wait_for(state="visible", timeout=15_000)
    except Exception:  # no prompt: load the SR from its viewport badge
        page.get_by_text("LOAD", exact=True).first.click(timeout=15_000)
        question.first.wait_for(state="visible", timeout=15_000)
    page.get_by_role("button", name="Yes").first.click(timeout=10_000)
    panel_button = page.locator("[data-cy=trackedMeasurements-btn]")
    if panel_button.count():
        panel_button.first.click()
    panel = page.locator("[data-cy=trackedMeasurements-panel], [data-cy=measurements-panel]")
    deadline, listed = time.monotonic() + 30, []
    while not listed:
        text = " ".join(panel.all_inner_texts())
        listed = [float(v) for v in re.findall(pattern, text)]
        if time.monotonic() > deadline:
            shot = tmp_path / "ohif-measurements.png"
            page.screenshot(path=str(shot))
            raise AssertionError(f"nothing like {pattern!r} in the panel: {text!r} ({shot})")
        time.sleep(0.5)
    return listed


def _longest_run(mask: np.ndarray) -> int:
    """The longest run of True along any row of ``mask`` (a drawn edge, not text)."""
    best = 0
    for row in mask:
        padded = np.concatenate([[0], row.astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(padded))
        if edges.size:
            best = max(best, int((edges[1::2] - edges[::2]).max()))
    return best


def _log_in(page, base: str) -> None:
    page.goto(f"{base}/ui/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/worklist")


def _viewport(page) -> Any:
    """OHIF's first viewport once it shows, with the start-up dialogs dismissed."""
    viewport = page.locator(".cornerstone-viewport-element").first
    viewport.wait_for(state="visible", timeout=60_000)
    _click_if_there(page, "Skip all", 5_000)  # OHIF's onboarding tour
    _click_if_there(page, "Confirm and hide", 2_000)  # "for investigational use only"
    return viewport


def test_ohif_opens_the_study_with_the_ai_seg_and_sr(served, tmp_path, pydicom_file, debian_tool):
    chromium = debian_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    uid, numbers, label, seg_mask = _analysed_study(served, pydicom_file("MR_small.dcm"))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        failed: list[str] = []
        page.on(
            "response",
            lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        _log_in(page, served)
        link = page.locator(f'a.ohif[href="/ohif/viewer?StudyInstanceUIDs={uid}"]')
        assert link.count() == 1
        link.click()
        page.wait_for_url("**/ohif/viewer?StudyInstanceUIDs=*")
        viewport = _viewport(page)
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
        seg_pixels = int(seg_mask.sum())
        assert seg_mask.ndim == 2 and seg_pixels >= 50, (
            f"the SEG holds {seg_pixels} pixels: too few to see"
        )
        deadline = time.monotonic() + 20
        while _coloured(overlay := _pixels(viewport.screenshot())) <= _coloured(before) + (
            50 * seg_pixels
        ):
            if time.monotonic() > deadline:
                page.screenshot(path=str(tmp_path / "ohif-seg.png"))
                raise AssertionError(f"the SEG overlay did not appear ({tmp_path}/ohif-seg.png)")
            time.sleep(0.5)
        assert not _green(overlay).any(), "green before the SR was opened"
        # the SR opens in its viewport with the segment's outline (SCOORD POLYLINE) drawn in
        # green over the image, around where the SEG overlay was
        sr_thumb.dblclick()
        deadline = time.monotonic() + 30
        while (green := _green(_pixels(viewport.screenshot()))).sum() < 200:
            if time.monotonic() > deadline:
                page.screenshot(path=str(tmp_path / "ohif-sr.png"))
                raise AssertionError(f"no SR annotation in the viewport ({tmp_path}/ohif-sr.png)")
            time.sleep(0.5)
        # OHIF fits the image to the viewport, centred: the SEG's box in screen pixels
        height, width = green.shape
        scale = min(width / seg_mask.shape[1], height / seg_mask.shape[0])
        dy, dx = (height - scale * seg_mask.shape[0]) / 2, (width - scale * seg_mask.shape[1]) / 2
        s0, t0, s1, t1 = _box(seg_mask)
        expected = (s0 * scale + dy, t0 * scale + dx, (s1 + 1) * scale + dy, (t1 + 1) * scale + dx)
        drawn = _box(green)
        assert all(abs(a - b) <= 0.5 * scale + 4 for a, b in zip(drawn, expected, strict=True)), (
            f"the SR outline's box {drawn} is not the SEG's {expected}"
        )
        # the SR's long axis in the measurement panel: its Length is listed in mm
        (length,) = _sr_lengths(served, uid)
        listed = _tracked_values(page, r"(\d+(?:\.\d+)?)\s*mm\b", tmp_path)
        assert any(abs(v - length) <= 0.01 + 0.005 * length for v in listed), (listed, length)
        assert not [f for f in failed if "/dicomweb/" in f], failed
        browser.close()


def test_ohif_lists_a_detection_box_with_its_area(served, tmp_path, pydicom_file, debian_tool):
    """A detection finding's box, written as cornerstone's RectangleROI (sr_regions), is
    rehydrated into OHIF's measurement panel with its area in mm2 (a TID 1410 Planar ROI is
    drawn but not listed)."""
    from medsight.core.codes import MASS
    from medsight.core.findings import Finding, FindingKind, Region
    from medsight.io import read_image
    from medsight.reporting.dicom_sr import build_sr
    from medsight.reporting.sources import source_datasets

    chromium = debian_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    source = pydicom_file("MR_small.dcm")  # 64 x 64, 0.3125 mm square pixels
    img = read_image(source)
    box = Finding(
        MASS,
        "toy-det",
        "0.1",
        kind=FindingKind.DETECTION,
        probability=0.9,
        positive=True,
        region=Region((20, 30), (16, 12)),  # 16 columns x 12 rows: 5 mm x 3.75 mm
        source=img.source,
    )
    out = io.BytesIO()
    build_sr([box], source_datasets(img), series_number=77).save_as(out)
    token = httpx.post(
        f"{served}/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()["access_token"]
    files = [("files", ("mr.dcm", source.read_bytes())), ("files", ("sr.dcm", out.getvalue()))]
    resp = httpx.post(
        f"{served}/api/studies?analyse=false",
        files=files,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert resp.status_code == 201 and resp.json()["stored"] == 2, resp.text
    (uid,) = resp.json()["studies"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        _log_in(page, served)
        page.goto(f"{served}/ohif/viewer?StudyInstanceUIDs={uid}")
        viewport = _viewport(page)
        sr_thumb = page.get_by_text("S:77", exact=True)
        sr_thumb.wait_for(timeout=20_000)
        sr_thumb.dblclick()
        areas = _tracked_values(page, r"(\d+(?:\.\d+)?)\s*mm(?:2|\u00b2)", tmp_path)
        panel = page.locator("[data-cy=trackedMeasurements-panel], [data-cy=measurements-panel]")
        listed = " ".join(panel.all_inner_texts())
        page.screenshot(path=str(tmp_path / "ohif-box.png"))
        assert "Mass" in listed, listed  # the finding type, cornerstone's description
        # cornerstone recomputes the area from the rehydrated corners: 18.75 mm2, or with the
        # cornerstone3D of OHIF 3.12, which takes a rectangle's width and height from its top
        # and bottom edges (cornerstone3D issue 2630, fixed by pull request 2721), 5 x 5 mm
        assert len(areas) == 1 and areas[0] in (18.75, 25.0), (areas, listed)
        # the tracked box is drawn in yellow on the image: 16 x 12 image pixels, so the
        # corners went in as (column, row) in the order cornerstone reads them
        rgb = _pixels(viewport.screenshot())
        yellow = (rgb[..., 0] > 170) & (rgb[..., 1] > 170) & (rgb[..., 2] < 90)
        scale = min(rgb.shape[0], rgb.shape[1]) / 64  # OHIF fits the 64 x 64 image
        across, down = _longest_run(yellow), _longest_run(yellow.T)
        assert abs(across - 16 * scale) <= 0.5 * scale + 4, (across, 16 * scale)
        assert abs(down - 12 * scale) <= 0.5 * scale + 4, (down, 12 * scale)
        browser.close()


def _without_geometry(source: Path) -> pydicom.Dataset:
    """``source`` as a Secondary Capture without any geometry: no Pixel Spacing, orientation,
    position or Frame of Reference (a photograph, or a PNG converted to DICOM)."""
    ds = pydicom.dcmread(source)
    for keyword in (
        "PixelSpacing",
        "ImageOrientationPatient",
        "ImagePositionPatient",
        "FrameOfReferenceUID",
        "PositionReferenceIndicator",
        "SliceThickness",
        "SpacingBetweenSlices",
        "SliceLocation",
    ):
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.Modality = "OT"
    return ds


def test_ohif_opens_a_study_whose_seg_has_no_pixel_spacing(
    served, tmp_path, pydicom_file, debian_tool
):
    """A SEG on an image without pixel spacing (no mm, no patient geometry): OHIF 3.12 cannot
    place it (its loader needs a Plane Orientation, which medsight does not invent), so the
    viewer opens the study with its image only, renders it with no script error, and states
    why the segmentation is not there and where it is shown (medsight's study page)."""
    from medsight.io import read_image
    from medsight.models.spec import LabelSpec
    from medsight.reporting.dicom_seg import build_segmentation

    chromium = debian_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    source = tmp_path / "photo.dcm"
    _without_geometry(pydicom_file("MR_small.dcm")).save_as(source)
    img = read_image(source)
    pixels = np.asarray(img.array)
    mask = (pixels > np.percentile(pixels, 75)).astype(np.uint8)
    seg = build_segmentation(
        img.with_array(mask),
        img,
        [LabelSpec(index=1, name="bright tissue", color=(255, 0, 0))],
        algorithm_name="toy-seg",
        algorithm_version="1",
        series_number=88,
    )
    out = io.BytesIO()
    seg.save_as(out)
    token = httpx.post(
        f"{served}/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()["access_token"]
    files = [("files", ("img.dcm", source.read_bytes())), ("files", ("seg.dcm", out.getvalue()))]
    resp = httpx.post(
        f"{served}/api/studies?analyse=false",
        files=files,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert resp.status_code == 201 and resp.json()["stored"] == 2, resp.text
    (uid,) = resp.json()["studies"]
    image_series = pydicom.dcmread(source).SeriesInstanceUID
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        _log_in(page, served)
        page.goto(f"{served}/ohif/viewer?StudyInstanceUIDs={uid}")
        assert f"SeriesInstanceUIDs={image_series}" in page.url, page.url  # the image only
        viewport = _viewport(page)
        deadline = time.monotonic() + 30
        while _pixels(viewport.screenshot()).std() < 10:
            assert time.monotonic() < deadline, f"the OHIF viewport stayed blank: {errors}"
            time.sleep(0.5)
        notice = page.locator("#medsight-notice")
        assert notice.is_visible()
        text = notice.inner_text()
        assert "series 88" in text and "no pixel spacing" in text, text
        assert notice.locator("a").get_attribute("href") == f"/ui/studies/{uid}"
        page.get_by_text("S:1", exact=True).wait_for(timeout=20_000)  # the image's series
        assert page.get_by_text("S:88", exact=True).count() == 0  # the SEG is not offered
        time.sleep(2)  # OHIF would have failed by now
        assert not errors, errors
        page.screenshot(path=str(tmp_path / "ohif-no-spacing.png"))
        browser.close()
