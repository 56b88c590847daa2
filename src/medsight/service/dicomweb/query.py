"""QIDO-RS: study, series and instance records and the matching of query keys.

Supported keys (by keyword or tag, e.g. ``PatientID`` or ``00100020``) match the way DICOM's
C-FIND does (PS3.4 C.2.2.2): single value, UID list (comma or backslash separated), ``*`` /
``?`` wildcards, date ranges (``20240101-``, ``-20241231``, ``20240101-20241231``) and, with
``fuzzymatching=true``, person names by the start of any name part, ignoring case.  Any other
attribute of the returned level matches exactly.  ``includefield`` (``all`` or a list) adds
attributes of the first instance.

Examples
--------
>>> matches("20240315", "20240101-20241231", "DA")
True
>>> matches("Doe^Jane", "jan", "PN", fuzzy=True), matches("Doe^Jane", "jan", "PN")
(True, False)
>>> matches("CT", "MR,CT", "CS", multi=True)
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from medsight.core.errors import InvalidInputError
from medsight.service.dicomweb.index import Instance

__all__ = [
    "Level",
    "keyword_of",
    "matches",
    "records",
]

Level = str  # "study" | "series" | "instance"

STUDY_KEYS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDescription",
)
SERIES_KEYS = (
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "PerformedProcedureStepStartDate",
)
INSTANCE_KEYS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "BitsAllocated",
)
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}


def keyword_of(key: str) -> str:
    """The attribute keyword of a query key given as keyword or tag (``0020000D``)."""
    if tag_for_keyword(key) is not None:
        return key
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        keyword = keyword_for_tag(Tag(int(key, 16)))
        if keyword:
            return keyword
    raise InvalidInputError(f"query key {key[:40]!r}", "is not a DICOM attribute keyword or tag")


def _vr(keyword: str) -> str:
    try:
        return str(dictionary_VR(keyword))
    except KeyError:
        return "LO"


def matches(
    value: object, wanted: str, vr: str, *, fuzzy: bool = False, multi: bool = False
) -> bool:
    """Whether an attribute ``value`` (several values with ``multi``) matches ``wanted``."""
    if wanted == "":
        return True
    many = multi and isinstance(value, Iterable) and not isinstance(value, str)
    values = list(value) if many else [value]  # type: ignore[call-overload]
    return any(_match_one("" if v is None else str(v), wanted, vr, fuzzy) for v in values)


def _match_one(value: str, wanted: str, vr: str, fuzzy: bool) -> bool:
    if vr in ("DA", "TM", "DT") and "-" in wanted:
        low, _, high = wanted.partition("-")
        return (
            bool(value) and (not low or value >= low) and (not high or value[: len(high)] <= high)
        )
    if vr == "UI" or "," in wanted or "\\" in wanted:
        return value in {w.strip() for w in re.split(r"[,\\]", wanted) if w.strip()}
    if "*" in wanted or "?" in wanted:
        pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in wanted)
        flags = re.IGNORECASE if vr == "PN" else 0
        return re.fullmatch(pattern, value, flags) is not None
    if vr == "PN" and fuzzy:
        parts = re.split(r"[\^= ]+", value.lower())
        return any(p.startswith(wanted.lower()) for p in parts if p)
    if vr == "PN":
        return value.lower() == wanted.lower()
    return value == wanted


def _first(instances: Sequence[Instance], keyword: str) -> object:
    for inst in instances:
        if keyword in inst.header and inst.header[keyword].value not in (None, ""):
            return inst.header[keyword].value
    return None


def _record(
    group: Sequence[Instance], level: Level, include: set[str] | None, all_fields: bool
) -> Dataset:
    """The QIDO record of one study, series or instance (``group``: its instances)."""
    keys = list(STUDY_KEYS)
    if level in ("series", "instance"):
        keys += SERIES_KEYS
    if level == "instance":
        keys += INSTANCE_KEYS
    ds = Dataset()
    for keyword in keys:
        value = _first(group, keyword)
        if value is not None:
            setattr(ds, keyword, value)
    if level == "study":
        ds.ModalitiesInStudy = sorted({str(i.header.get("Modality", "OT")) for i in group})
        ds.NumberOfStudyRelatedSeries = len({i.series for i in group})
        ds.NumberOfStudyRelatedInstances = len(group)
    elif level == "series":
        ds.NumberOfSeriesRelatedInstances = len(group)
    extra = group[0].header if all_fields else None
    if extra is not None:
        for elem in extra:
            if elem.tag.group > 0x0002 and elem.tag not in ds and elem.VR != "SQ":
                ds.add(elem)
    for keyword in include or ():
        if keyword not in ds:
            value = _first(group, keyword)
            if value is not None:
                setattr(ds, keyword, value)
    return ds


def _groups(instances: Iterable[Instance], level: Level) -> dict[str, list[Instance]]:
    groups: dict[str, list[Instance]] = {}
    for inst in instances:
        key = {"study": inst.study, "series": inst.series}.get(level, inst.sop)
        groups.setdefault(key, []).append(inst)
    return groups


def records(
    instances: Iterable[Instance], level: Level, params: Mapping[str, Sequence[str]]
) -> list[Dataset]:
    """The records at ``level`` that match the query ``params`` (each key: its values).

    Raises
    ------
    InvalidInputError
        An unknown key, or a ``limit`` / ``offset`` that is not a non-negative integer.
    """
    fuzzy = any(v.lower() == "true" for v in params.get("fuzzymatching", []))
    include: set[str] = set()
    all_fields = False
    for raw in params.get("includefield", []):
        for item in filter(None, (s.strip() for s in raw.split(","))):
            if item == "all":
                all_fields = True
            else:
                include.add(keyword_of(item))
    filters = [
        (keyword_of(key), value)
        for key, values in params.items()
        if key not in _CONTROL
        for value in values
    ]
    out = []
    for _key, group in _groups(instances, level).items():
        rec = _record(group, level, include | {k for k, _ in filters}, all_fields)
        if all(_matches_record(rec, group, k, v, fuzzy) for k, v in filters):
            out.append(rec)
    out.sort(
        key=lambda d: (
            str(d.get("StudyDate", "")),
            str(d.get("SeriesNumber", "")),
            str(d.get("InstanceNumber", "")),
        )
    )
    offset = _count(params, "offset", 0)
    limit = _count(params, "limit", None)
    return out[offset : None if limit is None else offset + limit]


def _matches_record(
    rec: Dataset, group: Sequence[Instance], key: str, want: str, fuzzy: bool
) -> bool:
    if key == "ModalitiesInStudy":
        mods = {str(i.header.get("Modality", "")) for i in group}
        return not want or bool(mods & {w.strip() for w in re.split(r"[,\\]", want)})
    if key == "SOPClassUID" and "SOPClassUID" not in rec:
        return any(matches(i.header.get("SOPClassUID", ""), want, "UI") for i in group)
    value = rec.get(key)
    if value is None:
        return want == ""
    multi = isinstance(value, MultiValue | list)
    return matches(value, want, _vr(key), fuzzy=fuzzy, multi=multi)


def _count(params: Mapping[str, Sequence[str]], name: str, default: int | None) -> int | None:
    values = params.get(name)
    if not values:
        return default
    if not values[-1].isdigit():
        raise InvalidInputError(f"query {name}", f"{values[-1][:20]!r} is not a whole number")
    return int(values[-1])
