"""The studies of an archive, one :class:`StudyTask` each (what a batch runs, one per study).

An archive is a folder (or a file) that :func:`medsight.io.study.read_study` can read: DICOM
in any folder layout, NIfTI, PNG, JPEG.  Its studies are those of
:func:`medsight.analysis.studies.split_studies`: one per StudyInstanceUID, one per
identity-less file.  A task's id is stable across runs (the StudyInstanceUID, or the file's
path relative to the archive), so a rerun recognises a finished study.

A task names the files of its study.  When they are exactly the files under one folder (or one
file), the worker reads that path; otherwise (two studies in one folder) it reads a private
folder of links to just its files, so a report never mixes studies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medsight.analysis.studies import split_studies
from medsight.io.study import Study, read_study

__all__ = ["StudyTask", "discover_tasks"]


@dataclasses.dataclass(frozen=True)
class StudyTask:
    """One study of an archive: its stable id, output folder name and files.

    ``files`` are relative to ``root``; ``path`` (relative to ``root``, ``"."`` for the
    archive itself) is set when that folder or file holds exactly this study.
    """

    id: str
    folder: str
    root: str
    files: tuple[str, ...]
    kind: str  # "dicom" or "file"
    path: str | None = None
    problem: str | None = None  # from split_studies: the study must not be analysed

    @contextlib.contextmanager
    def input_path(self) -> Iterator[Path]:
        """A path holding exactly this study's files (links in a temporary folder if needed)."""
        root = Path(self.root)
        if self.path is not None:
            yield root / self.path
            return
        with tempfile.TemporaryDirectory(prefix="medsight-study-") as tmp:
            for rel in self.files:
                link = Path(tmp) / rel
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink((root / rel).resolve(), link)
            yield Path(tmp)


def _all_files(study: Study) -> set[Path]:
    files = {f for entry in study for f in entry.files}
    return files | {Path(b.path) for b in study.bad_files}


def _exact_path(files: set[Path], every: set[Path], root: Path) -> str | None:
    """The folder (or file) under ``root`` holding exactly ``files`` among ``every``."""
    if len(files) == 1 and root.is_file():
        return "."
    parents = {f.parent for f in files}
    common = Path(os.path.commonpath([str(p) for p in parents])) if parents else root
    under = {f for f in every if common == f.parent or common in f.parents}
    if under == files:
        return Path(os.path.relpath(common, root)).as_posix()
    if len(files) == 1:
        return Path(os.path.relpath(next(iter(files)), root)).as_posix()
    return None


def discover_tasks(archive: str | os.PathLike[str]) -> list[StudyTask]:
    """The studies of ``archive``, in the order :func:`split_studies` meets them.

    Raises
    ------
    MedsightError
        The archive does not exist or holds nothing readable.

    Examples
    --------
    >>> import tempfile, pathlib, shutil
    >>> from pydicom.data import get_testdata_file
    >>> src = pathlib.Path(tempfile.mkdtemp())
    >>> _ = shutil.copy(get_testdata_file("CT_small.dcm", download=False), src / "ct.dcm")
    >>> [(t.kind, t.files, t.path) for t in discover_tasks(src)]
    [('dicom', ('ct.dcm',), '.')]
    """
    root = Path(archive)
    study = read_study(root)
    base = root if root.is_dir() else root.parent
    every = {p.resolve() for p in _all_files(study)}
    tasks = []
    for group in split_studies(study):
        files = {f.resolve() for entry in group.study for f in entry.files}
        rel = tuple(sorted(Path(os.path.relpath(f, base.resolve())).as_posix() for f in files))
        is_dicom = any(entry.dicom is not None for entry in group.study)
        exact = _exact_path(files, every, base.resolve() if root.is_dir() else root.resolve())
        tasks.append(
            StudyTask(
                id=group.study_uid or (rel[0] if rel else group.folder),
                folder=group.folder,
                root=str(base),
                files=rel,
                kind="dicom" if is_dicom else "file",
                path=exact if root.is_dir() else (root.name if exact else None),
                problem=group.problem,
            )
        )
    return tasks
