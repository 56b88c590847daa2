"""Fixtures of the privacy tests: a fixed key, the brain study de-identified once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medsight.privacy.batch import deidentify_folder
from medsight.privacy.keys import PseudonymKey
from medsight.privacy.profile import DeidConfig

# pydicom's bundled files used throughout: plain CT/MR, JPEG 2000 (compressed) NM secondary
# capture, an RT structure set (references in sequences), an SR (content tree), an image with an
# overlay, an ultrasound and an RGB JPEG secondary capture.
PYDICOM_FILES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "rtstruct.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
    "examples_overlay.dcm",
    "examples_rgb_color.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
)


@pytest.fixture(scope="session")
def key() -> PseudonymKey:
    return PseudonymKey(bytes(range(32)))


@pytest.fixture(scope="session")
def brain_study(shared_data) -> Path:
    return shared_data / "dicom" / "brain_mr_study1"


@pytest.fixture(scope="session")
def pydicom_folder(pydicom_file, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pydicom-in")
    for name in PYDICOM_FILES:
        shutil.copy(pydicom_file(name), folder / name)
    return folder


@pytest.fixture(scope="session")
def brain_deid(brain_study, key, tmp_path_factory):
    """The whole study (120 files, about a second on 2 workers) with the research options."""
    out = tmp_path_factory.mktemp("brain") / "out"
    config = DeidConfig(options=["retain-modified-dates", "retain-patient-characteristics"])
    report = deidentify_folder(brain_study, out, key, config, workers=2)
    return report, config
