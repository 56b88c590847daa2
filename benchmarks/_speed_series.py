"""Build a long DICOM series from a real one, for the reading benchmark (``speed.py``).

The slices of a source series are repeated along the slice normal (each copy one slice
spacing further) with new SOP Instance UIDs, one shared new Series Instance UID and, on
request, a compressed transfer syntax (``pydicom``'s ``Dataset.compress``, encoders as
installed).  Pixel values and header attributes are otherwise the source's.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid


def make_long_series(source: Path, out: Path, n_slices: int, syntax: str | None = None) -> Path:
    """Write ``n_slices`` files under ``out`` from the series in folder ``source``."""
    files = sorted(p for p in source.iterdir() if p.is_file())
    dss = [pydicom.dcmread(p) for p in files]
    iop = np.array([float(v) for v in dss[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])))
    p0 = np.array([float(v) for v in dss[0].ImagePositionPatient])
    step = float(np.dot(normal, np.array([float(v) for v in dss[-1].ImagePositionPatient]) - p0))
    step /= max(len(dss) - 1, 1)
    series_uid = generate_uid()
    out.mkdir(parents=True, exist_ok=True)
    for k in range(n_slices):
        ds = copy.deepcopy(dss[k % len(dss)])  # compress() changes the file meta too
        ds.ImagePositionPatient = [f"{v:.4f}" for v in p0 + normal * step * k]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        if syntax is not None:
            ds.compress(syntax)
        ds.save_as(out / f"{k:05d}.dcm", enforce_file_format=True)
    return out
