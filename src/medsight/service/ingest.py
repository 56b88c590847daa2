"""Received DICOM instances into the study folder ``<home>/studies/<StudyInstanceUID>/``.

Files are stored under names made from their own UIDs (``<series>/<sop>.dcm``), never from
names a client sent, and a UID must be digits and dots, so nothing can land outside the folder.
A zip member whose name is absolute or climbs out (``../``) rejects the whole upload, and so do
zip bombs (more than ``max_unzipped_bytes`` or ``max_files``).  Files that are not DICOM are
listed and skipped; an upload with no DICOM at all is an error.  Each file is first checked by
:func:`medsight.io.dicom.headers.read_header` (pydicom alone reads a truncated file without a
word and would store it cut short), so a truncated file is skipped as truncated, before any
check of its UIDs could blame them instead.  :class:`Ingested` lists the
files an upload newly created, so :func:`discard_ingested` can take back exactly those when the
client cancels before the upload is recorded (files of earlier uploads are never touched).

Examples
--------
>>> valid_uid("1.2.840.10008.1.1"), valid_uid("../etc")
(True, False)
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset

from medsight.core.errors import InvalidInputError
from medsight.io.atomic import atomic_path
from medsight.service.errors import UploadTooLargeError

__all__ = [
    "Ingested",
    "StudyFacts",
    "content_digest",
    "discard_ingested",
    "ingest_streams",
    "save_dataset",
    "valid_uid",
]

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def valid_uid(uid: str) -> bool:
    """True for a DICOM UID (digits and dots, at most 64 characters)."""
    return len(uid) <= 64 and bool(_UID.match(uid))


@dataclasses.dataclass
class StudyFacts:
    """Header facts of a received study, for the study row and routing rules."""

    uid: str
    patient_id: str = ""
    modalities: set[str] = dataclasses.field(default_factory=set)
    description: str = ""
    body_part: str = ""


@dataclasses.dataclass
class Ingested:
    """What an upload added: studies by UID, the names skipped with why, the files created."""

    studies: dict[str, StudyFacts] = dataclasses.field(default_factory=dict)
    stored: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)
    created: list[Path] = dataclasses.field(default_factory=list)


def save_dataset(ds: Dataset, studies_dir: Path, into: Ingested) -> None:
    """Store one dataset under its UIDs and add its facts to ``into``."""
    study, series = str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", ""))
    sop = str(ds.get("SOPInstanceUID", ""))
    if not (valid_uid(study) and valid_uid(series) and valid_uid(sop)):
        raise InvalidInputError("DICOM", "Study/Series/SOP Instance UID missing or malformed")
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", Dataset()):
        raise InvalidInputError("DICOM", "no file meta information (not a Part 10 file)")
    patient = str(ds.get("PatientID", ""))[:64]
    known = into.studies.get(study)
    owner = known.patient_id if known is not None else _stored_patient(studies_dir / study)
    if owner is not None and owner != patient:
        raise InvalidInputError(
            "DICOM",
            f"StudyInstanceUID {study} belongs to patient {owner or '(no PatientID)'} but this "
            f"file names patient {patient or '(no PatientID)'}: refused, one study holds one "
            "patient",
        )
    target = studies_dir / study / series / f"{sop}.dcm"
    existed = target.exists()
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    if not existed:
        into.created.append(target)
    facts = into.studies.setdefault(study, StudyFacts(uid=study, patient_id=patient))
    facts.modalities.add(str(ds.get("Modality", "OT")))
    facts.description = facts.description or str(ds.get("StudyDescription", ""))[:256]
    facts.body_part = facts.body_part or str(ds.get("BodyPartExamined", ""))[:64]
    into.stored += 1


def _stored_patient(study_dir: Path) -> str | None:
    """The PatientID of a study already stored (None when nothing is stored yet)."""
    if not study_dir.is_dir():
        return None
    for path in study_dir.rglob("*.dcm"):
        if path.name.startswith("."):
            continue
        try:
            head = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
        except Exception:  # a damaged stored file says nothing about the owner
            continue
        return str(head.get("PatientID", ""))[:64]
    return None


def _read(name: str, fh: BinaryIO, studies_dir: Path, into: Ingested) -> None:
    import os
    import tempfile

    from medsight.core.errors import UnreadableFileError
    from medsight.io.dicom.headers import read_header

    studies_dir.mkdir(parents=True, exist_ok=True)
    fd, spooled = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=studies_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := fh.read(1 << 20):
                out.write(chunk)
        read_header(spooled)  # the real reason first: empty, not DICOM, truncated
        ds = pydicom.dcmread(spooled)
        if len(ds) == 0:
            raise InvalidInputError("DICOM", "ends after its file meta information (truncated)")
        save_dataset(ds, studies_dir, into)
    except UnreadableFileError as exc:  # says "truncated or corrupt" where that is the reason
        into.skipped.append(f"{name}: not a readable DICOM file ({exc.problem})")
    except InvalidInputError as exc:
        into.skipped.append(f"{name}: {exc.problem}")
    except Exception as exc:
        into.skipped.append(f"{name}: not a readable DICOM file ({type(exc).__name__})")
    finally:
        Path(spooled).unlink(missing_ok=True)


def _check_member(name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise InvalidInputError(f"zip member {name!r}", "path escapes the upload (rejected)")


def _read_zip(
    name: str, fh: BinaryIO, studies_dir: Path, into: Ingested, max_bytes: int, max_files: int
) -> tuple[int, int]:
    """Store the zip's DICOM members; returns (members, unpacked bytes) for the upload's budget."""
    try:
        archive = zipfile.ZipFile(fh)
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidInputError(name, f"is not a readable zip file ({exc})") from exc
    for member in members:
        _check_member(member.filename)
    if len(members) > max_files:
        raise UploadTooLargeError(name, f"holds {len(members)} files (limit left {max_files})")
    unpacked = sum(m.file_size for m in members)
    if unpacked > max_bytes:
        raise UploadTooLargeError(name, f"unpacks to more than {max_bytes} bytes (limit left)")
    for member in members:
        try:
            data = archive.read(member)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            into.skipped.append(f"{name}/{member.filename}: damaged ({exc})")
            continue
        _read(f"{name}/{member.filename}", io.BytesIO(data), studies_dir, into)
    return len(members), unpacked


def ingest_streams(
    files: Iterable[tuple[str, BinaryIO]],
    studies_dir: Path,
    *,
    max_unzipped_bytes: int,
    max_files: int,
) -> Ingested:
    """Store every DICOM instance in ``files`` (DICOM files or zips of them).

    Raises
    ------
    InvalidInputError
        A zip member path escapes, a zip is damaged, or nothing readable was sent.
    UploadTooLargeError
        A zip above the limits (``max_unzipped_bytes`` and ``max_files`` hold for all the
        zips of one upload together).
    """
    into = Ingested()
    left_bytes, left_files = max_unzipped_bytes, max_files  # for all zips of the upload together
    for name, fh in files:
        head = fh.read(4)
        fh.seek(0)
        if head == b"PK\x03\x04":
            n, size = _read_zip(name, fh, studies_dir, into, left_bytes, left_files)
            left_bytes, left_files = left_bytes - size, left_files - n
        else:
            _read(name, fh, studies_dir, into)
    if not into.stored:
        why = "; ".join(into.skipped[:5]) or "no files"
        raise InvalidInputError("upload", f"holds no DICOM instance ({why})")
    return into


def discard_ingested(into: Ingested, studies_dir: Path) -> int:
    """Remove the files ``into`` created (and folders left empty); returns how many went.

    Instances that were already stored before this upload (the same SOP Instance UID sent
    again) stay: they belong to an earlier, completed upload.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> made = root / "1.2" / "1.3" / "1.4.dcm"
    >>> made.parent.mkdir(parents=True); _ = made.write_bytes(b"x")
    >>> discard_ingested(Ingested(created=[made]), root), any(root.iterdir())
    (1, False)
    """
    removed = 0
    for path in into.created:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        series_dir = path.parent
        if series_dir.parent.parent != studies_dir:  # not <studies>/<study>/<series>/: keep
            continue
        for folder in (series_dir, series_dir.parent):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
    into.created.clear()
    return removed


def content_digest(study_dir: Path) -> str:
    """sha256 over the study's stored instance names: changes when instances are added."""
    names = sorted(
        p.relative_to(study_dir).as_posix()
        for p in study_dir.rglob("*.dcm")
        if not p.name.startswith(".")  # a temporary name a crash left behind
    )
    return hashlib.sha256("\n".join(names).encode()).hexdigest()
