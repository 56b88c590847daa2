"""Fixtures for the service tests: a tiny package, settings in a temp home, a logged-in client."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medsight.models import ModelPackage
from medsight.service import ServiceSettings, create_app

ADMIN_PASSWORD = "admin-password-1"


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory, make_tiny_classifier) -> ModelPackage:
    return make_tiny_classifier(tmp_path_factory.mktemp("packages"))


@pytest.fixture(scope="session")
def seg_package(tmp_path_factory) -> ModelPackage:
    """A 2D MR segmentation package trained for one step on synthetic blobs (a few seconds)."""
    from medsight.training.plan import plan_from_dataset
    from medsight.training.segmentation import (
        SegTrainConfig,
        load_preprocessed,
        preprocess_dataset,
        train_segmentation,
    )

    from ..training.seg_synthetic import blob_dataset, tiny

    tmp = tmp_path_factory.mktemp("seg-package")
    ds = blob_dataset(2, n=3)
    plan = tiny(plan_from_dataset(ds))
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp / "p.npz"))
    res = train_segmentation(data, plan, SegTrainConfig(max_steps=1, device="cpu"), tmp)
    return ModelPackage.load(res.package)


@pytest.fixture
def settings(tmp_path, tiny_package) -> ServiceSettings:
    return ServiceSettings(
        home=tmp_path / "home",
        packages=[tiny_package.path],
        admin_password=ADMIN_PASSWORD,
        worker_poll_s=0.05,
    )


def login(client: TestClient, username: str = "admin", password: str = ADMIN_PASSWORD) -> dict:
    resp = client.post("/api/auth/login", data={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def add_user(client: TestClient, admin: dict, name: str, role: str) -> dict:
    resp = client.post(
        "/api/users",
        json={"username": name, "password": f"{name}-password", "role": role},
        headers=admin,
    )
    assert resp.status_code == 201, resp.text
    return login(client, name, f"{name}-password")


def wait_job(client: TestClient, headers: dict, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def admin(client) -> dict:
    return login(client)


@pytest.fixture
def ct_bytes(pydicom_file) -> bytes:
    return pydicom_file("CT_small.dcm").read_bytes()


@pytest.fixture(scope="session")
def orthanc(debian_tool, tmp_path_factory):
    """A real Orthanc with the DICOMweb plugin on 127.0.0.1 (Debian orthanc, orthanc-dicomweb)."""
    from .pacs_servers import _dicomweb_plugin, run_orthanc

    sbin = Path("/usr/sbin/Orthanc")  # Debian's location, often not on a user's PATH
    binary = str(sbin) if sbin.exists() else debian_tool("Orthanc")
    try:
        _dicomweb_plugin()
    except FileNotFoundError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{exc} is missing (scripts/system-deps.sh installs it)")
        pytest.skip(f"{exc} not installed")
    with run_orthanc(binary, tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture
def fhir_stub():
    from .pacs_servers import run_fhir_stub

    with run_fhir_stub() as stub:
        yield stub
