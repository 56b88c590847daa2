"""Segmentation edits: brush / erase / re-threshold a job's mask into a new, recorded version.

Version 1 is what the model wrote (``mask_<model>.nii.gz`` and, for DICOM input,
``dicom/seg_<model>.dcm`` in the job's results); it is never changed.  Each edit applies its
operations to one version's mask (``from_version``, default the latest) and writes the next
version under ``results/<job>/edits/<model>/v<N>/``: ``mask.nii.gz``, and ``seg.dcm`` when
the job has a SEG -- a new DICOM SEG (highdicom, through
:func:`medsight.reporting.dicom_seg.build_segmentation`) on the same source series with a new
Series Instance UID, the next Series Number, Segment Algorithm Type SEMIAUTOMATIC, Content
Label / Description / Creator naming the editor and the version it came from.  A
:class:`~medsight.service.models.SegEditRow` records who, when, what (the operations) and from
which version, with the new measurements (:func:`medsight.clinical.measurements.measure_mask`).

Operations, in the image's index space (slice ``k`` shown with rows ``j``, columns ``i``):

* ``{"op": "brush" | "erase", "slice": k, "points": [[i, j], ...], "radius": r}``: a stroke
  of disks of radius ``r`` (pixels) along the points; brush sets ``label``, erase clears it;
* ``{"op": "brush" | "erase", "slice": k, "rle": [n0, n1, ...]}``: a drawn mask of the slice as
  alternating run lengths (off, on, off, ...) in display order (row ``j``, then column ``i``);
* ``{"op": "threshold", "value": t}``: ``label`` where the model's probability is >= ``t``
  (the package re-runs on the job's image for its probability map).

Examples
--------
>>> plane = np.zeros((5, 4), np.int16)
>>> stroke(plane.shape, [[2, 1]], 1.0).astype(int).T
array([[0, 0, 1, 0, 0],
       [0, 1, 1, 1, 0],
       [0, 0, 1, 0, 0],
       [0, 0, 0, 0, 0]])
>>> decode_rle([1, 2, 17], (5, 4)).astype(int).T[0]
array([0, 1, 1, 0, 0])
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field, model_validator

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.core.significance import Significance
from medsight.models.package import ModelPackage
from medsight.service.deps import Services
from medsight.service.errors import ConflictError, NotFoundError
from medsight.service.models import JobRow, SegEditRow
from medsight.service.whatif.source import check_index, package_image, report_of
from medsight.service.worker import result_dir

__all__ = [
    "EditOp",
    "EditQuery",
    "apply_operations",
    "decode_rle",
    "edit_segmentation",
    "list_versions",
    "seg_package",
    "stroke",
    "version_mask",
]


class EditOp(BaseModel):
    """One operation (see the module docstring)."""

    op: Literal["brush", "erase", "threshold"]
    slice: int = Field(0, ge=0)
    points: list[list[float]] | None = Field(None, min_length=1, max_length=5000)
    radius: float = Field(2.0, gt=0, le=200)
    rle: list[int] | None = Field(None, max_length=1_000_000)
    value: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _complete(self) -> EditOp:
        if self.op == "threshold":
            if self.value is None:
                raise ValueError("a threshold operation needs value (0 < value < 1)")
        elif (self.points is None) == (self.rle is None):
            raise ValueError(f"a {self.op} operation needs exactly one of points or rle")
        if self.points is not None and any(len(p) != 2 for p in self.points):
            raise ValueError("points are [i, j] pairs")
        return self


class EditQuery(BaseModel):
    """The body of ``POST /api/jobs/{job}/segmentation/edit``."""

    package: str | None = Field(None, description="segmentation package id; default: the one")
    label: int | str = Field(description="label index or name the operations paint")
    from_version: int | None = Field(None, ge=1, description="default: the latest version")
    operations: list[EditOp] = Field(min_length=1, max_length=200)
    note: str = Field("", max_length=256)


def stroke(shape: tuple[int, int], points: list[list[float]], radius: float) -> NDArray[np.bool_]:
    """Disks of ``radius`` along the polyline ``points`` on an ``(i, j)`` plane of ``shape``."""
    pts = np.asarray(points, dtype=float)
    if len(pts) > 1:  # sample each segment at most half a pixel apart
        parts = [pts[:1]]
        for a, b in itertools.pairwise(pts):
            n = max(1, int(np.ceil(np.linalg.norm(b - a) * 2)))
            parts.append(a + (b - a) * (np.arange(1, n + 1)[:, None] / n))
        pts = np.concatenate(parts)
    out = np.zeros(shape, dtype=bool)
    r = int(np.ceil(radius))
    for ci, cj in pts:
        i0, i1 = max(int(ci) - r, 0), min(int(ci) + r + 2, shape[0])
        j0, j1 = max(int(cj) - r, 0), min(int(cj) + r + 2, shape[1])
        if i0 >= i1 or j0 >= j1:
            continue
        ii, jj = np.ogrid[i0:i1, j0:j1]
        out[i0:i1, j0:j1] |= (ii - ci) ** 2 + (jj - cj) ** 2 <= radius**2
    return out


def decode_rle(counts: list[int], shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Alternating run lengths (off first) over rows ``j`` then columns ``i`` -> ``(i, j)``."""
    n = shape[0] * shape[1]
    if any(c < 0 for c in counts) or sum(counts) != n:
        raise InvalidInputError("rle", f"run lengths must be >= 0 and add up to {n} pixels")
    flat = np.zeros(n, dtype=bool)
    pos = 0
    for k, c in enumerate(counts):
        if k % 2:
            flat[pos : pos + c] = True
        pos += c
    return flat.reshape(shape[1], shape[0]).T  # display rows are j


def _as_3d(arr: NDArray[Any]) -> NDArray[Any]:
    return arr[:, :, None] if arr.ndim == 2 else arr


def apply_operations(
    mask: NDArray[Any],
    operations: list[EditOp],
    label: int,
    probabilities: Any = None,
) -> NDArray[np.int16]:
    """The label map ``mask`` (``(i, j[, k])``) after ``operations``; a new array.

    ``probabilities`` is a callable returning the ``(i, j[, k], classes)`` probability map
    (called once, only when a threshold operation needs it).
    """
    out = np.array(mask, dtype=np.int16, copy=True)
    vol = _as_3d(out)
    probs = None
    for n, op in enumerate(operations):
        where = f"operations[{n}]"
        if op.op == "threshold":
            if probs is None:
                probs = _as_3d_probs(probabilities(), vol.shape)
            if label >= probs.shape[-1]:
                raise InvalidInputError(where, f"the model has no probability for label {label}")
            vol[vol == label] = 0
            vol[probs[..., label] >= op.value] = label
            continue
        k = check_index(f"{where}.slice", op.slice, vol.shape[2])
        plane = vol[:, :, k]
        shape = (plane.shape[0], plane.shape[1])
        drawn = (
            decode_rle(op.rle, shape)
            if op.rle is not None
            else stroke(shape, op.points or [], op.radius)
        )
        if op.op == "brush":
            plane[drawn] = label
        else:
            plane[drawn & (plane == label)] = 0
    return out


def _as_3d_probs(probs: NDArray[Any], shape: tuple[int, ...]) -> NDArray[Any]:
    p = np.asarray(probs)
    return p[:, :, None, :] if p.ndim == 3 and len(shape) == 3 else p


@dataclasses.dataclass(frozen=True)
class _Version:
    version: int
    mask_file: str  # relative to the job's results
    seg_file: str
    by: str
    time: Any
    parent: int | None
    series_number: int | None
    row: SegEditRow | None = None


def seg_package(services: Services, job: JobRow, package_id: str | None) -> ModelPackage:
    """The job's segmentation package that wrote a mask (the only one when not named)."""
    outputs = report_of(services, job.id).get("outputs", {})
    with_mask = [k.removeprefix("mask ") for k in outputs if k.startswith("mask ")]
    if package_id is None:
        if len(with_mask) != 1:
            raise InvalidInputError(
                "package", f"name one of the job's segmentation models: {', '.join(with_mask)}"
            )
        package_id = with_mask[0]
    if package_id not in with_mask:
        raise NotFoundError(f"package {package_id}", f"wrote no mask in job {job.id}")
    return services.catalog.resolve([package_id])[0]


def _label_index(package: ModelPackage, label: int | str) -> tuple[int, str]:
    labels = {lab.index: lab.name for lab in package.spec.labels if lab.index > 0}
    if isinstance(label, int) or str(label).isdigit():
        index = int(label)
        if index in labels:
            return index, labels[index]
    else:
        for index, name in labels.items():
            if name == label:
                return index, name
    have = ", ".join(f"{i} ({n})" for i, n in sorted(labels.items()))
    raise InvalidInputError("label", f"{label!r} is not a label of {package.id} (labels: {have})")


def _ensure_table(services: Services) -> None:
    SegEditRow.__table__.create(services.store.engine, checkfirst=True)  # type: ignore[attr-defined]


def _versions(services: Services, job: JobRow, package: ModelPackage) -> list[_Version]:
    from sqlalchemy import select

    outputs = report_of(services, job.id)["outputs"]
    seg = outputs.get(f"DICOM SEG {package.id}", "")
    first = _Version(1, outputs[f"mask {package.id}"], seg, "model", job.finished, None, None)
    if seg:
        import pydicom

        path = result_dir(services.settings, job.id) / seg
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        first = dataclasses.replace(first, series_number=int(ds.get("SeriesNumber") or 0))
    _ensure_table(services)
    with services.store.session() as ses:
        q = select(SegEditRow).where(
            (SegEditRow.job_id == job.id) & (SegEditRow.package_id == package.id)
        )
        rows = list(ses.scalars(q.order_by(SegEditRow.version)))
    edits = [
        _Version(
            r.version,
            r.mask_file,
            r.seg_file,
            r.username,
            r.time,
            r.parent_version,
            r.series_number,
            r,
        )
        for r in rows
    ]
    return [first, *edits]


def _version_dict(v: _Version, job_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": v.version,
        "parent_version": v.parent,
        "by": v.by,
        "time": v.time.isoformat() if v.time is not None else None,
        "mask_file": v.mask_file,
        "seg_file": v.seg_file or None,
        "series_number": v.series_number,
        "url": f"/api/jobs/{job_id}/files/{v.seg_file}" if v.seg_file else None,
    }
    if v.row is not None:
        out |= {
            "label": v.row.label,
            "operations": json.loads(v.row.operations),
            "note": v.row.note,
            "changed_voxels": v.row.changed_voxels,
            "measurements": json.loads(v.row.measurements or "[]"),
            "series_instance_uid": v.row.seg_series_uid or None,
            "sop_instance_uid": v.row.seg_sop_uid or None,
        }
    return out


def list_versions(services: Services, job: JobRow, package: ModelPackage) -> list[dict[str, Any]]:
    """Every version of the job's segmentation by ``package``, the model's own first."""
    return [_version_dict(v, job.id) for v in _versions(services, job, package)]


def version_mask(services: Services, job: JobRow, package: ModelPackage, version: int) -> Image:
    """The mask Image of one version."""
    from medsight.io import read_image

    found = {v.version: v for v in _versions(services, job, package)}
    if version not in found:
        raise NotFoundError(f"version {version}", f"does not exist (latest is {max(found)})")
    return read_image(result_dir(services.settings, job.id) / found[version].mask_file)


def _measurements(
    mask: Image, label: int, name: str, anatomy: bool = False
) -> list[dict[str, Any]]:
    from medsight.clinical.measurements import measure_mask

    found = measure_mask(mask, {label: name})[0].measurements(anatomy=anatomy)
    return [
        {
            "concept": m.concept.meaning,
            "code": f"{m.concept.scheme}:{m.concept.value}",
            "value": m.value,
            "unit": m.unit_text,
            "qualifier": m.qualifier,
        }
        for m in found
    ]


def _cs(text: str) -> str:
    """``text`` as a DICOM CS value (upper case, digits, space, underscore; 16 characters)."""
    return re.sub(r"[^A-Z0-9_ ]", "_", text.upper())[:16] or "EDITOR"


def _write_seg(
    source: Image,
    arr: NDArray[Any],
    package: ModelPackage,
    path: Path,
    *,
    editor: str,
    version: int,
    parent: int,
    series_number: int,
    description: str,
) -> Any:
    import highdicom as hd

    from medsight.io.atomic import atomic_path
    from medsight.reporting.dicom_seg import build_segmentation

    spec = package.spec
    seg = build_segmentation(
        source.with_array(arr.reshape(source.shape).astype(np.uint8)),
        source,
        spec.labels,
        algorithm_name=spec.name,
        algorithm_version=spec.version,
        series_number=series_number,
        series_description=description[:64],
    )
    seg.ContentLabel = _cs(editor)
    seg.ContentDescription = f"version {version}, edited by {editor} from version {parent}"[:64]
    seg.ContentCreatorName = editor[:64]
    for item in seg.SegmentSequence:  # drawn by a person on the model's output
        item.SegmentAlgorithmType = hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC.value
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return seg


def edit_segmentation(
    services: Services, job: JobRow, query: EditQuery, editor: str
) -> dict[str, Any]:
    """Apply ``query`` to a version of the job's mask and store the next version.

    Raises
    ------
    InvalidInputError
        Unknown label, operations outside the image, or an edit that changes nothing.
    ConflictError
        Another edit took the same version number meanwhile (retry).
    """
    from sqlalchemy.exc import IntegrityError

    from medsight.io import write_image
    from medsight.io.atomic import atomic_path

    package = seg_package(services, job, query.package)
    label, name = _label_index(package, query.label)
    versions = _versions(services, job, package)
    by_number = {v.version: v for v in versions}
    parent = query.from_version or versions[-1].version
    if parent not in by_number:
        raise NotFoundError(f"version {parent}", f"does not exist (latest is {max(by_number)})")
    base = version_mask(services, job, package, parent)
    base_arr = np.asarray(base.array)
    source = None
    needs_image = any(op.op == "threshold" for op in query.operations) or bool(versions[0].seg_file)
    if needs_image:
        source = package_image(services, job, package).image
        if _as_3d(np.asarray(source.array)).shape[:3] != _as_3d(base_arr).shape:
            raise ConflictError(f"model {package.id}", "its mask is not on the study's grid")

    def probabilities() -> NDArray[Any]:
        from medsight.inference.cache import cached_model
        from medsight.inference.segment import Segmenter

        assert source is not None
        work = source
        if source.spatial_ndim == 3 and package.spec.input.spatial_ndim == 2:
            work = source.with_array(np.asarray(source.array)[:, :, 0], spatial_ndim=2)
        segmenter = cached_model(Segmenter, package, device="cpu")
        probs = segmenter(work, probabilities=True).probabilities
        assert probs is not None
        return probs

    new_arr = apply_operations(base_arr, query.operations, label, probabilities)
    changed = int(np.count_nonzero(new_arr != base_arr))
    if changed == 0:
        raise InvalidInputError("operations", "change no voxel of the mask; nothing to save")
    version = versions[-1].version + 1
    mask_image = base.with_array(new_arr)
    measured_on = source.with_array(new_arr.reshape(source.shape)) if source else mask_image
    anatomy = any(
        lab.index == label and lab.significance is Significance.ANATOMY
        for lab in package.spec.labels
    )
    measurements = _measurements(measured_on, label, name, anatomy)
    root = result_dir(services.settings, job.id)
    from medsight.analysis.studies import slug

    folder = root / "edits" / slug(package.spec.name) / f"v{version}"
    if folder.exists():
        raise ConflictError(f"version {version}", "is being written by another edit; retry")
    folder.mkdir(parents=True)
    try:
        with atomic_path(folder / "mask.nii.gz") as tmp:
            write_image(mask_image.with_array(new_arr.astype(np.int16)), tmp)
        seg_file, series_uid, sop_uid, number = "", "", "", None
        if versions[0].seg_file and source is not None:
            import pydicom

            original = pydicom.dcmread(root / versions[0].seg_file, stop_before_pixels=True)
            number = max(v.series_number or 0 for v in versions) + 1
            desc = f"{original.get('SeriesDescription', 'segmentation')} (edited v{version})"
            seg = _write_seg(
                source,
                new_arr,
                package,
                folder / "seg.dcm",
                editor=editor,
                version=version,
                parent=parent,
                series_number=number,
                description=desc,
            )
            seg_file = str((folder / "seg.dcm").relative_to(root))
            series_uid, sop_uid = str(seg.SeriesInstanceUID), str(seg.SOPInstanceUID)
        row = SegEditRow(
            job_id=job.id,
            package_id=package.id,
            version=version,
            parent_version=parent,
            label=label,
            operations=json.dumps([op.model_dump(exclude_none=True) for op in query.operations]),
            note=query.note,
            username=editor,
            changed_voxels=changed,
            measurements=json.dumps(measurements),
            mask_file=str((folder / "mask.nii.gz").relative_to(root)),
            seg_file=seg_file,
            seg_series_uid=series_uid,
            seg_sop_uid=sop_uid,
            series_number=number,
        )
        try:
            with services.store.session() as ses:
                ses.add(row)
        except IntegrityError as exc:
            raise ConflictError(f"version {version}", "was saved by another edit; retry") from exc
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    before = _measurements(
        source.with_array(base_arr.reshape(source.shape)) if source else base,
        label,
        name,
        anatomy,
    )
    out = _version_dict(_versions(services, job, package)[-1], job.id)
    return out | {"package": package.id, "label_name": name, "measurements_before": before}
