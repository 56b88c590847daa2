"""De-identify a file or a whole folder: in parallel, atomically, never touching the input.

Each input file is classified by content (DICOM) or name (NIfTI, PNG, JPEG); other files (a
README, a DICOMDIR, a PDF) are skipped with a note and not copied (they may hold identifiers
nobody checked), without failing the run.  Encapsulated documents (Encapsulated PDF, CDA, STL,
...) are dropped with a note too: their text cannot be de-identified reliably, so they are
never passed through.  Outputs are named by the
new UIDs (or mirror the input's relative paths, see :class:`~medsight.privacy.profile.Layout`)
and written to a temporary name, then renamed, so a crash leaves no half-written file.  A bad
file is reported and skipped; the rest finish.  The optional re-identification table (CSV:
original patient id and name, pseudonym, date shift, original and new Study Instance UID) is
written only outside OUT and IN.

Examples
--------
>>> import tempfile, pathlib, shutil
>>> from pydicom.data import get_testdata_file
>>> from medsight.privacy.keys import PseudonymKey
>>> src = pathlib.Path(tempfile.mkdtemp()); out = src.parent / (src.name + "-out")
>>> _ = shutil.copy(get_testdata_file("CT_small.dcm", download=False), src / "ct.dcm")
>>> config = DeidConfig(layout="mirror")
>>> report = deidentify_folder(src, out, PseudonymKey(bytes(32)), config, workers=1)
>>> [o.output for o in report.outcomes], report.failed
([PosixPath('ct.dcm')], [])
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, MediaStorageDirectoryStorage

from medsight.core.errors import EmptyInputError, InvalidInputError, MedsightError
from medsight.io.atomic import atomic_path
from medsight.privacy.dicom_deid import deidentify_dataset
from medsight.privacy.errors import DeidError, UnsafePathError
from medsight.privacy.keys import PseudonymKey
from medsight.privacy.other_formats import clean_jpeg, clean_nifti, clean_png, is_nifti
from medsight.privacy.pixels import burned_in_risk, scrub_burned_in_text
from medsight.privacy.profile import DeidConfig, Layout, PixelScrub, PixelText

__all__ = [
    "DeidReport",
    "FileOutcome",
    "SkippedFile",
    "deidentify_file",
    "deidentify_folder",
    "iter_input_files",
]

_ENCAPSULATED_PREFIX = "1.2.840.10008.5.1.4.1.1.104."


class SkippedFile(MedsightError):
    """A file that is not an image to de-identify; it is noted, not copied, and not a failure."""


@dataclass
class FileOutcome:
    """What happened to one input file (paths relative to IN and OUT)."""

    source: Path
    output: Path | None = None
    kind: str = ""
    error: str | None = None
    note: str | None = None
    sha256: str | None = None
    source_sha256: str | None = None
    burned_in: list[str] = field(default_factory=list)
    scrubbed: list[str] = field(default_factory=list)
    regions: list[dict[str, object]] = field(default_factory=list)
    patient: tuple[str, str, str, str] | None = None  # id, name, pseudonym, date shift
    study: tuple[str, str] | None = None  # original, new Study Instance UID


@dataclass
class DeidReport:
    """The outcome of a whole run."""

    in_dir: Path
    out_dir: Path
    key_id: str
    outcomes: list[FileOutcome]

    @property
    def failed(self) -> list[FileOutcome]:
        """Files that were reported and skipped."""
        return [o for o in self.outcomes if o.error is not None]

    @property
    def skipped(self) -> list[FileOutcome]:
        """Files that are not images to de-identify (noted, not copied, not a failure)."""
        return [o for o in self.outcomes if o.note is not None]

    @property
    def written(self) -> list[FileOutcome]:
        """Files written to OUT."""
        return [o for o in self.outcomes if o.output is not None]


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def iter_input_files(in_path: Path) -> Iterator[Path]:
    """Files under ``in_path`` in sorted order, hidden files and folders skipped."""
    if in_path.is_file():
        yield in_path
        return
    for root, dirs, files in os.walk(in_path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _write_atomic(path: Path, data: bytes) -> str:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def deidentify_file(
    src: Path, out_dir: Path, key: PseudonymKey, config: DeidConfig, *, rel: Path | None = None
) -> FileOutcome:
    """De-identify one file into ``out_dir``; errors are returned in the outcome, not raised.

    ``rel`` is the file's path relative to the input root (its output path under the mirror
    layout).
    """
    rel = rel or Path(src.name)
    outcome = FileOutcome(source=rel)
    try:
        raw = src.read_bytes()
        outcome.source_sha256 = hashlib.sha256(raw).hexdigest()
        lower = src.name.lower()
        if is_nifti(src):
            outcome.kind = "nifti"
            data = clean_nifti(raw, name=str(src))
        elif lower.endswith(".png"):
            outcome.kind = "png"
            data = clean_png(raw, name=str(src))
        elif lower.endswith((".jpg", ".jpeg")):
            outcome.kind = "jpeg"
            data = clean_jpeg(raw, name=str(src))
        else:
            outcome.kind = "dicom"
            data, uid_path = _deidentify_dicom(src, raw, key, config, outcome)
        if config.layout == Layout.MIRROR:
            out_rel = rel
        elif outcome.kind == "dicom":
            out_rel = uid_path
        else:
            suffix = ".nii.gz" if lower.endswith(".nii.gz") else src.suffix.lower()
            digest = key.patient_id(rel.as_posix(), prefix="").lower()
            out_rel = Path("files") / f"{digest}{suffix}"
        outcome.sha256 = _write_atomic(out_dir / out_rel, data)
        outcome.output = out_rel
    except SkippedFile as note:
        outcome.note = note.problem
    except MedsightError as err:
        outcome.error = str(err) if err.where else f"{src}: {err}"
    except InvalidDicomError:
        outcome.note = "not a DICOM, NIfTI, PNG or JPEG file: skipped, not copied"
    except Exception as exc:  # a batch reports any broken file and goes on
        outcome.error = f"{src}: {type(exc).__name__}: {exc}"
    return outcome


def _deidentify_dicom(
    src: Path, raw: bytes, key: PseudonymKey, config: DeidConfig, outcome: FileOutcome
) -> tuple[bytes, Path]:
    try:
        ds = dcmread(io.BytesIO(raw))
    except InvalidDicomError:  # no preamble/"DICM": accept only a dataset that names its SOP
        try:
            ds = dcmread(io.BytesIO(raw), force=True)
            named = "SOPClassUID" in ds and "SOPInstanceUID" in ds
        except Exception:  # forced parsing of arbitrary bytes fails in many ways: not DICOM
            named = False
        if not named:
            raise
    meta_class = ds.file_meta.get("MediaStorageSOPClassUID") if "file_meta" in dir(ds) else None
    if meta_class == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
        raise SkippedFile(src, "a DICOMDIR: not copied (its paths would be wrong), rebuild it")
    if str(ds.get("SOPClassUID", "")).startswith(_ENCAPSULATED_PREFIX):
        name = UID(str(ds.SOPClassUID)).name
        raise SkippedFile(
            src, f"{name}: dropped (the document's text cannot be de-identified reliably)"
        )
    if not ds.get("SOPClassUID") or not ds.get("SOPInstanceUID"):
        raise DeidError(src, "no SOP Class or SOP Instance UID: not a storable DICOM instance")
    _check_complete(ds, src)
    outcome.burned_in = burned_in_risk(ds)
    cleaned = False
    scrub = config.scrub_pixels == PixelScrub.ALL or (
        config.scrub_pixels == PixelScrub.FLAGGED and outcome.burned_in
    )
    if scrub and "PixelData" in ds:
        keep = config.pixel_text == PixelText.KEEP_READABLE
        regions = scrub_burned_in_text(ds, keep_readable=keep)
        outcome.scrubbed = [str(r) for r in regions]
        outcome.regions = [r.as_dict() for r in regions]
        cleaned = True
    result = deidentify_dataset(ds, key, config, pixels_cleaned=cleaned)
    outcome.patient = (
        result.original_patient_id,
        result.original_patient_name,
        result.pseudonym_id,
        "" if result.date_shift_days is None else str(result.date_shift_days),
    )
    outcome.study = (result.original_study_uid, str(result.dataset.get("StudyInstanceUID", "")))
    buf = io.BytesIO()
    result.dataset.save_as(buf, enforce_file_format=True)
    out = result.dataset
    parts = [str(out.get(k, "") or "unknown") for k in ("StudyInstanceUID", "SeriesInstanceUID")]
    return buf.getvalue(), Path(*parts) / f"{out.get('SOPInstanceUID', 'unknown')}.dcm"


def _check_complete(ds: Dataset, src: Path) -> None:
    """pydicom reads a truncated file silently; refuse one whose last value is cut short or
    an image whose pixel data is missing."""
    for elem in ds._dict.values():  # raw elements: declared length versus bytes read
        value, length = getattr(elem, "value", None), getattr(elem, "length", None)
        if isinstance(value, bytes) and length not in (None, 0xFFFFFFFF) and len(value) < length:
            raise DeidError(src, f"file is truncated inside element {elem.tag}")
    pixels = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
    if "Image Storage" in UID(str(ds.SOPClassUID)).name and not any(k in ds for k in pixels):
        raise DeidError(src, "image without Pixel Data: the file is truncated or damaged")


def _run_one(args: tuple[Path, Path, bytes, DeidConfig, Path]) -> FileOutcome:
    src, out_dir, secret, config, rel = args
    return deidentify_file(src, out_dir, PseudonymKey(secret), config, rel=rel)


def check_paths(in_path: Path, out_dir: Path, reid_table: Path | None = None) -> None:
    """Refuse an OUT that overlaps IN and a re-identification table inside OUT or IN.

    For a single input file, OUT must not be the file's own folder (the output could replace
    the input) nor the file.
    """
    if not in_path.exists():
        raise InvalidInputError(in_path, "input does not exist")
    if in_path.is_dir():
        overlap = _inside(out_dir, in_path) or _inside(in_path, out_dir)
    else:
        overlap = out_dir.resolve() in (in_path.resolve(), in_path.parent.resolve())
    if overlap:
        raise UnsafePathError(out_dir, "output folder overlaps the input", hint="pick another OUT")
    if reid_table is not None:
        places = [(out_dir, "output folder")]
        places.append((in_path, "input folder" if in_path.is_dir() else "input"))
        for place, what in places:
            if _inside(reid_table, place):
                raise UnsafePathError(
                    reid_table,
                    f"re-identification table must not be inside the {what} {place}",
                    hint="write it to a separate, access-controlled place",
                )


def deidentify_folder(
    in_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    key: PseudonymKey,
    config: DeidConfig,
    *,
    reid_table: str | os.PathLike[str] | None = None,
    workers: int = 2,
    progress: bool = False,
) -> DeidReport:
    """De-identify every file under ``in_path`` into ``out_dir``.

    Parameters
    ----------
    in_path : path
        A file or a folder; it is only read.
    out_dir : path
        Output folder (created); it must not overlap ``in_path``.
    key : PseudonymKey
        The pseudonymisation key.
    config : DeidConfig
        Profile options.
    reid_table : path, optional
        Where to write the re-identification CSV; refused inside OUT or IN.
    workers : int
        Worker processes (1 runs in this process).
    progress : bool
        Show a rich progress bar on stderr.

    Returns
    -------
    DeidReport
    """
    in_path, out = Path(in_path), Path(out_dir)
    table = None if reid_table is None else Path(reid_table)
    check_paths(in_path, out, table)
    root = in_path if in_path.is_dir() else in_path.parent
    files = list(iter_input_files(in_path))
    if not files:
        raise EmptyInputError(in_path, "no files to de-identify")
    jobs = [(f, out, key.secret, config, f.relative_to(root)) for f in files]
    outcomes = _run_jobs(jobs, workers, progress)
    report = DeidReport(in_dir=in_path, out_dir=out, key_id=key.key_id, outcomes=outcomes)
    if table is not None:
        write_reid_table(report, table)
    return report


def _run_jobs(
    jobs: list[tuple[Path, Path, bytes, DeidConfig, Path]], workers: int, progress: bool
) -> list[FileOutcome]:
    from rich.progress import Progress

    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("de-identifying", total=len(jobs))
        if workers <= 1 or len(jobs) == 1:
            outcomes = []
            for job in jobs:
                outcomes.append(_run_one(job))
                bar.advance(task)
            return outcomes
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures: list[Future[FileOutcome]] = [pool.submit(_run_one, job) for job in jobs]
            for fut in futures:
                fut.add_done_callback(lambda _f: bar.advance(task))
            return [_result(fut, job) for fut, job in zip(futures, jobs, strict=True)]


def _result(
    fut: Future[FileOutcome], job: tuple[Path, Path, bytes, DeidConfig, Path]
) -> FileOutcome:
    """The outcome of one job; a crashed worker (e.g. a decoder that segfaults) becomes an
    error for the file it held (and, the pool being broken, for those still queued)."""
    try:
        return fut.result()
    except Exception as exc:  # BrokenProcessPool and anything a worker could not return
        return FileOutcome(source=job[4], error=f"{job[0]}: worker failed ({type(exc).__name__})")


def write_reid_table(report: DeidReport, path: Path) -> None:
    """Write the re-identification table (one row per patient and study), atomically."""
    rows = {
        (*o.patient, *o.study)
        for o in report.outcomes
        if o.patient is not None and o.study is not None
    }
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "original_patient_id",
            "original_patient_name",
            "pseudonym_id",
            "date_shift_days",
            "original_study_uid",
            "study_uid",
            "key_id",
        ]
    )
    for row in sorted(rows):
        writer.writerow([*row, report.key_id])
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, buf.getvalue().encode("utf-8"))
    os.chmod(path, 0o600)
