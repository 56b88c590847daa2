"""The DICOM source instances behind an Image, in the Image's slice order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image

__all__ = ["check_same_grid", "source_datasets"]

_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def source_datasets(image: Image) -> list[Dataset]:
    """Headers (no pixel data) of the files an Image was read from, in slice order.

    Raises
    ------
    InvalidInputError
        The Image did not come from DICOM files, or the files no longer match it.
    """
    files = image.meta.get("files")
    ref = image.source
    if ref is None or not files:
        raise InvalidInputError("image", "was not read from DICOM files: no source to reference")
    datasets = []
    for f in files:
        try:
            datasets.append(pydicom.dcmread(Path(f), stop_before_pixels=True))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise InvalidInputError(f, f"source file cannot be read again: {exc}") from None
    for ds in datasets:
        # Type 2 patient/study attributes may be absent in the wild; derived objects must
        # carry them, empty if unknown (the source files themselves are never modified).
        for keyword in _TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, "")
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    expected = list(dict.fromkeys(ref.sop_instance_uids))
    if uids != expected:
        raise InvalidInputError(
            files[0], "source files changed since the image was read (SOP Instance UIDs differ)"
        )
    return datasets


def check_same_grid(mask: Image, image: Image) -> None:
    """Raise unless ``mask`` lies on exactly the voxel grid of ``image``."""
    if mask.shape != image.shape or not np.allclose(mask.affine, image.affine, atol=1e-3):
        raise InvalidInputError(
            "mask",
            f"grid {mask.shape} does not match the source image {image.shape}; resample the "
            "prediction back to the input geometry first",
        )
