"""The DICOM source instances behind an Image, in the Image's slice order.

Derived objects (SEG, SR, SC, Parametric Map) copy the patient and study attributes of their
source (highdicom copies every root attribute of the Patient and Study modules).  A value
invalid for its VR in the source (a Patient's Age ``"42"`` instead of ``"042Y"``, a date
``"2004-01-19"``) would make every derived object invalid, and guessing what it meant is
guessing a patient fact: such an attribute is left out of the headers handed to highdicom (set
empty when the derived object requires it, type 2), never repaired, and
:func:`source_header_problems` says which were left out.  The source files are never modified.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image

__all__ = ["check_same_grid", "sanitise_patient_study", "source_datasets", "source_header_problems"]

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


#: Patient and Study attributes checked when the SOP class is not in highdicom's tables.
_PATIENT_STUDY_FALLBACK = (
    *_TYPE2_COPIED,
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "OtherPatientIDs",
    "EthnicGroup",
    "PatientComments",
    "StudyDescription",
)


def _patient_study_keywords(ds: Dataset) -> list[tuple[str, str]]:
    """``(keyword, type)`` of the root attributes of the Patient and Study modules of ``ds``'s
    IOD, as highdicom copies them into derived objects."""
    try:  # highdicom's own tables of the standard (what SOPClass copies from)
        from highdicom._standard_utils import (
            get_iod_module_map,
            get_module_attribute_map,
            get_sop_class_iod_map,
        )

        iod = get_sop_class_iod_map()[str(ds.get("SOPClassUID", ""))]
        modules = [m["key"] for m in get_iod_module_map()[iod] if m["ie"] in ("Patient", "Study")]
        attributes = get_module_attribute_map()
        return [
            (str(i["keyword"]), str(i["type"]))
            for m in modules
            for i in attributes[m]
            if not i["path"]
        ]
    except (ImportError, KeyError):
        return [(k, "2" if k in _TYPE2_COPIED else "3") for k in _PATIENT_STUDY_FALLBACK]


def sanitise_patient_study(ds: Dataset) -> list[str]:
    """Leave out of ``ds`` (in place) the Patient / Study attributes whose value is invalid
    for their VR (empty when type 2); return one line per attribute left out.

    UIDs are not touched (a derived object must reference its study as the source does).

    Examples
    --------
    >>> ds = Dataset()
    >>> ds.SOPClassUID, ds.PatientAge, ds.PatientSex = "1.2.840.10008.5.1.4.1.1.4", "42", "F"
    >>> sanitise_patient_study(ds)
    ["Patient's Age (0010,1010): '42' is not a valid AS value; left out (never guessed)"]
    >>> "PatientAge" in ds, ds.PatientSex
    (False, 'F')
    """
    from pydicom import config
    from pydicom.datadict import dictionary_description, dictionary_VR, tag_for_keyword
    from pydicom.valuerep import validate_value

    problems = []
    for keyword, kind in _patient_study_keywords(ds):
        tag = tag_for_keyword(keyword)
        if tag is None or tag not in ds:
            continue
        vr = dictionary_VR(tag)
        if vr in ("SQ", "UI"):
            continue
        try:  # reading the element decodes it: a DS such as "1.2.3" fails here already
            elem = ds[tag]
            if elem.value is None or elem.value == "":
                continue
            vr = elem.VR
            for value in elem.value if elem.VM > 1 else [elem.value]:
                # DS / IS as written in the file, not the parsed number
                text = getattr(value, "original_string", None) if vr in ("DS", "IS") else None
                validate_value(vr, value if text is None else text, config.RAISE)
        except (ValueError, TypeError, OverflowError):
            raw = ds.get_item(tag).value
            shown = "a value" if vr == "PN" else repr(_text(raw))
            what = "set empty" if kind in ("1", "2") else "left out"
            problems.append(
                f"{dictionary_description(tag)} ({tag >> 16:04X},{tag & 0xFFFF:04X}): {shown} "
                f"is not a valid {vr} value; {what} (never guessed)"
            )
            del ds[tag]
            if kind in ("1", "2"):  # type 1 is unusual here; empty keeps the object readable
                ds.add_new(tag, vr, "")
    return problems


def _text(raw: object) -> str:
    if isinstance(raw, bytes):
        return raw.decode("latin-1", "replace").strip(" \x00")
    return str(raw)


def source_header_problems(image: Image) -> list[str]:
    """What :func:`source_datasets` leaves out of the derived objects' patient and study
    attributes (invalid for their VR), read from the first source file; ``[]`` when the
    Image has no DICOM source."""
    files = image.meta.get("files")
    if image.source is None or not files:
        return []
    try:
        ds = pydicom.dcmread(Path(files[0]), stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError):
        return []
    return [f"source DICOM header: {p}" for p in sanitise_patient_study(ds)]


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
        sanitise_patient_study(ds)  # invalid values left out, never repaired (module docs)
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
