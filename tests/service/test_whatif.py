"""What-if API (issue 22): occlusion on demand, risk inputs, segmentation edits; roles, audit.

The packages are built so the right answer is known: the classifier reads only one block of
the image (:mod:`.whatif_models`), the risk model's weights are fixed, and a brush stroke's
voxels are computed independently here and compared exactly with the mask and the SEG read back
through :mod:`medsight.io` (highdicom).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from medsight.service import ServiceSettings, create_app

from .conftest import ADMIN_PASSWORD, add_user, login, wait_job
from .whatif_models import region_classifier, toy_risk

REGION_BOX = [4, 4, 32, 32]  # image pixels covering the network block the classifier reads


@pytest.fixture(scope="module")
def world(tmp_path_factory, seg_package, pydicom_file):
    """One served app with a finished job on MR_small (classifier, segmenter, risk model)."""
    root = tmp_path_factory.mktemp("whatif")
    region, risk = region_classifier(root), toy_risk(root)
    settings = ServiceSettings(
        home=root / "home",
        packages=[region.path, seg_package.path, risk.path],
        admin_password=ADMIN_PASSWORD,
        worker_poll_s=0.05,
    )
    with TestClient(create_app(settings)) as client:
        admin = login(client)
        files = [("files", ("mr.dcm", pydicom_file("MR_small.dcm").read_bytes()))]
        body = client.post("/api/studies", files=files, headers=admin).json()
        job = wait_job(client, admin, body["jobs"][0]["id"])
        assert job["state"] == "done", job
        users = {
            "admin": admin,
            "viewer": add_user(client, admin, "vera", "viewer"),
            "radiologist": add_user(client, admin, "rad", "radiologist"),
        }
        yield {
            "client": client,
            "job": job["id"],
            "users": users,
            "home": settings.home,
            "region": region.id,
            "seg": seg_package,
            "risk": risk.id,
        }


def _occlude(world, who="viewer", **body):
    body = {"package": world["region"], "region": {"box": REGION_BOX}} | body
    url = f"/api/jobs/{world['job']}/whatif/occlusion"
    return world["client"].post(url, json=body, headers=world["users"][who])


def _audit(world, action):
    lines = (world["home"] / "audit" / "service.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    return [r for r in records if r.get("action") == action]


def test_occluding_the_region_the_model_reads_changes_it_keeping_it_does_not(world):
    hidden = _occlude(world, mode="occlude", fill="zero")
    assert hidden.status_code == 200, hidden.text
    res = hidden.json()
    before = res["original"]["probabilities"]["finding"]
    # logit = 0.01 * mean(block) - 2: MR_small's block is bright (p ~ 0.86), zero -> sigmoid(-2)
    assert before > 0.8
    assert res["changed"]["probabilities"]["finding"] == pytest.approx(1 / (1 + np.e**2), abs=1e-3)
    assert res["difference"]["finding"] < -0.6 and not res["abstained"]
    assert res["original"]["findings"][0]["positive"] is True
    assert res["changed"]["findings"][0]["positive"] is False
    kept = _occlude(world, mode="keep", fill="zero").json()  # everything else zeroed
    assert kept["changed_pixels"] > 0
    assert abs(kept["difference"]["finding"]) < 1e-3
    elsewhere = _occlude(world, region={"box": [40, 40, 64, 64]}, fill="mean").json()
    assert abs(elsewhere["difference"]["finding"]) < 1e-3
    poly = _occlude(world, region={"polygon": [[4, 4], [32, 4], [32, 32], [4, 32]]}, fill="blur")
    assert poly.status_code == 200 and poly.json()["difference"]["finding"] != 0


def test_occlusion_sensitivity_map_on_demand_points_at_the_region(world):
    res = _occlude(world, sensitivity_map=True).json()
    png = base64.b64decode(res["sensitivity_map_png"])
    rgba = np.asarray(PILImage.open(io.BytesIO(png)))
    assert rgba.shape == (64, 64, 4)  # rows j, columns i of the 64 x 64 slice
    alpha = rgba[..., 3].astype(float)
    inside = alpha[10:26, 10:26].mean()
    outside = alpha[40:, 40:].mean()
    assert inside > outside + 50
    assert _occlude(world).json()["sensitivity_map_png"] is None  # only on demand


def test_occlusion_refuses_bad_regions_and_other_models(world):
    assert _occlude(world, region={"box": [10, 10, 5, 20]}).status_code == 400
    assert _occlude(world, region={"box": [100, 100, 120, 120]}).status_code == 400
    assert _occlude(world, region={"box": [1, 1, 4, 4], "slice": 3}).status_code == 400
    assert _occlude(world, region={"box": [1, 2, 3]}).status_code == 422
    assert _occlude(world, package=world["seg"].id).status_code == 400  # not a classifier
    assert _occlude(world, package="nope@1").status_code == 404


def test_occlusion_abstains_when_the_model_withholds(world, monkeypatch):
    """A changed image the model's own gate rejects gets no number, only the reasons."""
    import medsight.analysis.runners as runners

    real = runners.run_package

    def gated(package, image, **kw):
        out = real(package, image, **kw)
        if float(np.asarray(image.array)[8:28, 8:28].max()) == 0:  # the occluded image
            return out.withhold("unlike the training data (test gate)")
        return out

    monkeypatch.setattr(runners, "run_package", gated)
    res = _occlude(world, fill="zero").json()
    assert res["abstained"] and res["difference"] is None
    assert res["changed"]["probabilities"] == {} and res["changed"]["findings"] == []
    assert "unlike the training data" in res["message"]


def _risk(world, who="viewer", **body):
    body = {"package": world["risk"]} | body
    return world["client"].post("/api/risk/whatif", json=body, headers=world["users"][who])


def test_risk_moves_in_the_direction_of_the_changed_inputs(world):
    base = {"age": 60, "sex": "F", "smoker": "no"}
    older = _risk(world, baseline=base, inputs={"age": 75})
    assert older.status_code == 200, older.text
    res = older.json()
    assert res["original"]["value"] == pytest.approx(1 / (1 + np.exp(0.5)), abs=1e-6)
    assert res["changed"]["value"] == pytest.approx(1 / (1 + np.exp(-1.0)), abs=1e-6)
    assert res["difference"] > 0 and res["changed_fields"] == ["age"]
    quit_ = _risk(world, baseline=base | {"smoker": "yes"}, inputs={"smoker": "no"}).json()
    assert quit_["difference"] < 0
    younger = _risk(world, baseline=base, inputs={"age": 40}).json()
    assert younger["difference"] < 0
    spec = world["client"].get(
        f"/api/risk/{world['risk']}/inputs", headers=world["users"]["viewer"]
    )
    ages = {i["name"]: i for i in spec.json()}["age"]
    assert (ages["min"], ages["max"]) == (18, 100)


def test_risk_inputs_are_checked_against_the_model(world):
    base = {"age": 60, "sex": "F", "smoker": 0}
    for inputs, field in [
        ({"bmi": 30}, "inputs.bmi"),
        ({"age": 150}, "inputs.age"),
        ({"age": "old"}, "inputs.age"),
        ({"sex": "X"}, "inputs.sex"),
        ({"smoker": "sometimes"}, "inputs.smoker"),
    ]:
        resp = _risk(world, baseline=base, inputs=inputs)
        assert resp.status_code == 422, (inputs, resp.text)
        assert field in resp.json()["detail"]
    missing = _risk(world, baseline={"age": 60, "sex": "F"}, inputs={"age": 70}).json()
    assert missing["difference"] is None and missing["changed"]["value"] is None
    assert "smoker" in missing["changed"]["withheld"][0]


def _edit(world, who="radiologist", **body):
    body = {"label": 1} | body
    url = f"/api/jobs/{world['job']}/segmentation/edit"
    return world["client"].post(url, json=body, headers=world["users"][who])


def _versions(world):
    url = f"/api/jobs/{world['job']}/segmentation/versions"
    return world["client"].get(url, headers=world["users"]["viewer"]).json()


def _read_seg(world, seg_file, pydicom_file, tmp_path):
    from medsight.io.study import read_study

    folder = tmp_path / "readback"
    folder.mkdir(exist_ok=True)
    shutil.copy(pydicom_file("MR_small.dcm"), folder / "mr.dcm")
    shutil.copy(world["home"] / "results" / world["job"] / seg_file, folder / "seg.dcm")
    (seg,) = [e for e in read_study(folder) if e.modality == "SEG"]
    return seg, np.asarray(seg.load().array)


def test_brush_edit_changes_mask_measurements_and_writes_a_new_readable_seg(
    world, pydicom_file, tmp_path
):
    import pydicom

    from medsight.io import read_image

    results = world["home"] / "results" / world["job"]
    before = (
        world["client"]
        .get(f"/api/jobs/{world['job']}/segmentation/versions", headers=world["users"]["viewer"])
        .json()
    )
    original = before[0]
    assert original["version"] == 1 and original["by"] == "model"
    original_bytes = hashlib.sha256((results / original["seg_file"]).read_bytes()).hexdigest()
    base = np.asarray(read_image(results / before[-1]["mask_file"]).array)[:, :, 0]
    stroke = {"op": "brush", "slice": 0, "points": [[10, 50], [30, 50]], "radius": 3}
    resp = _edit(world, operations=[stroke], note="extend to the lower edge")
    assert resp.status_code == 201, resp.text
    new = resp.json()
    assert new["version"] == before[-1]["version"] + 1 and new["by"] == "rad"
    assert new["parent_version"] == before[-1]["version"]
    # the stroke, computed independently: pixels within 3 of the segment j = 50, 10 <= i <= 30
    ii, jj = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    dist = np.hypot(np.clip(ii, 10, 30) - ii, jj - 50)
    expected = base.copy()
    expected[dist <= 3] = 1
    mask = np.asarray(read_image(results / new["mask_file"]).array)[:, :, 0]
    np.testing.assert_array_equal(mask, expected)
    assert new["changed_voxels"] == int((expected != base).sum()) > 0
    area = {m["concept"]: m["value"] for m in new["measurements"]}
    area_before = {m["concept"]: m["value"] for m in new["measurements_before"]}
    spacing = pydicom.dcmread(pydicom_file("MR_small.dcm")).PixelSpacing
    key = next(k for k in area if "area" in k.lower())
    assert area[key] == pytest.approx(expected.sum() * float(spacing[0]) * float(spacing[1]))
    assert area[key] > area_before.get(key, 0.0)
    # the new SEG: readable, exact voxels, next series, the editor named; the original kept
    seg_entry, voxels = _read_seg(world, new["seg_file"], pydicom_file, tmp_path)
    assert seg_entry.dicom.source_series is not None  # read on the MR series' own grid
    np.testing.assert_array_equal(voxels.reshape(64, 64), expected)
    ds = pydicom.dcmread(results / new["seg_file"])
    first = pydicom.dcmread(results / original["seg_file"])
    assert ds.SeriesInstanceUID != first.SeriesInstanceUID
    assert ds.SeriesNumber == max(v["series_number"] or 0 for v in before) + 1
    assert "rad" in ds.ContentDescription and ds.ContentLabel == "RAD"
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert hashlib.sha256((results / original["seg_file"]).read_bytes()).hexdigest() == (
        original_bytes
    )
    listed = (
        world["client"]
        .get(f"/api/jobs/{world['job']}/segmentation/versions", headers=world["users"]["viewer"])
        .json()
    )
    assert listed[-1]["version"] == new["version"] and listed[-1]["note"].startswith("extend")
    assert listed[-1]["operations"][0]["op"] == "brush"
    # erase the stroke again from that version: back to the model's pixels outside it
    erase = dict(stroke, op="erase")
    back = _edit(world, operations=[erase], from_version=new["version"]).json()
    after = np.asarray(read_image(results / back["mask_file"]).array)[:, :, 0]
    np.testing.assert_array_equal(after[dist <= 3], 0)
    np.testing.assert_array_equal(after[dist > 3], base[dist > 3])


def test_threshold_and_rle_edits(world):
    from medsight.io import read_image

    results = world["home"] / "results" / world["job"]
    model = np.asarray(read_image(results / _versions(world)[0]["mask_file"]).array) == 1
    low = _edit(world, operations=[{"op": "threshold", "value": 0.02}], from_version=1)
    assert low.status_code == 201, low.text
    lo = np.asarray(read_image(results / low.json()["mask_file"]).array) == 1
    assert lo[model].all()  # p >= 0.02 covers every pixel the model's argmax called the label
    high = _edit(world, operations=[{"op": "threshold", "value": 0.98}], from_version=1)
    if high.status_code == 201:  # else 0.98 reproduced the model's mask: nothing to save
        hi = np.asarray(read_image(results / high.json()["mask_file"]).array) == 1
        assert lo[hi].all() and hi.sum() < lo.sum()
    else:
        assert "change no voxel" in high.json()["detail"]
    counts = [64 * 3 + 5, 7, 64 * 64 - 64 * 3 - 12]  # row j = 3, columns i = 5..11
    rle = _edit(world, operations=[{"op": "brush", "slice": 0, "rle": counts}], from_version=1)
    assert rle.status_code == 201, rle.text
    m = np.asarray(read_image(results / rle.json()["mask_file"]).array)[:, :, 0]
    assert (m[5:12, 3] == 1).all()
    bad = _edit(world, operations=[{"op": "brush", "slice": 0, "rle": [1, 2]}])
    assert bad.status_code == 400 and "rle" in bad.json()["detail"]


def test_roles_and_authentication(world):
    client, job = world["client"], world["job"]
    stroke = {"op": "brush", "slice": 0, "points": [[5, 5]], "radius": 2}
    for method, url, body in [
        ("post", f"/api/jobs/{job}/whatif/occlusion", {"region": {"box": REGION_BOX}}),
        ("post", "/api/risk/whatif", {"package": world["risk"]}),
        ("post", f"/api/jobs/{job}/segmentation/edit", {"label": 1, "operations": [stroke]}),
        ("get", f"/api/jobs/{job}/segmentation/versions", None),
        ("get", f"/api/jobs/{job}/whatif", None),
    ]:
        kw = {"json": body} if body is not None else {}
        assert getattr(client, method)(url, **kw).status_code == 401, url
        bad = {"Authorization": "Bearer not-a-token"}
        assert getattr(client, method)(url, headers=bad, **kw).status_code == 401, url
    refused = _edit(world, who="viewer", operations=[stroke])
    assert refused.status_code == 403
    assert _edit(world, who="admin", operations=[stroke]).status_code == 201
    tools = client.get(f"/api/jobs/{job}/whatif", headers=world["users"]["viewer"]).json()
    assert tools["can_edit"] is False and tools["segmentations"] == [world["seg"].id]
    assert [f["package"] for f in tools["findings"]] == [world["region"]]
    assert tools["risk_models"][0]["package"] == world["risk"]


def test_what_ifs_are_audited_with_what_was_asked(world):
    _occlude(world, mode="keep", fill="blur")
    _risk(world, baseline={"age": 60, "sex": "F", "smoker": 0}, inputs={"age": 61})
    stroke = {"op": "brush", "slice": 0, "points": [[60, 60]], "radius": 2}
    edit = _edit(world, operations=[stroke]).json()
    occ = _audit(world, "whatif_occlusion")[-1]
    assert occ["actor"] == "vera" and occ["inputs"]["mode"] == "keep"
    assert occ["inputs"]["region"]["box"] == REGION_BOX and occ["inputs"]["job"] == world["job"]
    risk = _audit(world, "whatif_risk")[-1]
    assert risk["inputs"]["fields"] == ["age"]  # names only, not the values asked about
    assert "61" not in json.dumps(risk["inputs"]) and "60" not in json.dumps(risk["inputs"])
    rec = _audit(world, "edit_segmentation")[-1]
    assert rec["actor"] == "rad" and rec["inputs"]["version"] == edit["version"]
    assert rec["inputs"]["operations"] == [{"op": "brush", "slice": 0}]
    from medsight.privacy.audit import verify_log

    assert verify_log(world["home"] / "audit" / "service.jsonl").ok
