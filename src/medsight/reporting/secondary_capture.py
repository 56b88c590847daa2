"""A DICOM Secondary Capture of an overlay picture, in the source study (highdicom).

The SC carries over what a reader needs to place the picture: the source's laterality
(General Series Laterality, or the source's Image/Frame Laterality when that is what it has;
the SC IOD has no Image Laterality of its own), body part, anatomical orientation type and
the picture's patient orientation, derived from the source's Image Orientation (Patient)
(picture columns run along the image's ``i`` axis, rows along ``j``) or copied from the
source's own Patient Orientation for projection images.
Nothing is invented: what the source does not say is left empty (Type 2), never guessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from medsight.core.errors import InvalidInputError

if TYPE_CHECKING:
    from highdicom.sc import SCImage

__all__ = ["UNPAIRED_BODY_PARTS", "build_secondary_capture", "patient_orientation_of"]

_LPS_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))

#: Body Part Examined terms of unpaired structures: General Series Laterality (Type 2C, "required
#: if the body part examined is a paired structure") must then be absent.  Every other term,
#: an unknown one included, is taken as paired.  This is the list dicom3tools' dciodvfy checks.
# fmt: off
UNPAIRED_BODY_PARTS = frozenset((
    "ABDOMEN", "ABDOMENPELVIS", "AORTA", "BACK", "BLADDER", "BRAIN", "CEREBELLUM", "CERVIX",
    "CHEST", "CHESTABDOMEN", "CHESTABDPELVIS", "CIRCLEOFWILLIS", "COCCYX", "COLON",
    "CORONARYARTERY", "CSPINE", "CTSPINE", "DUODENUM", "ESOPHAGUS", "FACE", "GALLBLADDER", "HEAD",
    "HEADNECK", "HEART", "ILEUM", "ILIUM", "JAW", "JEJUNUM", "LARYNX", "LIVER", "LSPINE",
    "LSSPINE", "MAXILLA", "MEDIASTINUM", "MOUTH", "NECK", "NECKCHEST", "NECKCHESTABDOMEN",
    "NECKCHESTABDPELV", "NOSE", "PANCREAS", "PELVIS", "PENIS", "PHARYNX", "PROSTATE", "RECTUM",
    "SCALP", "SKULL", "SPINE", "SPLEEN", "SSPINE", "STERNUM", "STOMACH", "THYMUS", "THYROID",
    "TLSPINE", "TONGUE", "TRACHEA", "TSPINE", "URETER", "URETHRA", "UTERUS", "VAGINA", "VULVA",
    "WHOLEBODY",
))
# fmt: on


def _letters(vector: NDArray[np.floating]) -> str:
    """Patient Orientation letters of a direction in LPS, most significant first.

    Examples
    --------
    >>> _letters(np.array([0.0, 0.0, -1.0])), _letters(np.array([-0.8, 0.6, 0.0]))
    ('F', 'RP')
    """
    order = np.argsort(-np.abs(vector), kind="stable")
    return "".join(
        _LPS_LETTERS[a][0 if vector[a] > 0 else 1] for a in order if abs(vector[a]) > 1e-3
    )


def _laterality_of(reference: Dataset) -> str:
    """R or L from the source's series, image or (shared) frame laterality, else ''."""
    for keyword in ("Laterality", "ImageLaterality"):
        value = str(reference.get(keyword) or "").strip().upper()
        if value in ("R", "L"):
            return value
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in list(reference.get(group) or [])[:1]:
            for anatomy in item.get("FrameAnatomySequence") or []:
                value = str(anatomy.get("FrameLaterality") or "").strip().upper()
                if value in ("R", "L"):
                    return value
    return ""


def patient_orientation_of(reference: Dataset) -> tuple[str, str] | None:
    """The picture's (row, column) Patient Orientation from its source, or ``None`` if unknown.

    Examples
    --------
    >>> ds = Dataset(); ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal
    >>> patient_orientation_of(ds)
    ('P', 'F')
    >>> patient_orientation_of(Dataset()) is None
    True
    """
    quadruped = str(reference.get("AnatomicalOrientationType") or "").upper() == "QUADRUPED"
    iop = None if quadruped else reference.get("ImageOrientationPatient")  # letters: biped
    if iop is None and not quadruped:
        for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            for item in list(reference.get(group) or [])[:1]:
                for plane in item.get("PlaneOrientationSequence") or []:
                    iop = plane.get("ImageOrientationPatient")
    if iop is not None and len(iop) == 6:
        cosines = np.asarray([float(v) for v in iop])
        row, col = _letters(cosines[:3]), _letters(cosines[3:])
        if row and col:
            return row, col
    given = reference.get("PatientOrientation")
    if given is not None and not isinstance(given, str) and len(given) == 2:
        return str(given[0]), str(given[1])
    return None


def build_secondary_capture(
    picture: NDArray[np.uint8],
    reference: Dataset,
    *,
    series_number: int = 903,
    description: str = "medsight AI overlay (preliminary)",
) -> SCImage:
    """Wrap an RGB picture ``(rows, columns, 3)`` as a Secondary Capture in ``reference``'s study.

    The picture is marked as derived and burned-in annotated (it contains drawn contours,
    a legend and a colour bar).  Laterality, body part and orientation come from
    ``reference`` (see the module's docs).
    """
    import highdicom as hd

    if picture.ndim != 3 or picture.shape[-1] != 3 or picture.dtype != np.uint8:
        raise InvalidInputError(
            "picture", f"expected uint8 RGB (rows, cols, 3), got {picture.shape}"
        )
    orientation = patient_orientation_of(reference)
    quadruped = str(reference.get("AnatomicalOrientationType") or "").upper() == "QUADRUPED"
    body_part = str(reference.get("BodyPartExamined") or "").strip().upper()
    paired = body_part not in UNPAIRED_BODY_PARTS
    laterality = _laterality_of(reference) if paired else ""
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
        laterality=laterality or None,
        # highdicom insists on valid biped letters: the real value is set just below
        patient_orientation=("L", "P"),
        series_description=description,
    )
    if quadruped:
        sc.AnatomicalOrientationType = "QUADRUPED"
    # Type 2C: present; empty when the source does not tell (never a guess)
    sc.PatientOrientation = list(orientation) if orientation is not None else ""
    if body_part:
        sc.BodyPartExamined = reference.BodyPartExamined
    # General Series Laterality, Type 2C: for a paired (or unknown) body part present, empty
    # when the source does not state the side; for an unpaired one absent.
    if paired and not laterality:
        sc.Laterality = ""
    sc.BurnedInAnnotation = "YES"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    return sc
