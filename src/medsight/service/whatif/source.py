"""The image a job's package ran on, found again the way the analysis found it.

The job's study is read from the service's study folder and the package's series chosen by
:func:`medsight.analysis.selection.select_series` (multi-series models: their roles stacked by
:func:`medsight.analysis.roles.stack_roles`), exactly as :func:`medsight.analysis.pipeline.analyze`
chose it; a package the analysis could not run there is refused with the same reason.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.models.package import ModelPackage
from medsight.service.deps import Services
from medsight.service.errors import ConflictError, NotFoundError
from medsight.service.models import JobRow, JobState
from medsight.service.worker import result_dir, study_dir

__all__ = ["JobImage", "check_index", "done_job", "job_package", "package_image", "report_of"]


@dataclasses.dataclass(frozen=True)
class JobImage:
    """The image a package ran on, its DICOM header (or None) and the series' description."""

    image: Image
    header: Any
    series: str


def done_job(services: Services, job_id: str) -> JobRow:
    """The job, which must be finished (409 otherwise)."""
    job = services.store.get_job(job_id)
    if job.state != JobState.DONE:
        raise ConflictError(f"job {job_id}", f"has no result yet (state {job.state})")
    return job


def report_of(services: Services, job_id: str) -> dict[str, Any]:
    """The job's ``report.json``."""
    path = result_dir(services.settings, job_id) / "report.json"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def job_package(services: Services, job: JobRow, package_id: str) -> ModelPackage:
    """One of the packages the job ran (``name@version``); 404 for any other."""
    ran = job.packages_key.split(",")
    if package_id not in ran:
        raise NotFoundError(
            f"package {package_id}", f"did not run in job {job.id} (it ran {', '.join(ran)})"
        )
    return services.catalog.resolve([package_id])[0]


def package_image(services: Services, job: JobRow, package: ModelPackage) -> JobImage:
    """The (stacked) image ``package`` ran on in ``job``'s study.

    Raises
    ------
    ConflictError
        The analysis could not run the package on this study (the reason is given).
    """
    from medsight.analysis.roles import stack_roles
    from medsight.analysis.selection import select_series
    from medsight.io.study import read_study

    folder = study_dir(services.settings, job.study_uid)
    if not folder.is_dir():
        raise NotFoundError(f"study {job.study_uid}", "has no stored files")
    study = read_study(folder)
    (sel,) = select_series(study, [package])
    if sel.series is None or sel.withhold:
        reason = sel.withhold or sel.reason
        raise ConflictError(f"model {package.id}", f"did not run on this study: {reason}")
    loaded: dict[str, Image] = {}
    image = sel.series.load()
    loaded[sel.series.key] = image
    stacked = stack_roles(sel, image, loaded)
    if stacked.image is None:
        raise ConflictError(f"model {package.id}", "; ".join(stacked.problems))
    header = sel.series.dicom.header if sel.series.dicom is not None else None
    return JobImage(stacked.image, header, sel.reason)


def check_index(name: str, value: int, size: int) -> int:
    """``value`` as an index into an axis of ``size`` (400 naming ``name`` otherwise)."""
    if not 0 <= value < size:
        raise InvalidInputError(name, f"{value} is outside 0..{size - 1}")
    return int(value)
