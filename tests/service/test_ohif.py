"""OHIF under /ohif/: the missing-build page, the public-path rewrite, the generated config,
the login redirect and the worklist links (a fake, tiny build stands in for @ohif/app)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from medsight.service import ServiceSettings, create_app
from medsight.service.viewer.ohif import app_config

from .conftest import ADMIN_PASSWORD, login

_INDEX = (
    "<!doctype html><html><head><script>window.PUBLIC_URL = '/';</script>"
    '<script src="/app-config.js"></script><link href="/app.bundle.css" rel="stylesheet">'
    '<script defer="defer" src="/app.bundle.1.js"></script></head><body></body></html>'
)


@pytest.fixture
def fake_dist(tmp_path):
    dist = tmp_path / "ohif-dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(_INDEX)
    (dist / "app-config.js").write_text("window.config = {routerBasename: null};")
    (dist / "app.bundle.1.js").write_text('x;__webpack_require__.p = "/";y')
    (dist / "plain.js").write_text('var p = "/";')
    (dist / "assets" / "logo.svg").write_text("<svg/>")
    return dist


def _app(tmp_path, tiny_package, dist):
    settings = ServiceSettings(
        home=tmp_path / "home",
        packages=[tiny_package.path],
        admin_password=ADMIN_PASSWORD,
        run_worker=False,
        viewer_dist=dist,
    )
    return create_app(settings)


def _upload(client, headers, ct_bytes) -> str:
    files = [("files", ("ct.dcm", ct_bytes, "application/dicom"))]
    resp = client.post("/api/studies", files=files, headers=headers, params={"analyse": "false"})
    return resp.json()["studies"][0]


def test_missing_build_gives_a_404_page_and_no_worklist_link(tmp_path, tiny_package, ct_bytes):
    with TestClient(_app(tmp_path, tiny_package, tmp_path / "nothing-here")) as client:
        resp = client.get("/ohif/viewer?StudyInstanceUIDs=1.2.3")
        assert resp.status_code == 404 and "scripts/setup-viewer.sh" in resp.text
        assert "MEDSIGHT_VIEWER_DIST" in resp.text
        _upload(client, login(client), ct_bytes)
        client.post("/ui/login", data={"username": "admin", "password": ADMIN_PASSWORD})
        page = client.get("/ui/worklist").text
        assert "/ui/studies/" in page and "/ohif/viewer" not in page


def test_build_served_under_ohif_with_generated_config(tmp_path, tiny_package, ct_bytes, fake_dist):
    with TestClient(_app(tmp_path, tiny_package, fake_dist)) as client:
        viewer_route = "/ohif/viewer?StudyInstanceUIDs=1.2.3"
        resp = client.get(viewer_route, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"] == "/ui/login"
        uid = _upload(client, login(client), ct_bytes)
        client.post("/ui/login", data={"username": "admin", "password": ADMIN_PASSWORD})
        page = client.get(viewer_route)
        assert page.status_code == 200
        assert "window.PUBLIC_URL = '/ohif/'" in page.text
        assert 'src="/ohif/app.bundle.1.js"' in page.text and 'src="/app' not in page.text
        bundle = client.get("/ohif/app.bundle.1.js").text
        assert bundle == 'x;__webpack_require__.p = "/ohif/";y'
        assert client.get("/ohif/plain.js").text == 'var p = "/";'  # served as shipped
        assert client.get("/ohif/assets/logo.svg").text == "<svg/>"
        config = client.get("/ohif/app-config.js")
        assert config.headers["content-type"].startswith("text/javascript")
        assert config.text == app_config() and "routerBasename: '/ohif'" in config.text
        assert 'window.location.origin + "/dicomweb"' in config.text
        assert "no service worker" in client.get("/ohif/init-service-worker.js").text
        worklist = client.get("/ui/worklist").text
        assert f'href="/ohif/viewer?StudyInstanceUIDs={uid}"' in worklist


def test_path_traversal_stays_inside_the_build(tmp_path, tiny_package, fake_dist):
    (fake_dist.parent / "secret.txt").write_text("secret")
    with TestClient(_app(tmp_path, tiny_package, fake_dist)) as client:
        client.post("/ui/login", data={"username": "admin", "password": ADMIN_PASSWORD})
        for path in ("/ohif/..%2Fsecret.txt", "/ohif/%2E%2E/secret.txt"):
            assert "secret" not in client.get(path).text
