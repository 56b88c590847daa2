import os
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # faulty_ops: importable by worker processes (they get sys.path)
    sys.path.insert(0, str(HERE))


def _write(src, path, patient, study_uid):
    ds = pydicom.dcmread(src)
    ds.PatientID, ds.PatientName = patient, f"Doe^{patient}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)


@pytest.fixture
def archive(tmp_path):
    """Three DICOM studies (A, two series, and B share a folder; C has its own) and a PNG."""
    src = get_testdata_file("CT_small.dcm", download=False)
    root = tmp_path / "archive"
    uids = [generate_uid() for _ in range(3)]
    _write(src, root / "mixed" / "a1.dcm", "PA", uids[0])  # study A: two series
    _write(src, root / "mixed" / "a2.dcm", "PA", uids[0])
    _write(src, root / "mixed" / "b.dcm", "PB", uids[1])
    _write(src, root / "own" / "c.dcm", "PC", uids[2])
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    PILImage.fromarray(ramp).save(root / "own2.png")
    return root


def loopback_only() -> bool:
    """This process's network namespace has no interface but the loopback one."""
    try:  # /proc/net follows the process's network namespace (/sys/class/net may not)
        lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    return sorted(line.split(":")[0].strip() for line in lines) == ["lo"]


@pytest.fixture(scope="session")
def isolated_network():
    """Ray's own servers (GCS, raylet) listen on every interface whatever address they are
    given, so the Ray tests run only in a network namespace holding nothing but loopback:
    ``scripts/test.sh`` runs them a second time under ``unshare -n`` with
    ``MEDSIGHT_RAY_ISOLATED=1``; anywhere else they are skipped, and an isolated run that is not
    isolated fails."""
    if os.environ.get("MEDSIGHT_RAY_ISOLATED") == "1":
        assert loopback_only(), "MEDSIGHT_RAY_ISOLATED=1 but this network has other interfaces"
        return
    pytest.skip("Ray tests run only in a loopback-only network namespace (scripts/test.sh)")
