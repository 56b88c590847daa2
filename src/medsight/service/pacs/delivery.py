"""Sending a finished job's results on: STOW-RS, C-STORE and the FHIR Bundle, as configured."""

from __future__ import annotations

from pathlib import Path

from medsight.core.errors import MedsightError
from medsight.service.models import JobRow
from medsight.service.settings import ServiceSettings

__all__ = ["Delivery", "validated"]


def validated(files: list[Path]) -> tuple[list[Path], list[str]]:
    """The files dciodvfy finds no error in, and a note per file held back.

    Without dciodvfy installed every file passes, with one note saying so.
    """
    from medsight.reporting.validate import DciodvfyMissingError, dciodvfy_errors

    good, notes = [], []
    for file in files:
        try:
            errors = dciodvfy_errors(file)
        except DciodvfyMissingError:
            return files, ["not validated (dciodvfy is not installed)"]
        if errors:
            notes.append(f"{file.name} held back ({len(errors)} dciodvfy error(s): {errors[0]})")
        else:
            good.append(file)
    return good, notes


class Delivery:
    """Callable the worker runs after a job is done; returns a one-line summary per target.

    A failed delivery does not fail the analysis: the summary says what went wrong and
    ``POST /api/pacs/deliver/{job}`` tries again.  DICOM objects dciodvfy finds errors in are
    never sent; the summary names them.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings

    def __call__(self, job: JobRow, results: Path) -> str:
        """Deliver ``results`` of ``job``; the summary is stored on the job."""
        s = self.settings
        files = sorted((results / "dicom").glob("*.dcm")) if (results / "dicom").is_dir() else []
        parts: list[str] = []
        notes: list[str] = []
        if s.push_results and (s.dicomweb_url or s.dimse_destination) and files:
            files, notes = validated(files)
        if s.push_results and s.dicomweb_url and files:
            parts.append(self._try("STOW-RS", lambda: self._stow(files)))
        if s.push_results and s.dimse_destination and files:
            parts.append(self._try("C-STORE", lambda: self._cstore(files)))
        if s.fhir_url and (results / "fhir_bundle.json").is_file():
            parts.append(self._try("FHIR", lambda: self._fhir(results / "fhir_bundle.json")))
        return "; ".join(parts + notes)

    @staticmethod
    def _try(label: str, action: object) -> str:
        try:
            return f"{label}: {action()}"  # type: ignore[operator]
        except MedsightError as err:
            return f"{label} failed: {err}"

    def _stow(self, files: list[Path]) -> str:
        from medsight.service.pacs.dicomweb import store_files

        return f"{store_files(self.settings.dicomweb_url or '', files)} object(s) stored"

    def _cstore(self, files: list[Path]) -> str:
        from medsight.service.pacs.dimse import send_files

        return f"{send_files(self.settings.dimse_destination or '', files)} object(s) sent"

    def _fhir(self, bundle: Path) -> str:
        from medsight.service.pacs.fhir import post_bundle

        return f"posted ({post_bundle(self.settings.fhir_url or '', bundle)})"
