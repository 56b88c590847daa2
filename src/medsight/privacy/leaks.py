"""The leak checker: is any identifying value of the input still somewhere in the output?

:func:`verify` collects, from every input file, the values the profile does not retain: names
(whole and each component), IDs, accession numbers, dates (also rewritten as ``YYYY-MM-DD``,
``DD/MM/YYYY``, ``MM/DD/YYYY``, ``DD.MM.YYYY``, ``19 Jan 2020``, ...), times, addresses, phone
numbers, institution and physician names, free text, every private attribute's value and every
instance UID; for NIfTI, PNG and JPEG files, the strings in their metadata.  It then searches each
output file's elements at every nesting level, private ones included, and the output's relative
path, case-insensitively and as substrings (UIDs by exact match), and reports every hit.

With ``ocr=True`` it also reads the pixels of every output image that may carry burned-in text
(:func:`medsight.privacy.pixels.read_burned_in`: the renderings the scrubber uses) and reports
each identifying value of the inputs' headers (names in both orders, IDs, institution, dates in
common formats; :func:`medsight.privacy.identifiers.header_values`) and any date it reads; an
ID-like string is a warning only.  Pixel hits carry the value masked (``B****** M** C**``).

Values that the input also holds inside attributes the profile retains (e.g. an Institution
Name ``TOSHIBA`` when the retained Manufacturer is ``TOSHIBA_MEC``) are not searched for: the
output may carry them legitimately, and very short values (under 4 characters, under 6 for digit
strings) and decimal numbers (measurements) are skipped: they would match everywhere by chance.
This makes the checker a strong net, not a proof: a value that is both identifying and
legitimately retained, or a 3-letter initial, is not reported.

Examples
--------
>>> import tempfile, pathlib, shutil
>>> from pydicom.data import get_testdata_file
>>> src = pathlib.Path(tempfile.mkdtemp())
>>> _ = shutil.copy(get_testdata_file("CT_small.dcm", download=False), src / "ct.dcm")
>>> copy = pathlib.Path(tempfile.mkdtemp())
>>> _ = shutil.copy(src / "ct.dcm", copy / "ct.dcm")
>>> report = verify(src, copy)  # an untouched copy leaks everything
>>> report.ok, any(h.value == "compressedsamples" for h in report.hits)
(False, True)
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from medsight.core.errors import EmptyInputError
from medsight.privacy.batch import iter_input_files
from medsight.privacy.identifiers import IdentifyingValue, header_values, mask
from medsight.privacy.other_formats import is_nifti, metadata_strings
from medsight.privacy.profile import (
    ALL_METHOD_CODES,
    Action,
    DeidConfig,
    Option,
    method_description,
    resolve_action,
)

__all__ = ["LeakHit", "LeakReport", "collect_identifiers", "date_variants", "verify"]

_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM"}
_TEXT_VRS |= {"UC", "UR", "UT"}
_BYTES_VRS = {"OB", "UN", "OW"}
_DUMMIES = {"anonymized", "anonymous", "19000101", "000000", "19000101000000"}
# text medsight itself writes: an input value inside it (e.g. "ANON") is not a leak
_OWN_TEXT = " ".join(
    ["anonymized anonymous removed anon", method_description()]
    + [c.meaning for c in ALL_METHOD_CODES]
).lower()
_NON_IMAGE = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class LeakHit:
    """One identifying input value (lower-cased) found in an output file."""

    file: str
    location: str
    value: str
    origin: str

    def __str__(self) -> str:
        return f"{self.file}: {self.location} contains {self.value!r} (from input {self.origin})"

    @property
    def masked(self) -> str:
        """The hit with the value masked (safe to print or log)."""
        return f"{self.file}: {self.location} contains '{mask(self.value)}' (from {self.origin})"


@dataclass
class LeakReport:
    """Hits of :func:`verify`; ``ok`` when there are none."""

    hits: list[LeakHit] = field(default_factory=list)
    warnings: list[LeakHit] = field(default_factory=list)
    files_checked: int = 0
    identifiers: int = 0

    @property
    def ok(self) -> bool:
        """True when no identifying value was found."""
        return not self.hits


def date_variants(value: str) -> list[str]:
    """A DICOM date ``YYYYMMDD`` written the ways people write dates.

    Examples
    --------
    >>> date_variants("20200119")[:6]
    ['20200119', '2020-01-19', '2020/01/19', '2020.01.19', '19/01/2020', '01/19/2020']
    """
    try:
        day = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return [value]
    formats = ["%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y"]
    formats += ["%d-%m-%Y", "%m-%d-%Y", "%d %b %Y", "%b %d, %Y", "%d %B %Y", "%B %d, %Y"]
    variants = [day.strftime(f) for f in formats]
    d, m, y, b, full = day.day, day.month, day.year, day.strftime("%b"), day.strftime("%B")
    variants += [f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}", f"{d} {b} {y}", f"{b} {d}, {y}"]
    variants += [f"{d} {full} {y}", f"{full} {d}, {y}"]
    return list(dict.fromkeys(variants))


def _values(value: object) -> list[str]:
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


def _bytes_strings(value: object) -> list[str]:
    if not isinstance(value, bytes) or len(value) > 65536:
        return []
    text = value.decode("latin-1")
    return [w.strip() for w in re.split(r"[\x00-\x1f\\]+", text) if w.strip().isprintable()]


def _worth_searching(value: str) -> bool:
    if value.lower() in _DUMMIES or value.lower() in _OWN_TEXT:
        return False
    try:
        float(value)
    except ValueError:
        return len(value) >= 4
    return value.isdigit() and len(value) >= 6  # measurements repeat by chance; IDs do not


def _walk(ds: Dataset, path: str = "") -> Iterator[tuple[str, DataElement, Dataset]]:
    """(location, element, the dataset holding it) for every element at every nesting level."""
    for elem in ds:
        where = f"{path}{elem.tag} {elem.keyword or 'private'}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                yield from _walk(item, f"{where}[{i}] > ")
        else:
            yield where, elem, ds


@dataclass
class _Identifiers:
    text: dict[str, str] = field(default_factory=dict)  # lower-case variant -> origin
    uids: dict[str, str] = field(default_factory=dict)
    retained: set[str] = field(default_factory=set)
    pixel_values: set[IdentifyingValue] = field(default_factory=set)

    def add(self, value: str, origin: str) -> None:
        if _worth_searching(value):
            self.text.setdefault(value.lower(), origin)


def collect_identifiers(in_path: Path, config: DeidConfig | None = None) -> _Identifiers:
    """Every identifying value of the files under ``in_path`` (see the module docs)."""
    config = config or DeidConfig()
    found = _Identifiers()
    for path in iter_input_files(in_path):
        if is_nifti(path) or path.name.lower().endswith(_NON_IMAGE):
            for word in metadata_strings(path):
                found.add(word, f"{path.name} metadata")
            continue
        try:
            ds = dcmread(path)
        except (InvalidDicomError, OSError, ValueError):
            continue
        for where, elem, parent in _walk(ds):
            _collect_element(found, elem, where, config, parent)
        found.pixel_values.update(_pixel_values(ds, config))
    retained = "\n".join(found.retained)
    found.text = {v: o for v, o in found.text.items() if v not in retained}
    found.uids = {u: o for u, o in found.uids.items() if len(u) >= 8 and "." in u}
    return found


def _pixel_values(ds: Dataset, config: DeidConfig) -> list[IdentifyingValue]:
    """Header values that must not be readable in the output's pixels (kept ones excepted)."""
    kept = set()
    if config.has(Option.RETAIN_INSTITUTION_IDENTITY):
        kept.add("institution")
    if config.has(Option.RETAIN_DEVICE_IDENTITY):
        kept.add("device")
    if config.has(Option.RETAIN_FULL_DATES):
        kept.add("date")
    return [v for v in header_values(ds) if v.kind not in kept]


def _collect_element(
    found: _Identifiers, elem: DataElement, where: str, config: DeidConfig, parent: Dataset
) -> None:
    tag, vr, value = elem.tag, elem.VR, elem.value
    if tag == 0x7FE00010:
        return
    if tag.is_private:
        if tag.is_private_creator:
            return
        creator = parent.get((tag.group, tag.element >> 8))
        creator_text = "" if creator is None else str(creator.value)
        if config.is_safe_private(tag.group, creator_text, tag.element & 0xFF):
            found.retained.update(v.lower() for v in _values(value))  # kept on purpose
            return
        if vr == "UI":
            found.uids.update({v: f"private {where}" for v in _values(value)})
        texts = _bytes_strings(value) if vr in _BYTES_VRS else []
        texts += _values(value) if vr in _TEXT_VRS else []
        for text in texts:
            found.add(text, f"private {where}")
        return
    action = resolve_action(tag, config)
    keep_times = config.has(Option.RETAIN_MODIFIED_DATES) and vr == "TM"
    cleaned_text = action == Action.CLEAN and vr not in ("DA", "DT", "TM", "UI", "AE")
    if action is None and vr in ("LT", "ST", "UT", "UC"):
        return  # unlisted free text is cleaned of identifiers: neither a source nor an excuse
    if action is None and vr == "PN":
        action = Action.DUMMY  # every person name counts, listed in the table or not
    if action in (None, Action.KEEP) or keep_times or cleaned_text:
        if vr in _TEXT_VRS:
            found.retained.update(v.lower() for v in _values(value))
        return
    if vr == "UI":
        found.uids.update({v: where for v in _values(value)})
        return
    if vr not in _TEXT_VRS:
        return
    for text in _values(value):
        if vr in ("DA", "DT"):
            for variant in date_variants(text[:8]):
                found.add(variant, where)
        if vr == "PN":
            for part in re.split(r"[\^=]", text):
                part = part.strip().lower()
                if len(part) >= 3 and part not in _OWN_TEXT:  # name parts: 3 letters will do
                    found.text.setdefault(part, where)
        found.add(text, where)


def _output_texts(path: Path, root: Path) -> list[tuple[str, str, bool]]:
    """(location, text, is_uid) for everything in one output file, path included."""
    rel = str(path.relative_to(root))
    texts = [("file path", rel, False)]
    if is_nifti(path) or path.name.lower().endswith(_NON_IMAGE):
        texts += [("metadata", w, False) for w in metadata_strings(path)]
        return texts
    try:
        ds = dcmread(path)
    except (InvalidDicomError, OSError, ValueError):
        return texts
    meta = getattr(ds, "file_meta", Dataset())
    for source in (meta, ds):
        for where, elem, _ in _walk(source):
            vr = elem.VR
            if elem.tag == 0x7FE00010:
                continue
            if vr == "UI":
                texts += [(where, v, True) for v in _values(elem.value)]
            elif vr in _TEXT_VRS:
                values = _values(elem.value)
                texts += [(where, v, False) for v in values]
            elif vr in _BYTES_VRS:
                texts += [(where, v, False) for v in _bytes_strings(elem.value)]
    return texts


def _pixel_hits(
    path: Path, rel: str, values: list[IdentifyingValue]
) -> tuple[list[LeakHit], list[LeakHit]]:
    """(leaks, warnings) OCR reads in the pixels of an output image flagged for burned-in text."""
    from medsight.privacy.pixels import FAILING_KINDS, burned_in_risk, read_burned_in

    try:
        ds = dcmread(path)
    except (InvalidDicomError, OSError, ValueError):
        return [], []
    if "PixelData" not in ds or not burned_in_risk(ds):
        return [], []
    leaks, warnings = [], []
    for found in read_burned_in(ds, values):
        where = "all frames" if found.frame is None else f"frame {found.frame}"
        left, top, width, height = found.box
        location = f"pixels (OCR, {where}, box {left},{top},{width}x{height})"
        hit = LeakHit(rel, location, found.masked, f"header {found.kind}")
        (leaks if found.kind in FAILING_KINDS else warnings).append(hit)
    return leaks, warnings


def _path_tokens(path: str) -> set[str]:
    """The runs of digits and letters in a path (a digit value must be one to count)."""
    return set(re.findall(r"[0-9]+|[a-z]+", path))


def verify(
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: DeidConfig | None = None,
    *,
    ocr: bool = False,
) -> LeakReport:
    """Search every output file for every identifying value of the input.

    Parameters
    ----------
    in_dir, out_dir : path
        The original data and the de-identified copy.
    config : DeidConfig, optional
        The options used; values they retain on purpose (e.g. age and sex under Retain Patient
        Characteristics) are not reported.
    ocr : bool
        Also read the pixels of output images that may carry burned-in text (see
        :func:`medsight.privacy.pixels.burned_in_risk`) with OCR and report identifying
        values and dates read there, masked (needs the ``tesseract`` binary).

    Returns
    -------
    LeakReport
    """
    in_path, out_path = Path(in_dir), Path(out_dir)
    identifiers = collect_identifiers(in_path, config)
    out_root = out_path if out_path.is_dir() else out_path.parent
    outputs = list(iter_input_files(out_path))
    if not outputs:
        raise EmptyInputError(out_path, "no output files to check")
    report = LeakReport(identifiers=len(identifiers.text) + len(identifiers.uids))
    pixel_values = sorted(identifiers.pixel_values, key=lambda v: (-len(v.value), v.value))
    for path in outputs:
        report.files_checked += 1
        texts = _output_texts(path, out_root)
        rel = str(path.relative_to(out_root))
        if ocr and not is_nifti(path) and not path.name.lower().endswith(_NON_IMAGE):
            leaks, warnings = _pixel_hits(path, rel, pixel_values)
            report.hits += leaks
            report.warnings += warnings
        lowered = [(where, text.lower(), is_uid) for where, text, is_uid in texts]
        blob = "\n".join(text for _, text, is_uid in lowered if not is_uid)
        for value, origin in identifiers.text.items():
            if value not in blob:
                continue
            for where, text, is_uid in lowered:
                if is_uid or value not in text:
                    continue
                if where == "file path" and value.isdigit() and value not in _path_tokens(text):
                    continue  # digits inside a keyed-hash UID name match by chance
                report.hits.append(LeakHit(rel, where, value, origin))
        for where, text, is_uid in lowered:
            if is_uid and text in identifiers.uids:
                report.hits.append(LeakHit(rel, where, text, identifiers.uids[text]))
    return report
