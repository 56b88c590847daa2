"""A DICOM Secondary Capture of an overlay picture, in the source study (highdicom)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from medsight.core.errors import InvalidInputError

if TYPE_CHECKING:
    from highdicom.sc import SCImage

__all__ = ["build_secondary_capture"]


def build_secondary_capture(
    picture: NDArray[np.uint8],
    reference: Dataset,
    *,
    series_number: int = 903,
    description: str = "medsight AI overlay (preliminary)",
) -> SCImage:
    """Wrap an RGB picture ``(rows, columns, 3)`` as a Secondary Capture in ``reference``'s study.

    The picture is marked as derived and burned-in annotated (it contains drawn contours).
    """
    import highdicom as hd

    if picture.ndim != 3 or picture.shape[-1] != 3 or picture.dtype != np.uint8:
        raise InvalidInputError(
            "picture", f"expected uint8 RGB (rows, cols, 3), got {picture.shape}"
        )
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference,
        pixel_array=np.ascontiguousarray(picture),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medsight",
        patient_orientation=("L", "P"),
        series_description=description,
    )
    # General Series Laterality is type 2C (paired body parts): carry the reference's body part
    # so validators can evaluate the condition, or state laterality as unknown.
    if reference.get("BodyPartExamined"):
        sc.BodyPartExamined = reference.BodyPartExamined
    elif "Laterality" not in sc:
        sc.Laterality = ""
    sc.BurnedInAnnotation = "YES"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    return sc
