"""The OHIF route and a SEG that OHIF 3.12 cannot place (its image has no pixel spacing or
patient geometry): the viewer opens the study without it and says why; a SEG with geometry is
offered as before.  A fake, tiny build stands in for @ohif/app (the browser test of the same
is in test_ohif_browser.py)."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pydicom
from fastapi.testclient import TestClient

from medsight.io import read_image
from medsight.models.spec import LabelSpec
from medsight.reporting.dicom_seg import build_segmentation
from medsight.service import ServiceSettings, create_app

from .conftest import ADMIN_PASSWORD, login

GEOMETRY = (
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "SliceThickness",
    "SliceLocation",
)


def _client(tmp_path, tiny_package) -> TestClient:
    dist = tmp_path / "ohif-dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><html><head></head><body></body></html>")
    (dist / "app-config.js").write_text("window.config = {};")
    settings = ServiceSettings(
        home=tmp_path / "home",
        packages=[tiny_package.path],
        admin_password=ADMIN_PASSWORD,
        run_worker=False,
        viewer_dist=dist,
    )
    return TestClient(create_app(settings))


def _study(client, tmp_path, source, *, geometry: bool) -> tuple[str, str, str]:
    """Upload ``source`` (stripped of its geometry unless ``geometry``) and a SEG on it: the
    study, image series and SEG series UIDs."""
    ds = pydicom.dcmread(source)
    if not geometry:
        for keyword in GEOMETRY:
            if keyword in ds:
                delattr(ds, keyword)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.Modality = "OT"
    ds.save_as(tmp_path / "img.dcm")
    img = read_image(tmp_path / "img.dcm")
    mask = (np.asarray(img.array) > np.percentile(img.array, 75)).astype(np.uint8)
    seg = build_segmentation(
        img.with_array(mask),
        img,
        [LabelSpec(index=1, name="bright")],
        algorithm_name="t",
        algorithm_version="1",
        series_number=88,
    )
    out = io.BytesIO()
    seg.save_as(out)
    files = [
        ("files", ("img.dcm", (tmp_path / "img.dcm").read_bytes())),
        ("files", ("seg.dcm", out.getvalue())),
    ]
    resp = client.post("/api/studies?analyse=false", files=files, headers=login(client))
    assert resp.status_code == 201 and resp.json()["stored"] == 2, resp.text
    return resp.json()["studies"][0], str(ds.SeriesInstanceUID), str(seg.SeriesInstanceUID)


def test_a_seg_without_geometry_is_left_out_and_the_reason_shown(
    tmp_path, tiny_package, pydicom_file
):
    with _client(tmp_path, tiny_package) as client:
        uid, image, seg = _study(client, tmp_path, pydicom_file("MR_small.dcm"), geometry=False)
        client.post("/ui/login", data={"username": "admin", "password": ADMIN_PASSWORD})
        resp = client.get(f"/ohif/viewer?StudyInstanceUIDs={uid}", follow_redirects=False)
        assert resp.status_code == 303
        query = parse_qs(urlsplit(resp.headers["location"]).query)
        assert query == {"StudyInstanceUIDs": [uid], "SeriesInstanceUIDs": [image]}  # no SEG
        page = client.get(resp.headers["location"]).text
        assert 'id="medsight-notice"' in page and "Segmentation series 88" in page
        assert "no pixel spacing" in page and f'href="/ui/studies/{uid}"' in page
        # asked for the SEG explicitly: no redirect, but the notice still says why
        asked = client.get(
            f"/ohif/viewer?StudyInstanceUIDs={uid}&SeriesInstanceUIDs={seg}",
            follow_redirects=False,
        )
        assert asked.status_code == 200 and 'id="medsight-notice"' in asked.text


def test_a_seg_with_geometry_is_offered_as_before(tmp_path, tiny_package, pydicom_file):
    with _client(tmp_path, tiny_package) as client:
        uid, _, _ = _study(client, tmp_path, pydicom_file("MR_small.dcm"), geometry=True)
        client.post("/ui/login", data={"username": "admin", "password": ADMIN_PASSWORD})
        resp = client.get(f"/ohif/viewer?StudyInstanceUIDs={uid}", follow_redirects=False)
        assert resp.status_code == 200 and "medsight-notice" not in resp.text
