"""Reading DICOM headers safely, one file at a time.

A folder of DICOM files often holds other things too (a DICOMDIR, a README, thumbnails) and,
now and then, a damaged file.  :func:`read_header` parses a header without its pixels and turns
every way that can fail into a :class:`~medsight.core.errors.MedsightError` naming the file;
:func:`scan` runs it over many files and keeps the good and the bad apart so one bad file never
stops a series from loading.

pydicom warns (on stderr) about values that break their VR's rules and other oddities; those
warnings are captured instead (:func:`captured_warnings`), every header value is checked once
when it is read, and the messages become problem lines (:func:`header_problems`) that the
series lists.

Speed (a series is hundreds of files with nearly the same header): the value check is
remembered per distinct raw element (tag, VR, bytes, encoding, private creator, pydicom
settings) in a bounded memo, so a value seen in an earlier file is not converted again and
its problem lines (most often none) are repeated as they were; elements whose meaning depends
on the rest of the file (ambiguous VRs) are always converted.  The length check continues the
walk pydicom's parse stopped at (the Pixel Data element) instead of walking the file a second
time whenever that parse provably took the same path (no warning, the transfer syntax's
encoding, the dataset where the file meta says), and it records where the Pixel Data value
lies (:func:`pixel_data_location`) so native pixels can be read without a second parse.  The
header itself is parsed from the file's first 64 KiB in memory when that provably gives what
a parse of the file gives (:func:`_parse_in_memory`), and the cyclic garbage collector is
paused while a series is scanned (:func:`gc_paused`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import hashlib
import io
import os
import re
import threading
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.valuerep import AMBIGUOUS_VR

from medsight.core.errors import MedsightError, UnreadableFileError, short_reason

__all__ = [
    "RTSTRUCT_SOP_CLASS",
    "BadFile",
    "captured_warnings",
    "gc_paused",
    "header_problems",
    "pixel_data_location",
    "read_dataset",
    "read_header",
    "scan",
]

#: Values larger than this are not read with the header (they are checked against the file size).
_DEFER_BYTES = 1 << 20
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
#: RT Structure Set Storage: contours, no pixels, but read (rasterised) by io.dicom.rtstruct.
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


@dataclasses.dataclass(frozen=True)
class BadFile:
    """A file that could not be used, and why."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


_SEE_URL = re.compile(r"\s*Please see <[^>]*>.*$", re.DOTALL)
#: The attribute name a header's captured warnings are kept under (not a DICOM keyword).
_WARNINGS_ATTR = "medsight_header_warnings"


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Capture Python warnings (pydicom's) instead of printing them; yields their messages.

    Messages are one line each, without pydicom's link to the standard.

    Examples
    --------
    >>> import warnings
    >>> with captured_warnings() as caught:
    ...     warnings.warn("Invalid value for VR IS: '1A'. Please see <https://x> for more.")
    >>> caught
    ["Invalid value for VR IS: '1A'"]
    """
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        yield messages
    for r in records:
        text = _SEE_URL.sub("", str(r.message)).strip().rstrip(".")
        first = text.splitlines()[0] if text else type(r.message).__name__
        if first not in messages:
            messages.append(first)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (as it was, afterwards).

    Scanning a series keeps hundreds of headers of hundreds of elements alive; each automatic
    collection walks all of them, about a quarter of the scan time on a 300-file series.
    Memory is still freed by reference counting meanwhile; only reference cycles wait until
    the collector runs again.

    Examples
    --------
    >>> import gc
    >>> with gc_paused():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def header_problems(ds: Dataset) -> tuple[str, ...]:
    """The warnings pydicom gave while this header was read (see :func:`read_header`)."""
    return tuple(ds.__dict__.get(_WARNINGS_ATTR, ()))


@dataclasses.dataclass(frozen=True)
class PixelDataLocation:
    """Where a file's Pixel Data value lies, found while its header was checked.

    Set only when the header walk provably followed the path pydicom's full parse takes (see
    :func:`read_header`), so ``offset`` / ``length`` are the value pydicom would read.
    ``size`` and ``mtime_ns`` are the file's when scanned: a file changed since is read the
    ordinary way.
    """

    offset: int
    length: int
    size: int
    mtime_ns: int


#: Attribute name of a header's :class:`PixelDataLocation` (not a DICOM keyword).
_LOCATION_ATTR = "medsight_pixel_data_location"


def pixel_data_location(ds: Dataset) -> PixelDataLocation | None:
    """Where the Pixel Data value of a header read by :func:`read_header` lies, if known."""
    return ds.__dict__.get(_LOCATION_ATTR)


#: Remembered value checks: raw element key -> its problem lines (see :func:`_check_values`).
_VALUE_MEMO: dict[Hashable, tuple[str, ...]] = {}
_VALUE_MEMO_MAX = 20_000
_VALUE_MEMO_LOCK = threading.Lock()
#: Raw values up to this many bytes are part of the memo key; longer ones by a digest.
_VALUE_INLINE = 256


def _pydicom_settings() -> tuple[object, ...]:
    """The pydicom settings and hooks that change how a raw value converts (part of the key)."""
    from pydicom import config
    from pydicom.hooks import hooks

    return (
        config.settings.reading_validation_mode,
        config.convert_wrong_length_to_UN,
        config.replace_un_with_known_vr,
        config.settings.infer_sq_for_un_vr,
        config.use_DS_decimal,
        config.use_DS_numpy,
        config.use_IS_numpy,
        config.allow_DS_float,
        config.datetime_conversion,
        config.use_none_as_empty_text_VR_value,
        id(config.data_element_callback),
        repr(config.data_element_callback_kwargs),
        id(hooks.raw_element_vr),
        id(hooks.raw_element_value),
        repr(hooks.raw_element_kwargs),
    )


@functools.lru_cache(maxsize=4096)
def _ambiguous_in_dictionary(tag: int) -> bool:
    """Whether the dictionary VR of ``tag`` is ambiguous (``US or SS`` ...)."""
    try:
        return dictionary_VR(tag) in AMBIGUOUS_VR
    except KeyError:
        return False


@functools.lru_cache(maxsize=4096)
def _may_be_sequence(tag: int, vr: str | None) -> bool:
    """Whether a raw element may convert to a sequence (VR SQ, or a VR still to look up)."""
    if vr == "SQ":
        return True
    if vr is not None and vr != "UN":
        return False
    if tag & 0x10000:
        return True  # private: the private dictionary decides
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


_PIXEL_REPRESENTATION = 0x00280103


def _memo_key(
    ds: Dataset, raw: RawDataElement, context: int, tags: dict[int, BaseTag]
) -> Hashable | None:
    """What a raw element's conversion depends on, or None if it also depends on the rest.

    Not remembered: elements with an ambiguous VR (``US or SS`` ...), corrected from other
    elements of the dataset, and sequences while Pixel Representation is still raw (converting
    a sequence converts it too, and its warnings would count as the sequence's).  A private
    element's conversion converts its private creator when that is still raw, so the
    creator as it is now (raw bytes or converted) is part of the key.  Tags are plain ints in
    the key, and ``tags`` maps them to the dataset's own tag objects for lookups (pydicom's tag
    class compares in Python, slowly, unless it is the same object).
    """
    tag, vr, value = int(raw.tag), raw.VR, raw.value
    if value.__class__ is not bytes:
        return None
    if (vr is None or vr == "UN") and _ambiguous_in_dictionary(tag):
        return None
    if _may_be_sequence(tag, vr):
        pixel_rep = ds._dict.get(tags.get(_PIXEL_REPRESENTATION))  # type: ignore[arg-type]
        if pixel_rep.__class__ is RawDataElement:
            return None
    if len(value) > _VALUE_INLINE:
        value = ("blake2b", hashlib.blake2b(value, digest_size=20).digest())
    creator: object = None
    if tag & 0x10000 and tag & 0xFF00:  # a private element (odd group): its creator names it
        owner = tags.get(tag >> 16 << 16 | (tag & 0xFFFF) >> 8)
        creator = getattr(ds._dict.get(owner), "value", None)  # type: ignore[arg-type]
        if not isinstance(creator, str | bytes | None):
            return None
        if creator is not None and len(creator) > _VALUE_INLINE:
            return None
    return (tag, vr, value, raw.is_implicit_VR, raw.is_little_endian, creator, context)


#: Conversion contexts (character set, pydicom settings) by a small number for the memo keys.
_CONTEXTS: dict[tuple[object, ...], int] = {}


def _context_id(ds: Dataset) -> int | None:
    """A number for what, beside the element itself, its conversion depends on (or None)."""
    charset = ds.original_character_set
    if not charset:
        return None  # the encoding then comes from the dataset itself: nothing is remembered
    context = (repr(charset), _pydicom_settings())
    with _VALUE_MEMO_LOCK:
        return _CONTEXTS.setdefault(context, len(_CONTEXTS))


def _remember(key: Hashable, lines: tuple[str, ...]) -> None:
    with _VALUE_MEMO_LOCK:
        while len(_VALUE_MEMO) >= _VALUE_MEMO_MAX:
            del _VALUE_MEMO[next(iter(_VALUE_MEMO))]  # the oldest first
        _VALUE_MEMO[key] = lines


def _check_values(ds: Dataset) -> list[str]:
    """Convert every top-level value once, returning pydicom's warnings, element by element.

    A raw element whose key (:func:`_memo_key`) was checked before, in this file or an earlier
    one, gives its remembered lines in its place, so the lines are those a conversion of every
    element would give.  A clean one is not converted now (it converts on first use, as
    pydicom's elements do, to the same value, again without a warning); one with problems is
    converted here still, its warnings discarded, so that none reaches stderr later, and so are
    private creators (see :func:`_memo_key`).
    """
    context = _context_id(ds)
    elements = ds._dict
    by_int = {int(t): t for t in elements}
    memo_get = _VALUE_MEMO.get
    out: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        for number, tag in list(by_int.items()):
            raw = elements[tag]  # as it is now: converting an element may convert others
            is_raw = raw.__class__ is RawDataElement
            key: Hashable | None = None
            if is_raw:
                value, vr = raw.value, raw.VR
                if value is None:
                    # pydicom's get_item reads a deferred (large) value and converts it; its
                    # warnings are not listed (as when every element was converted in turn)
                    ds.get_item(tag)
                    continue
                if context is None:
                    pass
                elif (
                    value.__class__ is bytes
                    and len(value) <= _VALUE_INLINE
                    and vr is not None
                    and vr != "UN"
                    and vr != "SQ"
                ):  # the common case (a short value, explicit VR), inline: see _memo_key
                    creator = None
                    if number & 0x10000 and number & 0xFF00:
                        owner = elements.get(
                            by_int.get(number >> 16 << 16 | (number & 0xFFFF) >> 8)
                        )
                        creator = getattr(owner, "value", None)
                    if creator is None or (
                        creator.__class__ in (str, bytes) and len(creator) <= _VALUE_INLINE
                    ):
                        key = (
                            number,
                            vr,
                            value,
                            raw.is_implicit_VR,
                            raw.is_little_endian,
                            creator,
                            context,
                        )
                else:
                    key = _memo_key(ds, raw, context, by_int)
            known = memo_get(key) if key is not None else None
            if known is not None:  # checked before: its lines, as they were
                if known or (number & 0x10000 and 0x10 <= number & 0xFFFF <= 0xFF):
                    # converted all the same: a value with problems, so that its warnings
                    # never reach stderr later; a private creator, so that the elements it
                    # names find it converted (and key it alike) in every file
                    with contextlib.suppress(Exception):
                        ds[tag]
                out.extend(known)
                continue  # a clean one converts when first used
            before = len(records)
            lines: list[str] = []
            try:
                name = ds[tag].name
            except Exception as exc:  # a value that cannot be converted at all
                lines.append(f"{tag}: {short_reason(exc)}")
            else:
                for r in records[before:]:
                    text = _SEE_URL.sub("", str(r.message)).strip().rstrip(".")
                    lines.append(f"{name} {tag}: {text.splitlines()[0] if text else 'warning'}")
            out.extend(lines)
            if key is not None:
                _remember(key, tuple(lines))
    return out


def _dcmread(src: Path | BinaryIO, *, pixels: bool) -> FileDataset:
    try:
        return pydicom.dcmread(
            src, stop_before_pixels=not pixels, defer_size=None if pixels else _DEFER_BYTES
        )
    except InvalidDicomError:
        # Files without the 128-byte preamble are still DICOM if a plausible dataset parses.
        if not isinstance(src, Path):
            src.seek(0)
        ds = pydicom.dcmread(
            src, force=True, stop_before_pixels=not pixels, defer_size=_DEFER_BYTES
        )
        if "SOPClassUID" not in ds and "SOPInstanceUID" not in ds:
            raise
        return ds


_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})


def _same_walk(
    ds: FileDataset, tsyntax: object, start: int, stop: int, size: int, fp: BinaryIO
) -> bool:
    """Whether the header parse walked the elements a walk from ``start`` would, to ``stop``.

    True when its first element is the one a walk from ``start`` (where the file meta group
    length says the dataset begins, in the transfer syntax's encoding) reads first, and it
    ended at a Pixel Data element (not at the end of the file, nor at an element it could not
    read).  Anything unexpected answers False: the file is then walked again, as before.
    """
    from pydicom.filereader import data_element_generator

    implicit, little = tsyntax.is_implicit_VR, tsyntax.is_little_endian  # type: ignore[attr-defined]
    first = next(iter(ds._dict.values()), None)
    try:
        if first is None:
            if stop != start:
                return False
        else:
            fp.seek(start)
            probe = next(data_element_generator(fp, implicit, little, defer_size=1), None)
            if probe is None or probe.tag != first.tag or _tell(probe) != _tell(first):
                return False
            if getattr(first, "is_implicit_VR", implicit) != implicit:
                return False
        if stop + 8 > size:
            return False
        fp.seek(stop)
        head = fp.read(4)
    except Exception:
        return False
    order = "little" if little else "big"
    tag = int.from_bytes(head[:2], order) << 16 | int.from_bytes(head[2:], order)
    return tag in _PIXEL_TAGS


def _tell(elem: object) -> int | None:
    """Where an element's value starts in the file (raw and parsed elements name it apart)."""
    return getattr(elem, "value_tell", getattr(elem, "file_tell", None))


def _check_lengths(
    ds: FileDataset, path: Path, size: int, fp: BinaryIO, stop: int, *, clean: bool
) -> tuple[int, int] | None:
    """Refuse top-level elements whose declared length runs past the end of the file.

    pydicom reads what is there and says nothing, so a header claiming 2 GB for one element, or
    a file cut in the middle of a value, would otherwise pass unnoticed.  The elements are
    walked with pydicom's own generator, skipping (not reading) every value.  When the header
    parse (which ended at ``stop``) gave no warning and took the same path (:func:`_same_walk`),
    none of its elements can run past the end (it would have ended there), so the walk goes on
    from ``stop``; otherwise the whole file is walked again from the start of the dataset.

    Returns the (offset, length) of the Pixel Data value when the walk went on from ``stop``
    and found one Pixel Data element of defined length there, else None.
    """
    from pydicom.filereader import data_element_generator

    meta = getattr(ds, "file_meta", None)
    group_length = meta.get("FileMetaInformationGroupLength") if meta is not None else None
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if ds.preamble is None or group_length is None or tsyntax is None or tsyntax.is_deflated:
        return None  # no reliable offset to start from; the pixel decoder still checks sizes
    start = 132 + 12 + int(group_length)
    resumed = clean and _same_walk(ds, tsyntax, start, stop, size, fp)
    fp.seek(stop if resumed else start)
    pixel_data: list[tuple[int, int]] = []
    others = False
    for raw in data_element_generator(
        fp, tsyntax.is_implicit_VR, tsyntax.is_little_endian, defer_size=1
    ):
        length = getattr(raw, "length", None)  # undefined-length items come parsed
        if raw.tag in _PIXEL_TAGS:
            if raw.tag == 0x7FE00010 and length is not None and length != 0xFFFFFFFF:
                pixel_data.append((raw.value_tell, length))
            else:
                others = True
        if length is None or length == 0xFFFFFFFF:
            continue
        if raw.value_tell + length > size:
            raise UnreadableFileError(
                path,
                f"element {raw.tag} claims {length} bytes at offset {raw.value_tell} "
                f"but the file has only {size} (truncated or corrupt)",
            )
    return pixel_data[0] if resumed and len(pixel_data) == 1 and not others else None


#: Bytes of a file parsed in memory first (most headers end before; see _parse_in_memory).
_HEAD_BYTES = 1 << 16


def _parse_in_memory(fp: BinaryIO, p: Path, mtime: float) -> tuple[FileDataset, int] | None:
    """The header parsed from the file's first bytes in memory, and where it stopped, or None.

    pydicom parses from memory about a quarter faster than from a file.  The result is kept
    only when it is provably what a parse of the file gives: no warning, no error, a preamble,
    and the parse stopped at a Pixel Data element inside those bytes (so every element before
    it was read whole, none deferred).  It then gets the attributes a parse of the path sets
    (file name, no buffer, modification time).  Otherwise None: the file is parsed as before.
    """
    head = fp.read(_HEAD_BYTES)
    fp.seek(0)
    buffer = io.BytesIO(head)
    try:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(buffer, stop_before_pixels=True, defer_size=_DEFER_BYTES)
    except Exception:
        return None
    stop = buffer.tell()
    if records or ds.preamble is None or stop + 8 > len(head):
        return None
    order = "little" if ds.original_encoding[1] else "big"
    tag = int.from_bytes(head[stop : stop + 2], order) << 16
    tag |= int.from_bytes(head[stop + 2 : stop + 4], order)
    if tag not in _PIXEL_TAGS:
        return None
    ds.filename = os.fspath(p)
    ds.buffer = None
    ds.fileobj_type = open
    ds.timestamp = mtime
    return ds, stop


def _parse_file(fp: BinaryIO, p: Path) -> tuple[FileDataset, list[str]]:
    """The header parsed from the open file, and pydicom's warnings, with clear errors."""
    try:
        with captured_warnings() as caught:
            ds = _dcmread(fp, pixels=False)
    except InvalidDicomError:
        raise UnreadableFileError(p, "is not a DICOM file") from None
    except (
        EOFError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        OverflowError,
    ) as exc:
        raise UnreadableFileError(
            p, f"truncated or corrupt DICOM header: {short_reason(exc)}"
        ) from None
    except MemoryError:
        raise UnreadableFileError(p, "header claims an impossible size") from None
    return ds, caught


def read_header(path: str | os.PathLike[str]) -> FileDataset:
    """Parse a DICOM header (no pixel data), with clear errors.

    Raises
    ------
    UnreadableFileError
        Not a DICOM file, truncated, or a header that claims more bytes than the file holds.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> read_header(get_testdata_file("CT_small.dcm")).Modality
    'CT'
    """
    p = Path(path)
    try:
        stat = p.stat()
    except OSError as exc:
        raise UnreadableFileError(p, f"cannot open: {exc.strerror or exc}") from exc
    size = stat.st_size
    if size == 0:
        raise UnreadableFileError(p, "is empty (0 bytes)")
    try:
        fp = open(os.fspath(p), "rb")  # noqa: SIM115 (closed below, after the length check)
    except OSError as exc:
        raise UnreadableFileError(
            p, f"truncated or corrupt DICOM header: {short_reason(exc)}"
        ) from None
    with fp:
        parsed = _parse_in_memory(fp, p, stat.st_mtime)
        if parsed is not None:
            ds, stop = parsed
            caught: list[str] = []
        else:
            ds, caught = _parse_file(fp, p)
            stop = fp.tell()
        try:
            location = _check_lengths(ds, p, size, fp, stop, clean=not caught)
        except MedsightError:
            raise
        except Exception as exc:  # an element that fails to parse while walking the file
            raise UnreadableFileError(p, f"corrupt DICOM header: {short_reason(exc)}") from None
    found = list(dict.fromkeys([*caught, *_check_values(ds)]))
    ds.__dict__[_WARNINGS_ATTR] = tuple(found)  # kept beside the header, not a DICOM element
    if location is not None:
        ds.__dict__[_LOCATION_ATTR] = PixelDataLocation(*location, size, stat.st_mtime_ns)
    frames = ds.get("NumberOfFrames")
    if frames is not None and not _whole_number(frames):
        raise UnreadableFileError(
            p, f"Number of Frames (0028,0008) is {str(frames)!r}, not a number"
        )
    return ds


def _whole_number(value: object) -> bool:
    try:
        return int(str(value).strip() or "1") >= 0
    except ValueError:
        return False


def read_dataset(path: str | os.PathLike[str], *, header_checked: bool = False) -> FileDataset:
    """Parse a whole DICOM file (header and pixel data), with clear errors.

    The header is checked first with :func:`read_header`, so a bogus length claim is refused
    before any large read; ``header_checked=True`` skips that when the caller has just read
    this file's header with :func:`read_header` (a series scanned, then loaded).
    """
    if not header_checked:
        read_header(path)
    p = Path(path)
    try:
        with captured_warnings():  # already reported by read_header
            return _dcmread(p, pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableFileError(
            p, f"truncated or corrupt DICOM file: {short_reason(exc)}"
        ) from None


def scan(
    files: Iterable[Path], *, progress: Callable[[], None] | None = None
) -> tuple[list[tuple[Path, FileDataset]], list[BadFile]]:
    """Read the headers of ``files``; return ``(good, bad)``.

    DICOMDIR files and DICOM objects without pixel data (SR, presentation states) are neither
    images nor errors: they are reported as bad with a reason so a user sees them listed.
    RT Structure Sets are kept with the good ones (their contours are rasterised on a series).
    """
    with gc_paused():
        return _scan(files, progress)


def _scan(
    files: Iterable[Path], progress: Callable[[], None] | None
) -> tuple[list[tuple[Path, FileDataset]], list[BadFile]]:
    good: list[tuple[Path, FileDataset]] = []
    bad: list[BadFile] = []
    for f in files:
        try:
            ds = read_header(f)
        except MedsightError as err:
            bad.append(BadFile(str(f), err.problem))
        else:
            sop_class = str(ds.get("SOPClassUID", ""))
            if (
                sop_class == _DICOMDIR_CLASS
                or ds.file_meta.get("MediaStorageSOPClassUID", "") == _DICOMDIR_CLASS
            ):
                bad.append(BadFile(str(f), "is a DICOMDIR index, not an image (skipped)"))
            elif sop_class == RTSTRUCT_SOP_CLASS and "ROIContourSequence" in ds:
                good.append((f, ds))  # contours: rasterised on their series (io.dicom.rtstruct)
            elif not _has_pixels(ds):
                name = getattr(ds.get("SOPClassUID"), "name", sop_class or "unknown class")
                if "Image Storage" in name:
                    problem = f"{name} header ends before the image attributes (truncated?)"
                else:
                    problem = f"has no pixel data ({name}); not an image"
                bad.append(BadFile(str(f), problem))
            else:
                good.append((f, ds))
        if progress is not None:
            progress()
    return good, bad


def _has_pixels(ds: Dataset) -> bool:
    # With stop_before_pixels the pixel element itself is absent; Rows/Columns are required in
    # every image module, so their presence says "image object".
    return "Rows" in ds and "Columns" in ds
