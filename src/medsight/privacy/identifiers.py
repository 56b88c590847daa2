"""The identifying values of one DICOM header, and matching them in text that OCR read.

Burned-in text is compared with the header's own values: the patient's name (``LAST^FIRST``
as stored, ``First Last`` as people write it, each component), IDs (patient, accession, other
patient IDs), institution and physician names, and dates in the ways people write them
(``20240131``, ``2024-01-31``, ``31/01/2024``, ``01/31/2024``, ``1/31/2024``, ``31.01.2024``,
``31-Jan-2024``, ``Jan 31 2024``, ``24-01-31``, ...).  Beside those, generic patterns catch what
the header does not hold: any date, and ID-like tokens (6+ characters, 4+ of them digits).

OCR confuses look-alike characters (``0``/``O``, ``1``/``I``/``l``, ``5``/``S``, ``8``/``B``), so
both sides are folded to one canonical character before matching, spaces and punctuation are
dropped, and a value of 6 or more characters also matches with one edit.

Values are never shown in clear: :func:`mask` keeps the first character of each word.

Examples
--------
>>> from pydicom import examples
>>> values = header_values(examples.rgb_color)
>>> sorted({v.kind for v in values})
['date', 'device', 'id', 'institution', 'name']
>>> [m.kind for m in match_text("BAPTIST MED CTR", values)]
['institution']
>>> [m.kind for m in match_text("exam 5/25/2011 ok", [])]
['date pattern']
>>> mask("BAPTIST MED CTR")
'B****** M** C**'
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = [
    "IdentifyingValue",
    "Match",
    "date_strings",
    "header_values",
    "mask",
    "match_text",
    "normalise",
]

# header attributes whose values identify: keyword -> kind
_NAME_KEYWORDS = (
    "PatientName",
    "PatientBirthName",
    "PatientMotherBirthName",
    "OtherPatientNames",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
)
_ID_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "IssuerOfPatientID")
_INSTITUTION_KEYWORDS = ("InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName")
_DATE_KEYWORDS = (
    "PatientBirthDate",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "InstanceCreationDate",
)
_OTHER_KEYWORDS = {"StationName": "device", "PatientAddress": "address"}
_OTHER_KEYWORDS |= {"PatientTelephoneNumbers": "phone"}

_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec"
_MONTH_NAMES = "january|february|march|april|june|july|august|september|october|november|december"
_DATE_PATTERNS = [
    re.compile(r"(?<!\d)(19|20)\d\d[-/. ]?(0[1-9]|1[0-2])[-/. ]?(0[1-9]|[12]\d|3[01])(?!\d)"),
    re.compile(r"(?<!\d)\d{1,2}\s?[-/.]\s?\d{1,2}\s?[-/.]\s?(\d{4}|\d{2})(?!\d)"),
    re.compile(r"(?<!\d)\d{2}[-/.]\d{1,2}[-/.]\d{1,2}(?!\d)"),
    re.compile(
        rf"(?<![a-z])\d{{1,2}}[-/. ]?({_MONTH_NAMES}|{_MONTHS})[a-z]*[-/., ]*(\d{{4}}|\d{{2}})",
        re.IGNORECASE,
    ),
    re.compile(
        rf"(?<![a-z])({_MONTH_NAMES}|{_MONTHS})[a-z]*[-/. ]*\d{{1,2}}(st|nd|rd|th)?[,. ]*\d{{4}}",
        re.IGNORECASE,
    ),
]
_ID_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])(?=(?:[A-Za-z\-]*\d){4})[A-Za-z0-9\-]{6,}(?![A-Za-z0-9])"
)
# OCR look-alikes folded to one character (upper case first)
_FOLD = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "|": "1", "!": "1"})
_FOLD_MORE = str.maketrans({"S": "5", "B": "8", "Z": "2", "G": "6", "T": "7"})


@dataclass(frozen=True)
class IdentifyingValue:
    """One identifying value of a header: ``kind`` (name, id, institution, date, ...) and the
    text as it may be written in the pixels."""

    kind: str
    value: str

    @property
    def folded(self) -> str:
        """The value as :func:`normalise` folds it."""
        return normalise(self.value)


@dataclass(frozen=True)
class Match:
    """A value or pattern found in a text; ``masked`` is safe to print."""

    kind: str
    masked: str


def normalise(text: str) -> str:
    """Upper case, letters and digits only, OCR look-alikes folded.

    Examples
    --------
    >>> normalise("Baptist Med. Ctr") == normalise("BAPT1ST MED CTR")
    True
    """
    kept = "".join(ch for ch in text.upper() if ch.isalnum())
    return kept.translate(_FOLD).translate(_FOLD_MORE)


def mask(value: str) -> str:
    """The first character of each word, the rest as ``*``.

    Examples
    --------
    >>> mask("Zebulon^Quixote"), mask("20240131")
    ('Z****** Q******', '2*******')
    """
    words = [w for w in re.split(r"[\s^=]+", value.strip()) if w]
    return " ".join(w[0] + "*" * (len(w) - 1) for w in words)


def date_strings(value: str) -> list[str]:
    """A DICOM date (``YYYYMMDD``) in the formats people and devices write.

    Examples
    --------
    >>> date_strings("20240131")[:5]
    ['20240131', '2024-01-31', '2024/01/31', '2024.01.31', '31/01/2024']
    >>> "Jan 31 2024" in date_strings("20240131") and "31-Jan-2024" in date_strings("20240131")
    True
    """
    try:
        day = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return []
    formats = ["%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y"]
    formats += ["%d-%m-%Y", "%m-%d-%Y", "%d-%b-%Y", "%d %b %Y", "%b %d %Y", "%b %d, %Y"]
    formats += ["%d %B %Y", "%B %d %Y", "%B %d, %Y", "%y-%m-%d", "%d/%m/%y", "%m/%d/%y"]
    formats += ["%d.%m.%y", "%d%b%Y", "%y%m%d"]
    out = [day.strftime(f) for f in formats]
    d, m, y = day.day, day.month, day.year
    out += [f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}", f"{d}-{m}-{y}", f"{m}-{d}-{y}"]
    return list(dict.fromkeys(out))


def _strings(value: object) -> list[str]:
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


def _name_forms(name: str) -> list[IdentifyingValue]:
    parts = [p.strip() for p in name.split("=")[0].split("^")]
    family, given = [*parts, "", ""][:2]
    forms = {name.replace("^", " ").strip(), f"{given} {family}".strip()}
    forms.add(f"{family}, {given}".strip(", "))
    forms.update(p for p in re.split(r"[\s^=,]+", name) if len(p) >= 3)
    return [IdentifyingValue("name", f) for f in forms if len(normalise(f)) >= 3]


def header_values(ds: Dataset) -> list[IdentifyingValue]:
    """Identifying values of ``ds`` (top level and sequences one level deep), longest first."""
    found: set[IdentifyingValue] = set()
    datasets = [ds]
    for elem in ds:
        if elem.VR == "SQ":
            datasets += list(elem.value or [])[:16]
    for data in datasets:
        for keyword in _NAME_KEYWORDS:
            for text in _strings(data.get(keyword)):
                found.update(_name_forms(text))
        for keyword in _ID_KEYWORDS:
            found.update(IdentifyingValue("id", t) for t in _strings(data.get(keyword)))
        for keyword in _INSTITUTION_KEYWORDS:
            found.update(IdentifyingValue("institution", t) for t in _strings(data.get(keyword)))
        for keyword, kind in _OTHER_KEYWORDS.items():
            found.update(IdentifyingValue(kind, t) for t in _strings(data.get(keyword)))
        for keyword in _DATE_KEYWORDS:
            for text in _strings(data.get(keyword)):
                if text[:8] not in _DUMMIES:
                    found.update(IdentifyingValue("date", d) for d in date_strings(text[:8]))
    useful = [v for v in found if len(v.folded) >= 3 and v.value.upper() not in _DUMMIES]
    return sorted(useful, key=lambda v: (-len(v.value), v.kind, v.value))


_DUMMIES = {"ANONYMOUS", "ANONYMIZED", "ANON", "UNKNOWN", "NONE", "19000101"}


def _near(needle: str, hay: str) -> bool:
    """Whether ``needle`` occurs in ``hay`` with at most one edit (approximate substring)."""
    previous = [0] * (len(hay) + 1)
    for i, ch in enumerate(needle, start=1):
        current = [i] + [0] * len(hay)
        for j, other in enumerate(hay, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ch != other))
        previous = current
    return min(previous) <= 1


def match_text(text: str, values: list[IdentifyingValue]) -> list[Match]:
    """Header values and generic patterns (dates, ID-like strings) found in ``text``.

    Parameters
    ----------
    text : str
        A line of text read by OCR.
    values : list of IdentifyingValue
        The header's identifying values (:func:`header_values`).

    Returns
    -------
    list of Match
        One per value or pattern found; the value itself only masked.
    """
    folded = normalise(text)
    matches: list[Match] = []
    seen: set[str] = set()
    for value in values:
        needle = value.folded
        hit = needle in folded or (len(needle) >= 6 and _near(needle, folded))
        if len(needle) <= 4 and hit:  # short values only as a whole word of the text
            hit = any(normalise(w) == needle for w in re.split(r"[\s,;:/]+", text))
        if hit and needle not in seen:
            seen.add(needle)
            matches.append(Match(value.kind, mask(value.value)))
    dates: list[tuple[int, int]] = []
    for pattern in _DATE_PATTERNS:
        for found in pattern.finditer(text):
            dates.append(found.span())
            matches.append(Match("date pattern", mask(found.group(0))))
    for found in _ID_PATTERN.finditer(text):
        start, end = found.span()
        if not any(start < e and s < end for s, e in dates):  # a date is no ID
            matches.append(Match("id pattern", mask(found.group(0))))
    return matches
