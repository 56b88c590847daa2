"""`read_study`, `read_image` and `write_image`: the one entry point for every input format.

A *study* here is whatever a path holds: one DICOM file, a series folder, a study folder with
several series (any depth of sub-folders), NIfTI files or PNG/JPEG/TIFF images.  Each volume
found becomes a :class:`SeriesEntry`, loaded lazily; files that cannot be read are listed in
``Study.bad_files`` while everything else still loads.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medsight.core.errors import (
    EmptyInputError,
    InvalidInputError,
    UnreadableFileError,
)
from medsight.core.image import Image
from medsight.io.dicom.headers import BadFile, gc_paused, scan
from medsight.io.dicom.rtstruct import RTStructSeries
from medsight.io.dicom.seg import SegmentationSeries
from medsight.io.dicom.series import DicomSeries, build_series
from medsight.io.nifti import is_nifti, read_nifti, write_nifti
from medsight.io.raster import is_raster, read_raster, write_png
from medsight.io.volumes import is_pair_image, is_volume, read_volume, unsupported_format

__all__ = ["SeriesEntry", "Study", "read_image", "read_study", "summarize", "write_image"]


@dataclasses.dataclass
class SeriesEntry:
    """One volume or image of a study, not yet loaded.

    ``dicom`` is set for DICOM series (with the header of its first file; a
    :class:`~medsight.io.dicom.seg.SegmentationSeries` for a DICOM SEG, an
    :class:`~medsight.io.dicom.rtstruct.RTStructSeries` for an RT Structure Set); ``path`` for
    a NIfTI or raster file.
    """

    key: str
    modality: str
    description: str
    problems: list[str]
    dicom: DicomSeries | SegmentationSeries | RTStructSeries | None = None
    path: Path | None = None
    study_instance_uid: str = ""
    patient_id: str = ""

    @property
    def files(self) -> tuple[Path, ...]:
        """The files this entry reads."""
        if self.dicom is not None:
            return self.dicom.files
        assert self.path is not None
        return (self.path,)

    def load(self, *, progress: Callable[[], None] | None = None) -> Image:
        """Read the pixels.

        Raises
        ------
        MedsightError
            If a file turns out unreadable when its pixels are decoded.
        """
        if self.dicom is not None:
            return self.dicom.load(progress=progress)
        assert self.path is not None
        if is_nifti(self.path):
            img = read_nifti(self.path)
        elif is_volume(self.path):
            img = read_volume(self.path)
        else:
            img = read_raster(self.path)
        if progress is not None:
            progress()
        return img


@dataclasses.dataclass
class Study:
    """Everything found under a path: series entries plus the files that could not be used."""

    root: Path
    series: list[SeriesEntry]
    bad_files: list[BadFile]

    def __iter__(self) -> Iterator[SeriesEntry]:
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)

    def select(
        self,
        description: str | None = None,
        *,
        modality: str | None = None,
        uid: str | None = None,
    ) -> SeriesEntry:
        """The one series matching all the given criteria.

        ``description`` matches SeriesDescription (or file name) case-insensitively as a
        substring, ``modality`` the modality code exactly, ``uid`` the SeriesInstanceUID (or
        the entry key) exactly.

        Raises
        ------
        InvalidInputError
            When nothing or more than one series matches; the message lists the series.
        """
        found = [
            s
            for s in self.series
            if (description is None or description.lower() in s.description.lower())
            and (modality is None or s.modality.upper() == modality.upper())
            and (uid is None or uid in (s.key, s.dicom.series_instance_uid if s.dicom else ""))
        ]
        if len(found) == 1:
            return found[0]
        listing = "; ".join(f"{s.modality} {s.description or s.key}" for s in self.series)
        what = ", ".join(
            f"{k}={v!r}"
            for k, v in (("description", description), ("modality", modality), ("uid", uid))
            if v is not None
        )
        if not found:
            raise InvalidInputError(
                self.root, f"no series matches {what or 'the selection'}", hint=f"series: {listing}"
            )
        raise InvalidInputError(
            self.root,
            f"{len(found)} series match {what or 'the selection'}",
            hint=f"choose one by description, modality or uid; series: {listing}",
        )


def _walk(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return files


def read_study(
    path: str | os.PathLike[str], *, progress: Callable[[int], Callable[[], None]] | None = None
) -> Study:
    """Find every series, volume and image under ``path`` (headers only; pixels load later).

    Parameters
    ----------
    path : path-like
        A file or a folder (searched recursively; hidden files are skipped).
    progress : callable, optional
        ``progress(total)`` returns a function called once per file scanned.

    Raises
    ------
    UnreadableFileError
        ``path`` does not exist, or is a single file that cannot be read.
    EmptyInputError
        A folder with no files, or no readable image in it (the message names the bad files).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> study = read_study(get_testdata_file("CT_small.dcm"))
    >>> [(s.modality, s.dicom.shape) for s in study]
    [('CT', (128, 128, 1))]
    """
    root = Path(path)
    if not root.exists():
        raise UnreadableFileError(root, "does not exist")
    files = [root] if root.is_file() else _walk(root)
    if not files:
        raise EmptyInputError(root, "the folder is empty")
    tick = progress(len(files)) if progress is not None else None
    entries: list[SeriesEntry] = []
    bad: list[BadFile] = []
    dicom_candidates: list[Path] = []
    for f in files:
        if is_pair_image(f):  # the .img of an Analyze / NIfTI pair: read through its .hdr
            if tick is not None:
                tick()
            continue
        if is_nifti(f) or is_raster(f) or is_volume(f):
            entries.append(
                SeriesEntry(
                    key=str(f.relative_to(root) if f != root else f.name),
                    modality="OT" if is_raster(f) else "",
                    description=f.name,
                    problems=[],
                    path=f,
                )
            )
            if tick is not None:
                tick()
        else:
            dicom_candidates.append(f)
    with gc_paused():  # hundreds of headers kept alive: see io.dicom.headers.gc_paused
        good, dicom_bad = scan(dicom_candidates, progress=tick)
        found = build_series(good)
    for b in dicom_bad:  # name the formats medsight does not read instead of "not DICOM"
        why = unsupported_format(b.path)
        if why is not None and "not a DICOM file" in b.problem:
            b = dataclasses.replace(b, problem=f"is not a DICOM file but {why}")
        bad.append(b)
    for series in found:
        hdr = series.header
        entries.append(
            SeriesEntry(
                key=series.key,
                modality=series.modality,
                description=series.description,
                problems=series.problems,
                dicom=series,
                study_instance_uid=series.study_instance_uid,
                patient_id=str(hdr.get("PatientID", "")),
            )
        )
    if root.is_file() and not entries:
        raise UnreadableFileError(root, bad[0].problem if bad else "not a readable image")
    if not entries:
        shown = "; ".join(str(b) for b in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise EmptyInputError(root, f"no readable image among {len(files)} file(s): {shown}{more}")
    return Study(root=root, series=entries, bad_files=bad)


def read_image(
    path: str | os.PathLike[str],
    *,
    series: str | None = None,
    modality: str | None = None,
) -> Image:
    """Read one image: a file, a series folder, or one series of a study folder.

    Parameters
    ----------
    path : path-like
        DICOM file or folder, NIfTI (.nii, .nii.gz), MGH/MGZ, Analyze (.hdr/.img), NRRD,
        MetaImage (.mha/.mhd), PNG/JPEG/TIFF.
    series : str, optional
        When ``path`` holds several series: a SeriesDescription substring or SeriesInstanceUID.
    modality : str, optional
        When ``path`` holds several series: the modality to pick.

    Raises
    ------
    MedsightError
        Unreadable input, or several series and no (unique) selection.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> img = read_image(get_testdata_file("CT_small.dcm"))
    >>> img.modality, img.shape, img.orientation, int(img.array.min()) < 0  # HU
    ('CT', (128, 128, 1), 'LPS', True)
    """
    p = Path(path)
    if p.is_file() and is_nifti(p):
        return read_nifti(p)
    if p.is_file() and (is_volume(p) or is_pair_image(p)):
        return read_volume(p)
    if p.is_file() and is_raster(p):
        return read_raster(p)
    study = read_study(p)
    if len(study) == 1 and series is None and modality is None:
        return study.series[0].load()
    if series is None and modality is None:
        return study.select().load()  # raises, listing the series
    try:
        return study.select(series, modality=modality).load()
    except InvalidInputError:
        if series is None:
            raise
        return study.select(uid=series, modality=modality).load()


def write_image(image: Image, path: str | os.PathLike[str]) -> Path:
    """Write ``image`` to NIfTI (``.nii``, ``.nii.gz``) or PNG (2D), chosen by the name.

    The write is atomic: a failure leaves no partial file.
    """
    p = Path(path)
    if is_nifti(p):
        return write_nifti(image, p)
    if p.suffix.lower() == ".png":
        return write_png(image, p)
    raise InvalidInputError(p, "unsupported output format", hint="use .nii, .nii.gz or .png")


def summarize(entry: SeriesEntry, image: Image | None) -> dict[str, Any]:
    """Plain-data description of a series, for ``medsight info``."""
    import numpy as np

    out: dict[str, Any] = {
        "key": entry.key,
        "study_instance_uid": entry.study_instance_uid,
        "patient_id": entry.patient_id,
        "modality": entry.modality,
        "description": entry.description,
        "files": len(entry.files),
        "problems": list(entry.problems),
    }
    if image is not None:
        arr = np.asarray(image.array)
        finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
        out.update(
            shape=list(image.shape),
            channels=image.n_channels,
            dtype=str(arr.dtype),
            spacing=[round(float(s), 6) for s in image.spacing],
            orientation=image.orientation,
            origin=[round(float(v), 4) for v in image.origin],
            value_range=(
                [float(finite.min()), float(finite.max())] if finite.size else [None, None]
            ),
        )
        for key in ("channel_axis", "n_volumes", "repetition_time_s", "suv_status"):
            if image.meta.get(key) is not None:  # 4D series and PET (see core.image)
                out[key] = image.meta[key]
        for key in ("segmentation_type", "segment_values", "segments_overlap", "segments"):
            if image.meta.get(key) is not None:  # DICOM SEG (see io.dicom.seg)
                out[key] = image.meta[key]
        for key in ("roi_values", "rois_overlap", "rois", "referenced_series_instance_uid"):
            if image.meta.get(key) is not None:  # RT Structure Set (see io.dicom.rtstruct)
                out[key] = image.meta[key]
    return out
