"""Which DICOM instances the DICOMweb front serves, and their headers (cached by file stamp).

A study's instances are the files under ``<home>/studies/<uid>/`` (uploads, C-STORE, STOW-RS)
plus ``dicom/*.dcm`` of the newest finished job per package set (the SEG, SR and SC objects
the analysis wrote).  Result objects whose StudyInstanceUID is not the study's are left out.

Examples
--------
>>> from pydicom.data import get_testdata_file
>>> from pathlib import Path
>>> found = InstanceIndex().instances([Path(get_testdata_file("CT_small.dcm"))])
>>> [(i.header.Modality, i.pixel_keyword) for i in found]
[('CT', 'PixelData')]
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from medsight.service.models import JobState
from medsight.service.settings import ServiceSettings
from medsight.service.store import Store

__all__ = ["Instance", "InstanceIndex", "study_files"]

_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclasses.dataclass(frozen=True)
class Instance:
    """One stored instance: its file and its header (without pixel data)."""

    path: Path
    header: Dataset
    pixel_keyword: str | None  # which pixel data element the file holds, if any

    @property
    def study(self) -> str:
        """StudyInstanceUID."""
        return str(self.header.get("StudyInstanceUID", ""))

    @property
    def series(self) -> str:
        """SeriesInstanceUID."""
        return str(self.header.get("SeriesInstanceUID", ""))

    @property
    def sop(self) -> str:
        """SOPInstanceUID."""
        return str(self.header.get("SOPInstanceUID", ""))

    @property
    def transfer_syntax(self) -> str:
        """The file's transfer syntax UID."""
        return str(self.header.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1"))


def study_files(settings: ServiceSettings, store: Store, uid: str) -> list[Path]:
    """The files of study ``uid``: received instances, then the newest results per package set."""
    from medsight.service.worker import result_dir, study_dir

    folder = study_dir(settings, uid)
    files = sorted(p for p in folder.rglob("*.dcm") if not p.name.startswith("."))
    seen: set[str] = set()
    for job in store.jobs_for(uid):  # newest first
        if job.state != JobState.DONE or job.packages_key in seen:
            continue
        seen.add(job.packages_key)
        results = result_dir(settings, job.id) / "dicom"
        files += sorted(p for p in results.glob("*.dcm") if not p.name.startswith("."))
    return files


class InstanceIndex:
    """Reads instance headers once per file version (path, size, mtime); thread-safe."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, int, int], Instance | None] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, path: Path) -> Instance | None:
        """The instance in ``path``; None when it is not a readable DICOM file."""
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            with path.open("rb") as fh:  # which pixel element follows the header, if any
                full = pydicom.dcmread(fh, defer_size=256)
                pixel = next((k for k in _PIXEL_TAGS if k in full), None)
        except Exception:  # a damaged file is not served
            found = None
        else:
            found = Instance(path, header, pixel)
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return found

    def instances(self, files: Iterable[Path], study: str | None = None) -> list[Instance]:
        """The readable instances among ``files`` (of ``study`` only, when given)."""
        out = []
        for path in files:
            inst = self.read(path)
            if inst is not None and (study is None or inst.study == study):
                out.append(inst)
        return out
