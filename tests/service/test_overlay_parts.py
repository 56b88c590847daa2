"""Overlay PNGs for the viewer (label colours, heatmap slices), palette, and zip budgets."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from medsight.core.image import Image
from medsight.io import write_image
from medsight.reporting.overlay import LABEL_PALETTE, label_colour, render_overlay
from medsight.service import create_app
from medsight.service.viewer.overlays import heat_rgba, heatmap_png, label_png

from .conftest import login


def _rgba(png: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(png)).convert("RGBA"))


def test_label_png_uses_spec_colours_then_palette(tmp_path):
    arr = np.zeros((6, 4, 2), np.uint8)
    arr[1, 1, 1], arr[2, 3, 1] = 1, 2
    write_image(Image(arr), tmp_path / "m.nii.gz")
    rgba = _rgba(label_png(tmp_path / "m.nii.gz", 1, {1: (10, 20, 30)}))
    assert rgba.shape == (4, 6, 4)  # rows are j, columns i, as the slice PNGs
    assert tuple(rgba[1, 1]) == (10, 20, 30, 150)
    assert tuple(rgba[3, 2, :3]) == LABEL_PALETTE[1]  # label 2: no spec colour
    assert rgba[0, 0, 3] == 0
    assert _rgba(label_png(tmp_path / "m.nii.gz", 0, {}))[..., 3].max() == 0


def test_heatmap_slices_follow_the_volume(tmp_path):
    heat = np.zeros((5, 5, 3), np.float32)
    heat[2, 2, 0], heat[4, 0, 2] = 1.0, 0.5
    write_image(Image(heat), tmp_path / "h.nii.gz")
    first, last = (_rgba(heatmap_png(tmp_path / "h.nii.gz", k)) for k in (0, 2))
    assert first[2, 2, 3] > 200 and first[0, 4, 3] == 0
    assert last[0, 4, 3] > 0 and last[2, 2, 3] == 0
    assert heat_rgba(np.full((2, 2), 0.01))[..., 3].max() == 0  # ~0: transparent


def test_palette_is_distinct_and_stable():
    assert len(set(LABEL_PALETTE)) == len(LABEL_PALETTE) == 7
    assert label_colour(3) == label_colour(10) == LABEL_PALETTE[2]
    assert (255, 0, 0) not in LABEL_PALETTE and (0, 255, 0) not in LABEL_PALETTE
    # a report picture draws label 2 in the same colour whether or not label 1 is present
    img = Image(np.random.default_rng(0).normal(size=(40, 40)).astype(np.float32))
    only2 = np.zeros((40, 40), np.uint8)
    only2[10:30, 10:30] = 2
    pic = render_overlay(img, mask=Image(only2), min_size=0, legend=False)
    colours = {tuple(c) for c in pic.reshape(-1, 3)}
    assert LABEL_PALETTE[1] in colours and LABEL_PALETTE[0] not in colours


def _zip(n: int, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            zf.writestr(f"f{i}.dcm", payload)
    return buf.getvalue()


def test_zip_limits_hold_for_all_zips_of_an_upload(settings, ct_bytes):
    size = len(ct_bytes)
    cfg = settings.model_copy(update={"max_unzipped_bytes": 3 * size, "max_upload_files": 3})
    with TestClient(create_app(cfg)) as client:
        admin = login(client)
        one = ("files", ("a.zip", _zip(2, ct_bytes), "application/zip"))
        two = ("files", ("b.zip", _zip(2, ct_bytes), "application/zip"))
        resp = client.post("/api/studies", files=[one], headers=admin, params={"analyse": False})
        assert resp.status_code == 201, resp.text
        resp = client.post(
            "/api/studies", files=[one, two], headers=admin, params={"analyse": False}
        )
        assert resp.status_code == 413 and "b.zip" in resp.json()["detail"], resp.text
