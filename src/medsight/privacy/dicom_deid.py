"""Apply the confidentiality profile to one DICOM dataset.

The profile is applied at every nesting level: an attribute inside a sequence item gets the same
action as at the top level, so identifiers in nested sequences go too, and UIDs that reference
other instances (Referenced SOP Instance UID in SEG, SR, KO, RT objects) are remapped with the
same keyed hash as the instances they point to.

Examples
--------
>>> from pydicom import examples
>>> from medsight.privacy.keys import PseudonymKey
>>> ds = examples.ct
>>> result = deidentify_dataset(ds, PseudonymKey(bytes(32)), DeidConfig())
>>> out = result.dataset
>>> out.PatientID == result.pseudonym_id and out.PatientIdentityRemoved
'YES'
>>> out.StudyInstanceUID.startswith("2.25.")
True
>>> out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
True
>>> str(ds.PatientName)  # the input is not modified
'CompressedSamples^CT1'
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian
from pydicom.valuerep import PersonName

from medsight import __version__
from medsight.privacy.keys import PseudonymKey
from medsight.privacy.profile import (
    Action,
    DeidConfig,
    Option,
    method_codes,
    method_description,
    resolve_action,
)

__all__ = ["DeidResult", "deidentify_dataset", "identifying_strings"]

TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST"})
TEXT_VRS = TEXT_VRS | {"TM", "UC", "UR", "UT"}
_FREE_TEXT_VRS = {"LT", "ST", "UT", "UC"}
_NUMERIC_VRS = {"FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"}
_DUMMY = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "PN": "ANONYMOUS",
    "AE": "ANONYMOUS",
    "AS": "000D",
    "DS": "0",
    "IS": "0",
    "UR": "",
}
_PATIENT_TAGS = (Tag("PatientName"), Tag("PatientID"))
_DATE_RE = re.compile(
    r"\b(\d{4})[-/.]?(\d{2})[-/.]?(\d{2})\b|\b(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})\b"
)
_PHONE_RE = re.compile(r"\+?\(?\d[\d\s().-]{7,}\d")


@dataclass
class DeidResult:
    """A de-identified dataset and what was done to it.

    Attributes
    ----------
    dataset : pydicom.dataset.Dataset
        The de-identified copy (the input is not modified).
    original_patient_id, original_patient_name : str
        For the optional re-identification table only; never written into the output.
    pseudonym_id : str
        The new Patient ID (and Patient's Name).
    date_shift_days : int or None
        The shift applied to dates (Retain Modified Dates), None if dates were not kept.
    original_study_uid : str
        The Study Instance UID before remapping (for the re-identification table).
    removed_private : int
        How many private elements were removed.
    """

    dataset: Dataset
    original_patient_id: str
    original_patient_name: str
    pseudonym_id: str
    date_shift_days: int | None
    original_study_uid: str
    removed_private: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class _Context:
    key: PseudonymKey
    config: DeidConfig
    shift: int | None
    identifiers: list[str]
    removed_private: int = 0
    dummy_content: bool = False


def _shift_date(value: str, days: int) -> str:
    value = value.strip()
    if len(value) < 8 or not value[:8].isdigit():
        return _DUMMY["DA"]
    try:
        day = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return _DUMMY["DA"]
    return (day + dt.timedelta(days=days)).strftime("%Y%m%d") + value[8:]


def _map_values(value: object, fn: object) -> object:
    if isinstance(value, MultiValue | list | tuple):
        return [fn(str(v)) for v in value]  # type: ignore[operator]
    return fn(str(value))  # type: ignore[operator]


def identifying_strings(ds: Dataset) -> list[str]:
    """Strings of ``ds`` that identify the patient, longest first: the values of every text
    attribute the Basic Profile does not keep (descriptors excepted: they are cleaned, not
    searched for), and the parts of person names.

    Used to clean free text (:attr:`Option.CLEAN_DESCRIPTORS`) and by the leak checker.

    Examples
    --------
    >>> from pydicom import examples
    >>> "CompressedSamples" in identifying_strings(examples.ct)
    True
    """
    basic = DeidConfig()
    descriptors = DeidConfig(options=[Option.CLEAN_DESCRIPTORS])
    found: set[str] = set()

    def visit(data: Dataset) -> None:
        for elem in data:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    visit(item)
                continue
            action = resolve_action(elem.tag, basic)
            if action in (None, Action.KEEP) or elem.VR not in TEXT_VRS - {"CS", "AS"}:
                continue
            if elem.VR != "PN" and resolve_action(elem.tag, descriptors) == Action.CLEAN:
                continue  # a descriptor: free text that may hold identifiers, not one itself
            values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
            for v in values:
                text = str(v).strip()
                if elem.VR == "PN":
                    found.update(p.strip() for p in re.split(r"[\^=]", text) if len(p.strip()) > 2)
                if len(text) > 2:
                    found.add(text)

    visit(ds)
    return sorted(found, key=lambda s: (-len(s), s))


def clean_text(text: str, identifiers: Iterable[str]) -> str:
    """Remove identifying strings, dates and phone numbers from free text.

    Text that is cleaned away entirely becomes ``REMOVED`` (so Type 1 text stays non-empty).

    Examples
    --------
    >>> clean_text("MRI for John Smith 2020-01-19, call 555 123 4567", ["John", "Smith"])
    'MRI for , call'
    >>> clean_text("John Smith", ["John", "Smith"])
    'REMOVED'
    >>> clean_text("Sagittal T1 for Ali", ["Ali"])
    'Sagittal T1 for'
    """
    original = text
    for ident in identifiers:
        # long identifiers go wherever they appear; short ones only as whole words, so that a
        # name part like "Ali" does not cut "Sagittal" apart
        pattern = re.escape(ident) if len(ident) >= 5 else rf"(?<!\w){re.escape(ident)}(?!\w)"
        text = re.sub(pattern, "", text, flags=re.IGNORECASE)
    text = _PHONE_RE.sub("", _DATE_RE.sub("", text))
    text = re.sub(r"\s{2,}", " ", text).strip(" ,;")
    return "REMOVED" if original.strip() and not text else text


def _dummy(elem: DataElement, ctx: _Context) -> object:
    vr = elem.VR
    if vr == "UI":
        return _map_values(elem.value, ctx.key.uid) if elem.value else elem.value
    if vr in ("DA", "DT") and ctx.shift is not None and elem.value:
        return _map_values(elem.value, lambda v: _shift_date(v, ctx.shift or 0))
    if vr in _DUMMY:
        return _DUMMY[vr]
    if vr in _NUMERIC_VRS:
        return 0
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b""
    return "ANONYMIZED"


def _clean(elem: DataElement, ctx: _Context) -> object:
    vr = elem.VR
    if not elem.value:
        return elem.value
    if vr in ("DA", "DT"):
        return _dummy(elem, ctx)
    if vr == "TM":  # dates move by whole days, so times of day are kept (Modified Dates option)
        return elem.value if ctx.shift is not None else _DUMMY["TM"]
    if vr in ("LO", "SH", "ST", "LT", "UT", "UC", "PN"):
        return _map_values(elem.value, lambda v: clean_text(v, ctx.identifiers))
    if vr == "UI":
        return _dummy(elem, ctx)
    if vr == "AE":
        return _DUMMY["AE"]
    return elem.value


def _apply(ds: Dataset, ctx: _Context) -> None:
    creators: dict[tuple[int, int], str] = {}
    kept_blocks: set[tuple[int, int]] = set()
    for tag in list(ds.keys()):
        tag = BaseTag(tag)
        if tag.group == 0x0002:
            continue
        if tag.element == 0x0000:  # retired group lengths would be wrong after removals
            del ds[tag]
            continue
        if tag.is_private:
            if tag.is_private_creator:
                creators[(tag.group, tag.element)] = str(ds[tag].value)
                continue
            block = (tag.group, tag.element >> 8)
            creator = ds.get((tag.group, block[1]))
            creator_text = "" if creator is None else str(creator.value)
            if ctx.config.is_safe_private(tag.group, creator_text, tag.element & 0xFF):
                kept_blocks.add(block)
                continue
            del ds[tag]
            ctx.removed_private += 1
            continue
        if ctx.config.remove_overlays and tag.group & 0xFF00 in (0x5000, 0x6000):
            del ds[tag]
            continue
        elem = ds[tag]
        action = resolve_action(tag, ctx.config)
        if elem.VR == "SQ":
            if action in (Action.REMOVE,):
                del ds[tag]
            elif action == Action.EMPTY:
                elem.value = Sequence()
            else:  # K, C, D, U and unlisted: keep the structure, clean what is inside
                dummy_content = ctx.dummy_content
                ctx.dummy_content = dummy_content or action == Action.DUMMY
                for item in elem.value or []:
                    _apply(item, ctx)
                ctx.dummy_content = dummy_content
            continue
        if action is None and elem.VR in _FREE_TEXT_VRS and elem.value:
            # Free text the table does not list may still name the patient.  Inside a sequence
            # the profile replaces with dummies (D, e.g. Content Sequence of an SR) it becomes a
            # dummy too; elsewhere every identifier of the dataset, dates and phone numbers are
            # stripped from it.
            if ctx.dummy_content:
                elem.value = "REMOVED"
            else:
                elem.value = _map_values(elem.value, lambda v: clean_text(v, ctx.identifiers))
            continue
        if action is None and elem.VR == "PN" and elem.value:
            # a person's name the table does not list (e.g. Secondary Reviewer Name): dummy
            elem.value = _DUMMY["PN"]
            continue
        if action is None and elem.VR == "UN":
            # a public tag pydicom does not know (newer than its dictionary): its bytes cannot
            # be inspected, so it may hide anything; drop it
            del ds[tag]
            continue
        if action is None or action == Action.KEEP:
            continue
        if action == Action.REMOVE:
            del ds[tag]
        elif action == Action.EMPTY:
            elem.value = b"" if elem.VR in ("OB", "OW", "UN") else None
        elif action in (Action.DUMMY, Action.UID):
            elem.value = _dummy(elem, ctx)
        elif action == Action.CLEAN:
            elem.value = _clean(elem, ctx)
    for (group, element), _creator in creators.items():
        if (group, element) not in kept_blocks:
            del ds[BaseTag((group << 16) | element)]
            ctx.removed_private += 1


def _cap_age(ds: Dataset) -> None:
    """Ages over 89 years become ``090Y`` (HIPAA Safe Harbor groups them as 90 or older)."""
    age = str(ds.get("PatientAge", "") or "")
    if len(age) == 4 and age[:3].isdigit() and age[3] == "Y" and int(age[:3]) > 89:
        ds.PatientAge = "090Y"


def _code_item(value: str, meaning: str, scheme: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def deidentify_dataset(
    ds: Dataset, key: PseudonymKey, config: DeidConfig, *, pixels_cleaned: bool = False
) -> DeidResult:
    """De-identify a copy of ``ds`` with the profile in ``config`` and the pseudonyms of ``key``.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The dataset; it is not modified.
    key : PseudonymKey
        The secret behind UIDs, the patient pseudonym and the date shift.
    config : DeidConfig
        Options of the profile.
    pixels_cleaned : bool
        Whether the caller blacked out burned-in text (adds the Clean Pixel Data code).

    Returns
    -------
    DeidResult
    """
    original_id = str(ds.get("PatientID", "") or "")
    original_name = str(ds.get("PatientName", "") or "")
    patient_key = original_id or original_name
    shift = key.date_shift_days(patient_key) if config.has(Option.RETAIN_MODIFIED_DATES) else None
    out = copy.deepcopy(ds)
    ctx = _Context(key=key, config=config, shift=shift, identifiers=identifying_strings(ds))
    _apply(out, ctx)

    _cap_age(out)
    pseudonym = key.patient_id(patient_key, config.patient_id_prefix)
    out.PatientID = pseudonym
    out.PatientName = PersonName(pseudonym.replace("-", "^"))
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = method_description()
    out.DeidentificationMethodCodeSequence = Sequence(
        [
            _code_item(c.value, c.meaning, c.scheme)
            for c in method_codes(config, pixels_cleaned=pixels_cleaned)
        ]
    )
    out.LongitudinalTemporalInformationModified = "MODIFIED" if shift is not None else "REMOVED"
    _rebuild_file_meta(ds, out)
    return DeidResult(
        dataset=out,
        original_patient_id=original_id,
        original_patient_name=original_name,
        pseudonym_id=pseudonym,
        date_shift_days=shift,
        original_study_uid=str(ds.get("StudyInstanceUID", "")),
        removed_private=ctx.removed_private,
    )


def _rebuild_file_meta(src: Dataset, out: Dataset) -> None:
    """A fresh file meta group: no source AE title, implementation of pydicom, new SOP UID."""
    old = getattr(src, "file_meta", None)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = out.get(
        "SOPClassUID", getattr(old, "MediaStorageSOPClassUID", None)
    )
    meta.MediaStorageSOPInstanceUID = out.get("SOPInstanceUID")
    syntax = getattr(old, "TransferSyntaxUID", None) if old is not None else None
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"MEDSIGHT_{__version__}"[:16]
    out.file_meta = meta
    out.preamble = b"\0" * 128
