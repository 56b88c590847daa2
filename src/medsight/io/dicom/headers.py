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
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError

from medsight.core.errors import MedsightError, UnreadableFileError, short_reason

__all__ = [
    "RTSTRUCT_SOP_CLASS",
    "BadFile",
    "captured_warnings",
    "header_problems",
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


def header_problems(ds: Dataset) -> tuple[str, ...]:
    """The warnings pydicom gave while this header was read (see :func:`read_header`)."""
    return tuple(ds.__dict__.get(_WARNINGS_ATTR, ()))


def _check_values(ds: Dataset) -> list[str]:
    """Convert every top-level value once, returning pydicom's warnings, element by element."""
    from pydicom.dataelem import RawDataElement

    out: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        for tag in list(ds.keys()):
            raw = ds.get_item(tag)
            if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
                continue  # a deferred large value: not read now
            before = len(records)
            try:
                name = ds[tag].name
            except Exception as exc:  # a value that cannot be converted at all
                out.append(f"{tag}: {short_reason(exc)}")
                continue
            for r in records[before:]:
                text = _SEE_URL.sub("", str(r.message)).strip().rstrip(".")
                out.append(f"{name} {tag}: {text.splitlines()[0] if text else 'warning'}")
    return out


def _dcmread(path: Path, *, pixels: bool) -> FileDataset:
    try:
        return pydicom.dcmread(
            path, stop_before_pixels=not pixels, defer_size=None if pixels else _DEFER_BYTES
        )
    except InvalidDicomError:
        # Files without the 128-byte preamble are still DICOM if a plausible dataset parses.
        ds = pydicom.dcmread(
            path, force=True, stop_before_pixels=not pixels, defer_size=_DEFER_BYTES
        )
        if "SOPClassUID" not in ds and "SOPInstanceUID" not in ds:
            raise
        return ds


def _check_lengths(ds: FileDataset, path: Path, size: int) -> None:
    """Refuse top-level elements whose declared length runs past the end of the file.

    pydicom reads what is there and says nothing, so a header claiming 2 GB for one element, or
    a file cut in the middle of a value, would otherwise pass unnoticed.  The elements are
    walked again with pydicom's own generator, skipping (not reading) every value.
    """
    from pydicom.filereader import data_element_generator

    meta = getattr(ds, "file_meta", None)
    group_length = meta.get("FileMetaInformationGroupLength") if meta is not None else None
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if ds.preamble is None or group_length is None or tsyntax is None or tsyntax.is_deflated:
        return  # no reliable offset to start from; the pixel decoder still checks sizes
    with open(path, "rb") as fp:
        fp.seek(132 + 12 + int(group_length))
        for raw in data_element_generator(
            fp, tsyntax.is_implicit_VR, tsyntax.is_little_endian, defer_size=1
        ):
            length = getattr(raw, "length", None)  # undefined-length items come parsed
            if length is None or length == 0xFFFFFFFF:
                continue
            if raw.value_tell + length > size:
                raise UnreadableFileError(
                    path,
                    f"element {raw.tag} claims {length} bytes at offset {raw.value_tell} "
                    f"but the file has only {size} (truncated or corrupt)",
                )


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
        size = p.stat().st_size
    except OSError as exc:
        raise UnreadableFileError(p, f"cannot open: {exc.strerror or exc}") from exc
    if size == 0:
        raise UnreadableFileError(p, "is empty (0 bytes)")
    try:
        with captured_warnings() as caught:
            ds = _dcmread(p, pixels=False)
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
    try:
        _check_lengths(ds, p, size)
    except MedsightError:
        raise
    except Exception as exc:  # an element that fails to parse while walking the file
        raise UnreadableFileError(p, f"corrupt DICOM header: {short_reason(exc)}") from None
    found = list(dict.fromkeys([*caught, *_check_values(ds)]))
    ds.__dict__[_WARNINGS_ATTR] = tuple(found)  # kept beside the header, not a DICOM element
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
