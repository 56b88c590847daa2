"""Shared fixtures.

Real data lives in ``../shared/data`` beside the project root (or wherever ``MEDSIGHT_DATA``
points).  Tests reach it only through the ``shared_data`` fixture: locally a missing folder skips
those tests, under ``CI=true`` it fails them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("MEDSIGHT_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    """Each test starts with an empty process-wide model cache (medsight.inference.cache), so
    no test gets a predictor another test built (a spy on a constructor, a patched build)."""
    from medsight.inference.cache import clear

    clear()
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public data sets (``../shared/data``)."""
    path = _shared_data_dir()
    if not path.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared data folder {path} is missing (set MEDSIGHT_DATA)")
        pytest.skip(f"shared data folder {path} not present")
    return path


@pytest.fixture(scope="session")
def pydicom_file():
    """Path of one of pydicom's bundled test files, by name."""
    from pydicom.data import get_testdata_file

    def get(name: str) -> Path:
        path = get_testdata_file(name, download=False)
        if path is None:
            pytest.fail(f"pydicom's bundled test file {name} is missing")
        return Path(path)

    return get


def require_binary(name: str) -> str:
    """The path of a Debian tool; skip without it locally, fail without it under CI=true."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is missing (scripts/system-deps.sh installs it)")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture(scope="session")
def debian_tool():
    """``debian_tool(name)``: path of a Debian binary (skip locally, fail under CI=true)."""
    return require_binary


def build_tiny_classifier(folder: Path, name: str = "tiny-ct", modalities=("CT", "MR", "OT")):
    """A random-weight 2D binary ModelPackage saved in ``folder / name``."""
    from medsight.models.demo import demo_classifier

    return demo_classifier(folder, name, modalities)


@pytest.fixture(scope="session")
def make_tiny_classifier():
    """``make_tiny_classifier(folder, name=..., modalities=...)`` (for session fixtures)."""
    return build_tiny_classifier


@pytest.fixture
def tiny_classifier(tmp_path):
    """``tiny_classifier(name=..., modalities=...)``: a tiny package in this test's tmp_path."""

    def _package(name: str = "tiny-ct", modalities=("CT", "MR", "OT")):
        return build_tiny_classifier(tmp_path, name, modalities)

    return _package
