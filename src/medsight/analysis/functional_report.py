"""The functional section of a report: z-maps, cluster table, activation picture, DICOM SEG.

:func:`functional_section` runs :func:`medsight.analysis.functional.run_glm` on the study's 4D
BOLD series and writes, into the report folder::

    zmap_<contrast>.nii.gz         the z-map on the series' grid (NIfTI, RAS on disk)
    clusters.csv                   one row per cluster: peak z, size, LPS and voxel coordinates
    motion.tsv                     the six realignment parameters per volume
    activation_<contrast>.png      thresholded z over the mean EPI, axial mosaic (nilearn)
    dicom/seg_fmri_<contrast>.dcm  DICOM SEG of the suprathreshold clusters, one segment each,
                                   referencing the first time point's instances (DICOM input)
    dicom/pm_fmri_<contrast>.dcm   DICOM Parametric Map of the z-map (float, quantity Z-score),
                                   same references (written with the SEG)
    dicom/sr_fmri_<contrast>.dcm   DICOM SR (TID 1500) with one Volumetric ROI group per
                                   cluster (peak z as a Maximum, size in mm3, finding site
                                   brain) referencing the cluster's segment in the SEG

and returns the report's pieces: a :class:`~medsight.reporting.report.ModelRun` for the GLM,
one :class:`~medsight.core.findings.Finding` per cluster (peak z, volume, location), the
pictures and output files.  Activation clusters map task-related signal, not a lesion: their
findings carry ``Significance.ANATOMY`` (never flag a study for triage).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medsight import __version__
from medsight.analysis.functional import (
    MOTION_COLUMNS,
    Cluster,
    ContrastResult,
    GlmOptions,
    GlmResult,
    run_glm,
    summary_rows,
    time_point,
)
from medsight.analysis.studies import slug
from medsight.core.codes import NO_UNITS, VOLUME, Code
from medsight.core.errors import InvalidInputError, MedsightError
from medsight.core.findings import Finding, FindingKind, Measurement, Region
from medsight.core.image import Image
from medsight.core.significance import Significance
from medsight.io.atomic import atomic_path, write_text_atomic
from medsight.io.study import SeriesEntry, Study
from medsight.reporting.report import ModelRun, ReportImage
from medsight.reporting.sources import source_header_problems

if TYPE_CHECKING:
    from highdicom.pm import ParametricMap
    from highdicom.seg import Segmentation

__all__ = [
    "ACTIVATION",
    "MODEL_ID",
    "FunctionalSection",
    "bold_series",
    "functional_section",
    "parametric_map_of",
    "segmentation_of_clusters",
    "structured_report_of",
]

MODEL_ID = "medsight-fmri-glm"
#: What a cluster is: no standard code exists for a task-activation region (private scheme).
ACTIVATION = Code("fmri-activation", "99MEDSIGHT", "Task activation cluster")
FUNCTION = Code("246464006", "SCT", "Function")  # DICOM CID 7150 segmentation category
BRAIN = Code("12738006", "SCT", "Brain")
Z_SCORE = Code("113071", "DCM", "Z-score")
CUBIC_MILLIMETER = Code("mm3", "UCUM", "cubic millimeter")
_INTENDED_USE = (
    "First-level GLM of a task fMRI run (nilearn): where the BOLD signal follows the events "
    "given, for research and pre-surgical mapping support; not a diagnosis."
)
_LIMITS = (
    "Single subject, single run, no slice-timing correction, rigid realignment to volume 1; "
    "z-maps of short runs are noisy and uncorrected thresholds give false clusters."
)


@dataclasses.dataclass
class FunctionalSection:
    """What the functional analysis adds to a report."""

    run: ModelRun
    findings: list[Finding] = dataclasses.field(default_factory=list)
    images: list[ReportImage] = dataclasses.field(default_factory=list)
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    result: GlmResult | None = None


def bold_series(study: Study) -> list[SeriesEntry]:
    """The entries of ``study`` that are 3D time series (DICOM channels classified as time, or a
    4D NIfTI; headers only for DICOM)."""
    found = []
    for entry in study:
        if entry.dicom is not None:
            temporal = entry.dicom.temporal
            if temporal is not None and temporal.channel_axis == "time":
                found.append(entry)
        elif entry.path is not None and entry.modality != "OT":
            import nibabel as nib

            try:
                if len(nib.load(entry.path).shape) == 4:
                    found.append(entry)
            except Exception:  # unreadable here: reported when it is loaded
                continue
    return found


def _cluster_finding(
    cluster: Cluster, labels: Image, source: Image, evidence: str, fwhm: float
) -> Finding:
    member = np.argwhere(np.asarray(labels.array) == cluster.number)
    lo, hi = member.min(axis=0), member.max(axis=0)
    region = Region(tuple((lo + hi) / 2.0), tuple(hi - lo + 1.0))
    return Finding(
        finding=ACTIVATION,
        model_id=MODEL_ID,
        model_version=__version__,
        kind=FindingKind.SEGMENTATION,
        measurements=(
            Measurement(Z_SCORE, cluster.peak_z, NO_UNITS, qualifier="peak"),
            Measurement(VOLUME, cluster.size_mm3, CUBIC_MILLIMETER),
        ),
        site=BRAIN,
        segment_number=cluster.number,
        source=source.source,
        evidence=(evidence,),
        note=cluster.describe() + f" (smoothing {fwhm:g} mm)",
        significance=Significance.ANATOMY,
        region=region,
    )


def segmentation_of_clusters(contrast: ContrastResult, first_volume: Image) -> Segmentation:
    """A highdicom binary SEG of ``contrast``'s clusters on the DICOM instances of volume 1.

    Raises
    ------
    InvalidInputError
        No cluster, or the first volume has no DICOM instances of its own.
    """
    from medsight.models.spec import LabelSpec
    from medsight.reporting.dicom_seg import build_segmentation

    if not contrast.clusters:
        raise InvalidInputError(f"contrast {contrast.name}", "has no suprathreshold cluster")
    if first_volume.source is None:
        raise InvalidInputError(
            "series", first_volume.meta.get("source_note", "not read from DICOM files")
        )
    labels = [
        LabelSpec(
            index=c.number,
            name=f"{contrast.name} cluster {c.number}"[:64],
            code=ACTIVATION,
            category=FUNCTION,
            color=(255, 120 + min(120, 20 * c.number), 0),
        )
        for c in contrast.clusters
    ]
    mask = contrast.labels.with_array(np.asarray(contrast.labels.array).astype(np.uint16))
    return build_segmentation(
        mask,
        first_volume,
        labels,
        algorithm_name=MODEL_ID,
        algorithm_version=__version__,
        series_number=911,
        series_description=f"fMRI clusters {contrast.name}"[:64],
    )


def structured_report_of(
    contrast: ContrastResult, findings: Sequence[Finding], seg: Segmentation, first_volume: Image
) -> Any:
    """A TID 1500 SR of ``contrast``'s cluster ``findings``: one Volumetric ROI group per cluster
    (peak z, size in mm3) referencing its segment of ``seg`` (:func:`segmentation_of_clusters`
    numbers segments 1..n in cluster order)."""
    from medsight.reporting.dicom_sr import build_sr
    from medsight.reporting.sources import source_datasets

    numbers = {k: n for n, k in enumerate(sorted(c.number for c in contrast.clusters), 1)}
    return build_sr(
        findings,
        source_datasets(first_volume),
        segmentations={MODEL_ID: seg},
        segment_numbers={MODEL_ID: numbers},
        series_number=913,
    )


def _world(affine: NDArray[np.float64], index: NDArray[np.int64]) -> NDArray[np.float64]:
    # world coordinates of voxel indices under a 4x4 affine
    return np.asarray(index, float) @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def parametric_map_of(contrast: ContrastResult, first_volume: Image) -> ParametricMap:
    """A highdicom Parametric Map of ``contrast``'s z-map (float32, unit "no units", quantity
    DCM Z-score) on the DICOM instances of volume 1.

    Raises
    ------
    InvalidInputError
        The first volume has no DICOM instances of its own.
    """
    import highdicom as hd

    from medsight.reporting.dicom_seg import hd_code
    from medsight.reporting.sources import source_datasets

    if first_volume.source is None:
        raise InvalidInputError(
            "series", first_volume.meta.get("source_note", "not read from DICOM files")
        )
    datasets = source_datasets(first_volume)
    z = np.asarray(contrast.z_map.array, dtype=np.float32)
    frames = np.ascontiguousarray(np.transpose(z, (2, 1, 0)))  # (slices, rows, columns)
    finite = z[np.isfinite(z)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="z",
        lut_explanation=f"z-score of {contrast.name}"[:64],
        unit=hd_code(NO_UNITS),
        value_range=(low, high),
        slope=1.0,
        intercept=0.0,
        quantity_definition=hd_code(Z_SCORE),
    )
    pmap = hd.pm.ParametricMap(
        source_images=datasets,
        pixel_array=frames,
        series_instance_uid=hd.UID(),
        series_number=912,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medsight",
        manufacturer_model_name=MODEL_ID,
        software_versions=f"medsight {__version__}",
        device_serial_number="0",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[
            hd.VOILUTTransformation(
                window_center=0.0, window_width=max(2.0 * max(abs(low), abs(high)), 1.0)
            )
        ],
        content_label="ZMAP",
        content_description=f"fMRI z-map {contrast.name}"[:64],
    )
    if "Laterality" not in pmap:  # General Series type 2C: unknown here, so empty
        pmap.Laterality = datasets[0].get("Laterality", "")
    return pmap


def _picture(out: Path, contrast: ContrastResult, mean_epi: Image, mask: Image, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nilearn import plotting

    kept = np.asarray(contrast.labels.array) > 0  # the clusters kept, not every voxel > z
    z = contrast.z_map.with_array(np.where(kept, contrast.z_map.array, 0.0)).to_nibabel()
    bg = mean_epi.to_nibabel()
    threshold = contrast.threshold if np.isfinite(contrast.threshold) else None
    # axial cuts evenly through the brain mask (RAS z of the NIfTI the plot is drawn from)
    inside = np.argwhere(np.asarray(mask.array) > 0)
    ras = _world(bg.affine, inside)
    peaks = [c.peak_lps[2] for c in contrast.clusters[:4]]  # LPS and RAS share z
    even = np.linspace(np.percentile(ras[:, 2], 8), np.percentile(ras[:, 2], 92), 8 - len(peaks))
    cuts = sorted([*peaks, *even])  # through the strongest peaks, then evenly
    figure = plt.figure(figsize=(14, 3.0))
    display = plotting.plot_stat_map(
        z,
        bg_img=bg,
        threshold=threshold,
        display_mode="z",
        cut_coords=[float(c) for c in cuts],
        figure=figure,
        title=f"{contrast.name}: z > {contrast.threshold:.2f}",
        black_bg=True,
        draw_cross=False,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, facecolor="black")
    display.close()
    plt.close(figure)
    with atomic_path(out / name) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())


def _validate(out: Path, names: Sequence[str]) -> list[str]:
    """dciodvfy's errors on the written objects, as report warnings (none when not installed:
    the pipeline already says that DICOM outputs were not validated)."""
    from medsight.reporting.validate import DciodvfyMissingError, dciodvfy_errors

    found = []
    for name in names:
        try:
            errors = dciodvfy_errors(out / "dicom" / name)
        except DciodvfyMissingError:
            return []
        found += [f"dicom/{name}: {e}" for e in errors]
    return found


def _csv(rows: Sequence[dict[str, object]], columns: Sequence[str], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def functional_section(
    study: Study,
    out_dir: str | os.PathLike[str],
    events: str | os.PathLike[str],
    options: GlmOptions | None = None,
    *,
    dicom_outputs: bool = True,
) -> FunctionalSection:
    """Run the GLM on the study's one BOLD series and write its outputs (module docs).

    A study without a time series, or with several, gives a ``skipped`` run saying why (the
    rest of the report still comes); a failure of the analysis gives a ``failed`` run.
    """
    from medsight.io import write_image

    options = options or GlmOptions()
    out = Path(out_dir)
    base = {
        "model_id": MODEL_ID,
        "task": "functional",
        "intended_use": _INTENDED_USE,
        "limitations": _LIMITS,
    }
    candidates = bold_series(study)
    if len(candidates) != 1:
        listing = "; ".join(e.description or e.key for e in candidates)
        why = (
            "no 4D time series in the study (events were given)"
            if not candidates
            else f"{len(candidates)} time series ({listing}): analyse one at a time"
        )
        return FunctionalSection(ModelRun(status="skipped", reason=why, **base))
    entry = candidates[0]
    series = entry.description or entry.key
    try:
        image = entry.load()
        result = run_glm(image, events, options)
    except MedsightError as err:
        status = "skipped" if isinstance(err, InvalidInputError) else "failed"
        return FunctionalSection(ModelRun(status=status, series=series, reason=str(err), **base))
    section = FunctionalSection(
        ModelRun(status="ran", series=series, warnings=list(result.problems), **base),
        result=result,
    )
    section.warnings += [f"{MODEL_ID}: {p}" for p in result.problems]
    first = time_point(image, 0)
    rows = summary_rows(result)
    columns = list(rows[0]) if rows else ["contrast", "cluster", "peak_z"]
    write_text_atomic(out / "clusters.csv", _csv(rows, columns))
    section.outputs["fMRI cluster table"] = "clusters.csv"
    motion_rows = [
        {"volume": t + 1, **{c: round(float(v), 6) for c, v in zip(MOTION_COLUMNS, m, strict=True)}}
        for t, m in enumerate(result.motion)
    ]
    write_text_atomic(out / "motion.tsv", _csv(motion_rows, ["volume", *MOTION_COLUMNS], "\t"))
    section.outputs["fMRI motion parameters"] = "motion.tsv"
    control = options.height_control.value
    for contrast in result.contrasts:
        name = slug(contrast.name)
        zfile, png = f"zmap_{name}.nii.gz", f"activation_{name}.png"
        write_image(contrast.z_map, out / zfile)
        section.outputs[f"z-map {contrast.name}"] = zfile
        _picture(out, contrast, result.mean_epi, result.mask, png)
        what = contrast.name if options.contrasts else f"{contrast.name} vs baseline"
        rule = (
            f"z > {contrast.threshold:.2f} (uncorrected)"
            if control == "none"
            else f"{control} alpha {options.alpha:g} (z > {contrast.threshold:.2f})"
        )
        section.images.append(
            ReportImage(
                file=png,
                caption=f"{MODEL_ID}: {what}, {rule}, clusters of at least "
                f"{options.cluster_extent} voxels, over the mean realigned EPI (axial slices, "
                f"neurological view: patient left on the left); {len(contrast.clusters)} "
                "cluster(s)",
            )
        )
        found = [
            _cluster_finding(c, contrast.labels, first, png, options.fwhm_mm)
            for c in contrast.clusters
        ]
        section.findings += found
        if not contrast.clusters:
            section.warnings.append(f"{MODEL_ID}: {contrast.name}: no cluster above {rule}")
        if dicom_outputs and entry.dicom is not None and contrast.clusters:
            try:
                seg = segmentation_of_clusters(contrast, first)
            except InvalidInputError as err:
                section.warnings.append(f"{MODEL_ID}: no DICOM SEG for {contrast.name}: {err}")
                continue
            folder = out / "dicom"
            folder.mkdir(exist_ok=True)
            target = folder / f"seg_fmri_{name}.dcm"
            with atomic_path(target) as tmp:
                seg.save_as(tmp)
            section.outputs[f"DICOM SEG fMRI {contrast.name}"] = str(target.relative_to(out))
            pmap = parametric_map_of(contrast, first)
            target = folder / f"pm_fmri_{name}.dcm"
            with atomic_path(target) as tmp:
                pmap.save_as(tmp)
            section.outputs[f"DICOM Parametric Map fMRI {contrast.name}"] = str(
                target.relative_to(out)
            )
            sr = structured_report_of(contrast, found, seg, first)
            target = folder / f"sr_fmri_{name}.dcm"
            with atomic_path(target) as tmp:
                sr.save_as(tmp)
            section.outputs[f"DICOM SR fMRI {contrast.name}"] = str(target.relative_to(out))
            written = [f"{kind}_fmri_{name}.dcm" for kind in ("seg", "pm", "sr")]
            section.warnings += _validate(out, written)
            section.warnings += [
                w for w in source_header_problems(first) if w not in section.warnings
            ]
    return section
