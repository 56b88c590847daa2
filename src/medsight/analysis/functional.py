"""First-level fMRI analysis: realignment, a GLM with nilearn, z-maps and a cluster table.

The steps, each a library's own:

1. **Realignment** (nilearn has none): every volume is registered rigidly to the first one
   with SimpleITK (Euler 3D, mean squares, two resolution levels) and resampled onto its grid;
   the six parameters per volume (``trans_x/y/z`` in LPS mm, ``rot_x/y/z`` in radians, the
   transform from the first volume's space to the volume's, fMRIPrep's names) are the motion
   confounds.
2. **GLM**: ``nilearn.glm.first_level.make_first_level_design_matrix`` on the series' own frame
   times (``meta["frame_times_s"]``, so an irregular series is modelled as acquired) with the
   BIDS events convolved with the ``glover`` HRF, a ``cosine`` drift (high-pass 0.01 Hz) and
   the motion confounds; ``FirstLevelModel`` (AR(1) noise, spatial smoothing ``fwhm_mm``, the
   brain mask of ``nilearn.masking.compute_epi_mask`` on the mean realigned EPI) fits it.
3. **Contrast**: each ``trial_type`` against the implicit baseline by default, or the
   expressions given (nilearn's contrast syntax: ``"face - house"``) -> a z-map.
4. **Threshold** (:class:`HeightControl`): ``none`` keeps voxels with z above ``threshold``
   (default 3.1, one-sided p < 0.001 uncorrected); ``fpr`` / ``fdr`` / ``bonferroni`` use
   ``nilearn.glm.threshold_stats_img`` at ``alpha``; either way clusters smaller than
   ``cluster_extent`` voxels are dropped.  Positive effects only unless ``two_sided``.
5. **Clusters**: ``nilearn.reporting.get_clusters_table``; its coordinates are in the NIfTI's
   RAS millimetres and are converted exactly to medsight's LPS (``x, y`` negated), with the
   peak's voxel index on the Image grid, its hemisphere (patient left: LPS x > 0 of the brain
   mask's centre) and its front-to-back position within the brain mask
   (``posterior_fraction``: 0 at the mask's most anterior voxel, 1 at its most posterior).

Outputs are written by :mod:`medsight.analysis.functional_report`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.core.geometry import LPS_TO_RAS
from medsight.core.image import Image

if TYPE_CHECKING:
    import nibabel
    import pandas as pd

__all__ = [
    "MOTION_COLUMNS",
    "Cluster",
    "ContrastResult",
    "GlmOptions",
    "GlmResult",
    "HeightControl",
    "glm_options",
    "read_events",
    "realign",
    "run_glm",
    "summary_rows",
    "time_point",
]

#: Names of the six motion parameters (fMRIPrep's confound names).
MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


class HeightControl(StrEnum):
    """How voxels are thresholded (nilearn's ``height_control``)."""

    NONE = "none"  # z > threshold, uncorrected
    FPR = "fpr"  # false positive rate alpha (uncorrected p)
    FDR = "fdr"  # false discovery rate alpha
    BONFERRONI = "bonferroni"  # family-wise error alpha, Bonferroni


@dataclasses.dataclass(frozen=True)
class GlmOptions:
    """Settings of a first-level analysis (defaults: see the module docstring)."""

    contrasts: tuple[str, ...] = ()  # empty: each trial_type vs baseline
    height_control: HeightControl = HeightControl.NONE
    threshold: float = 3.1  # z, for height_control none
    alpha: float = 0.05  # for fpr / fdr / bonferroni
    cluster_extent: int = 10  # voxels
    two_sided: bool = False
    fwhm_mm: float = 6.0
    hrf_model: str = "glover"
    drift_model: str = "cosine"  # or "polynomial" (drift_order) or None
    high_pass_hz: float = 0.01
    drift_order: int = 1
    realign: bool = True
    motion_confounds: bool = True
    repetition_time_s: float | None = None  # overrides the image's (a NIfTI without units)

    def __post_init__(self) -> None:
        object.__setattr__(self, "height_control", HeightControl(self.height_control))
        object.__setattr__(self, "contrasts", tuple(self.contrasts))
        if self.cluster_extent < 0 or self.fwhm_mm < 0:
            raise InvalidInputError("GLM options", "cluster_extent and fwhm_mm must be >= 0")
        if not 0 < self.alpha < 1:
            raise InvalidInputError("GLM options", f"alpha {self.alpha} is not in (0, 1)")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """One suprathreshold cluster of a contrast's z-map."""

    contrast: str
    number: int  # 1-based, by decreasing peak z (the label in ``ContrastResult.labels``)
    peak_z: float
    n_voxels: int
    size_mm3: float
    peak_lps: tuple[float, float, float]  # mm
    peak_index: tuple[int, int, int]  # voxel (i, j, k) on the series' grid
    hemisphere: str  # "left" or "right" (patient's), from the mask's centre
    posterior_fraction: float  # 0 = most anterior brain voxel, 1 = most posterior

    def describe(self) -> str:
        """One sentence for a report."""
        x, y, z = self.peak_lps
        third = ("anterior", "middle", "posterior")[
            min(2, max(0, int(self.posterior_fraction * 3)))
        ]
        return (
            f"{self.contrast} cluster {self.number}: peak z {self.peak_z:.2f} at LPS "
            f"({x:.1f}, {y:.1f}, {z:.1f}) mm, {self.n_voxels} voxels ({self.size_mm3:.0f} mm3), "
            f"{self.hemisphere} hemisphere, {third} third of the brain"
        )


@dataclasses.dataclass(frozen=True)
class ContrastResult:
    """A contrast's z-map, the threshold used and its clusters (label map: cluster numbers)."""

    name: str
    expression: str
    z_map: Image
    threshold: float  # z threshold actually applied
    clusters: tuple[Cluster, ...]
    labels: Image  # uint16 map, 0 outside clusters, else the Cluster.number


@dataclasses.dataclass(frozen=True)
class GlmResult:
    """Everything a first-level analysis produced, on the series' grid."""

    contrasts: tuple[ContrastResult, ...]
    mean_epi: Image
    mask: Image
    design: pd.DataFrame
    motion: NDArray[np.float64]  # (n_volumes, 6), MOTION_COLUMNS
    frame_times_s: tuple[float, ...]
    repetition_time_s: float
    options: GlmOptions
    problems: tuple[str, ...] = ()


# --- inputs -----------------------------------------------------------------------------
def read_events(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a BIDS ``events.tsv`` (``onset``, ``duration`` in seconds, ``trial_type``).

    Raises
    ------
    InvalidInputError
        Unreadable file, a missing column, non-numeric or negative timing, no event.
    """
    import pandas as pd

    p = Path(path)
    try:
        table = pd.read_csv(p, sep="\t", na_values=["n/a"])
    except (OSError, ValueError) as exc:
        raise InvalidInputError(p, f"not a readable events.tsv: {exc}") from None
    missing = [c for c in ("onset", "duration", "trial_type") if c not in table.columns]
    if missing:
        raise InvalidInputError(
            p,
            f"has no {', '.join(missing)} column",
            hint="a BIDS events file has onset, duration (seconds) and trial_type columns",
        )
    out = table[["onset", "duration", "trial_type"]].copy()
    for col in ("onset", "duration"):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    bad = out["onset"].isna() | out["duration"].isna() | (out["duration"] < 0)
    if bad.any() or out["trial_type"].isna().any():
        row = int(np.flatnonzero(bad.to_numpy() | out["trial_type"].isna().to_numpy())[0])
        raise InvalidInputError(p, f"row {row + 1}: onset / duration / trial_type missing or bad")
    if out.empty:
        raise InvalidInputError(p, "holds no event")
    out["trial_type"] = out["trial_type"].astype(str)
    return out


def _time_series(image: Image, options: GlmOptions) -> tuple[float, tuple[float, ...], list[str]]:
    """The repetition time and frame times of a 4D Image, or a clear refusal."""
    if image.spatial_ndim != 3 or not image.has_channels or image.n_channels < 2:
        raise InvalidInputError(
            "image", f"{image!r} is not a 3D time series (3 spatial axes and a time axis)"
        )
    axis = image.meta.get("channel_axis")
    if axis != "time":
        raise InvalidInputError(
            "image",
            f"its {image.n_channels} channels are {axis or 'of unknown meaning'}, not time points",
            hint="a BOLD series read from DICOM or a 4D NIfTI with a time unit",
        )
    problems = []
    tr = options.repetition_time_s or image.meta.get("repetition_time_s")
    frames = image.meta.get("frame_times_s")
    if options.repetition_time_s is not None and image.meta.get("repetition_time_s") is None:
        problems.append(f"repetition time {tr:g} s given by the user (none in the header)")
    if not tr:
        raise InvalidInputError(
            "image", "the repetition time is unknown", hint="give it (repetition_time_s / --tr)"
        )
    if not frames or options.repetition_time_s is not None:
        frames = tuple(float(t) * float(tr) for t in range(image.n_channels))
    if len(frames) != image.n_channels:
        raise InvalidInputError(
            "image", f"{len(frames)} frame times for {image.n_channels} volumes"
        )
    return float(tr), tuple(float(f) for f in frames), problems


def time_point(image: Image, t: int) -> Image:
    """Volume ``t`` of a 4D Image as a 3D Image, referencing only that time point's instances.

    For a classic DICOM series (one file per slice and time point) the source lists the
    SOP instances of volume ``t`` in slice order and ``meta["files"]`` their files, so a DICOM
    SEG made on the result references exactly them.
    """
    n = image.n_channels
    arr = np.asarray(image.array)[..., t]
    drop = ("channel_axis", "frame_times_s", "frame_times_source", "n_volumes")
    meta = {k: v for k, v in image.meta.items() if k not in drop}
    source = image.source
    if source is not None:
        files = tuple(image.meta.get("files") or ())
        uids = source.sop_instance_uids
        if len(uids) == image.shape[2] * n and len(files) == len(uids):
            source = dataclasses.replace(source, sop_instance_uids=uids[t::n], frame_numbers=())
            meta["files"] = files[t::n]
        else:  # an enhanced multi-frame 4D object: no instances of this volume alone
            source, meta["files"] = None, ()
            meta["source_note"] = "multi-frame 4D source: volume has no instances of its own"
    return Image(
        arr, image.affine, spatial_ndim=3, modality=image.modality, source=source, meta=meta
    )


# --- realignment --------------------------------------------------------------------------
def realign(
    image: Image, *, seed: int = 0, sampling: float = 0.1, iterations: int = 30
) -> tuple[Image, NDArray[np.float64]]:
    """Rigidly register every volume of a 4D Image to its first volume (SimpleITK).

    Returns the realigned 4D Image (same grid and meta) and the ``(n, 6)`` motion parameters
    (:data:`MOTION_COLUMNS`, rotations about the volume centre; the first row is zero).
    ``seed`` fixes the metric's random sampling (``sampling``: the fraction of voxels),
    ``iterations`` bounds the optimiser at each of the two levels (shrink 2, then full
    resolution): cheap, and sub-voxel for the small motions of a cooperative subject.  The
    same seed gives the same parameters.
    """
    import SimpleITK as sitk

    arr = np.asarray(image.array, dtype=np.float32)
    n = arr.shape[-1]
    first = image.with_array(arr[..., 0], meta={})
    fixed = first.to_sitk()
    motion = np.zeros((n, 6))
    out = np.empty_like(arr)
    out[..., 0] = arr[..., 0]
    for t in range(1, n):
        moving = image.with_array(arr[..., t], meta={}).to_sitk()
        transform = sitk.Euler3DTransform(
            sitk.CenteredTransformInitializer(
                fixed,
                moving,
                sitk.Euler3DTransform(),
                sitk.CenteredTransformInitializerFilter.GEOMETRY,
            )
        )
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMeanSquares()
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(sampling, seed + 1)  # SimpleITK: 0 = clock seed
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=1.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.5
        )
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel([2, 1])
        reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
        reg.SetInitialTransform(transform, inPlace=True)
        reg.Execute(fixed, moving)
        rx, ry, rz, tx, ty, tz = transform.GetParameters()
        motion[t] = (tx, ty, tz, rx, ry, rz)
        resampled = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0)
        out[..., t] = sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)
    meta = dict(image.meta)
    meta["realigned"] = "SimpleITK rigid (Euler 3D) to volume 1"
    return image.with_array(out, meta=meta), motion


# --- GLM ------------------------------------------------------------------------------------
def _nifti(arr: NDArray[Any], image: Image) -> nibabel.Nifti1Image:
    import nibabel as nib

    return nib.Nifti1Image(np.asarray(arr), LPS_TO_RAS @ np.asarray(image.affine))


def _contrast_names(design: pd.DataFrame, events: pd.DataFrame, options: GlmOptions) -> list[str]:
    if options.contrasts:
        return list(options.contrasts)
    names = list(dict.fromkeys(events["trial_type"]))
    return [n for n in names if n in design.columns]


def run_glm(
    image: Image,
    events: pd.DataFrame | str | os.PathLike[str],
    options: GlmOptions | None = None,
    *,
    motion: NDArray[np.float64] | None = None,
) -> GlmResult:
    """Fit a first-level GLM to a 4D BOLD Image and threshold each contrast (module docs).

    ``motion`` (``(n, 6)``, from :func:`realign`) says ``image`` is already realigned: it is
    not realigned again and these parameters are the motion confounds (several designs on one
    series realign it once).

    Raises
    ------
    InvalidInputError
        Not a time series, unknown repetition time, events outside the run, a contrast that
        names no condition of the design.
    """
    import warnings

    import pandas as pd
    from nilearn.glm.first_level import FirstLevelModel, make_first_level_design_matrix
    from nilearn.masking import compute_epi_mask

    options = options or GlmOptions()
    table = events if isinstance(events, pd.DataFrame) else read_events(events)
    tr, frames, problems = _time_series(image, options)
    duration = frames[-1] + tr
    inside = table["onset"] < duration
    if not inside.any():
        raise InvalidInputError(
            "events", f"no event starts within the {duration:g} s of the series"
        )
    if not inside.all():
        problems.append(f"{int((~inside).sum())} event(s) start after the series ends")
    realigned = motion is not None or options.realign
    if motion is None:
        image, motion = realign(image) if options.realign else (image, None)
    if motion is not None and np.shape(motion) != (image.n_channels, 6):
        raise InvalidInputError("motion", f"shape {np.shape(motion)}, not ({image.n_channels}, 6)")
    arr = np.asarray(image.array, dtype=np.float32)
    mean = arr.mean(axis=-1)
    mean_img = _nifti(mean, image)
    mask_img = compute_epi_mask(mean_img)
    regs = motion if options.motion_confounds and realigned else None
    motion = np.zeros((image.n_channels, 6)) if motion is None else np.asarray(motion, float)
    design = make_first_level_design_matrix(
        np.asarray(frames),
        table,
        hrf_model=options.hrf_model,
        drift_model=options.drift_model,
        high_pass=options.high_pass_hz,
        drift_order=options.drift_order,
        add_regs=regs,
        add_reg_names=list(MOTION_COLUMNS) if regs is not None else None,
    )
    if options.drift_model and not any(str(c).startswith("drift") for c in design.columns):
        problems.append(
            f"the {options.drift_model} drift basis is empty for a {duration:g} s run at "
            f"{options.high_pass_hz:g} Hz: no slow drift is modelled (a polynomial drift "
            "models a linear trend)"
        )
    dof = len(frames) - np.linalg.matrix_rank(design.to_numpy())
    if dof < 3:
        raise InvalidInputError(
            "design",
            f"{len(frames)} volumes leave {dof} degrees of freedom for {design.shape[1]} "
            "regressors",
            hint="turn off the motion confounds or use a longer run",
        )
    if dof < 10:
        problems.append(
            f"only {dof} residual degrees of freedom ({len(frames)} volumes, {design.shape[1]} "
            "regressors): z-values are unstable"
        )
    model = FirstLevelModel(
        t_r=tr,
        mask_img=mask_img,
        smoothing_fwhm=options.fwhm_mm or None,
        noise_model="ar1",
        minimize_memory=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn's notes on t_r / memory; problems say ours
        model.fit(_nifti(arr, image), design_matrices=[design])
    results = []
    mask_arr = np.asarray(mask_img.dataobj).astype(bool)
    for name in _contrast_names(design, table, options):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                z_img = model.compute_contrast(name, output_type="z_score")
        except (ValueError, KeyError) as exc:
            raise InvalidInputError(
                f"contrast {name!r}",
                f"does not fit the design: {exc}",
                hint=f"conditions: {', '.join(c for c in design.columns)}",
            ) from None
        results.append(_threshold(name, z_img, mask_img, mask_arr, image, options))
    if not results:
        raise InvalidInputError("events", "no condition of the events is in the design")
    return GlmResult(
        contrasts=tuple(results),
        mean_epi=time_point(image, 0).with_array(mean, meta={"description": "mean EPI"}),
        mask=time_point(image, 0).with_array(mask_arr.astype(np.uint8), meta={}),
        design=design,
        motion=motion,
        frame_times_s=frames,
        repetition_time_s=tr,
        options=options,
        problems=tuple(problems),
    )


def _threshold(
    name: str,
    z_img: nibabel.Nifti1Image,
    mask_img: nibabel.Nifti1Image,
    mask_arr: NDArray[np.bool_],
    image: Image,
    options: GlmOptions,
) -> ContrastResult:
    from nilearn.glm import threshold_stats_img
    from nilearn.reporting import get_clusters_table

    z = np.asarray(z_img.get_fdata(), dtype=np.float32)
    control = options.height_control
    thresholded, thr = threshold_stats_img(
        z_img,
        mask_img=mask_img,
        alpha=options.alpha,
        threshold=options.threshold if control is HeightControl.NONE else None,
        height_control=None if control is HeightControl.NONE else control.value,
        cluster_threshold=options.cluster_extent,
        two_sided=options.two_sided,
    )
    thr = float(thr)
    base = time_point(image, 0)
    z_image = base.with_array(z, meta={"description": f"z-map {name}"})
    kept = (
        np.asarray(thresholded.get_fdata()) != 0
        if thresholded is not None
        else np.zeros(z.shape, bool)
    )
    if not np.isfinite(thr) or not kept.any():
        empty = np.zeros(z.shape, np.uint16)
        return ContrastResult(name, name, z_image, thr, (), base.with_array(empty, meta={}))
    table, label_maps = get_clusters_table(
        thresholded,
        stat_threshold=thr,
        cluster_threshold=options.cluster_extent,
        two_sided=options.two_sided,
        return_label_maps=True,
    )
    main = table[table["Cluster ID"].astype(str).str.fullmatch(r"\d+")]
    label_arrays = [np.asarray(m.dataobj) for m in label_maps]
    inv = np.linalg.inv(np.asarray(z_img.affine))
    voxel = float(abs(np.linalg.det(np.asarray(image.affine)[:3, :3])))
    where = np.argwhere(mask_arr)
    world = image.index_to_world(where)
    centre_x = float(world[:, 0].mean())
    y_lo, y_hi = float(world[:, 1].min()), float(world[:, 1].max())
    labels = np.zeros(z.shape, np.uint16)
    clusters = []
    for _, row in main.iterrows():
        ras = np.array([row["X"], row["Y"], row["Z"]], dtype=float)
        idx = np.rint(inv[:3, :3] @ ras + inv[:3, 3]).astype(int)
        peak_z = float(row["Peak Stat"])
        member = None
        for arr in label_arrays:
            value = arr[tuple(idx)]
            if value:
                member = arr == value
                break
        if member is None:
            continue
        number = len(clusters) + 1
        labels[member & (labels == 0)] = number
        lps = (float(-ras[0]), float(-ras[1]), float(ras[2]))
        n_vox = int(member.sum())
        clusters.append(
            Cluster(
                contrast=name,
                number=number,
                peak_z=peak_z,
                n_voxels=n_vox,
                size_mm3=n_vox * voxel,
                peak_lps=lps,
                peak_index=(int(idx[0]), int(idx[1]), int(idx[2])),
                hemisphere="left" if lps[0] > centre_x else "right",
                posterior_fraction=(lps[1] - y_lo) / max(y_hi - y_lo, 1e-6),
            )
        )
    return ContrastResult(
        name, name, z_image, thr, tuple(clusters), base.with_array(labels, meta={})
    )


def summary_rows(result: GlmResult) -> list[dict[str, Any]]:
    """The cluster table as plain rows (for CSV / JSON)."""
    rows = []
    for contrast in result.contrasts:
        for c in contrast.clusters:
            rows.append(
                {
                    "contrast": c.contrast,
                    "cluster": c.number,
                    "peak_z": round(c.peak_z, 3),
                    "voxels": c.n_voxels,
                    "size_mm3": round(c.size_mm3, 1),
                    "peak_x_lps_mm": round(c.peak_lps[0], 2),
                    "peak_y_lps_mm": round(c.peak_lps[1], 2),
                    "peak_z_lps_mm": round(c.peak_lps[2], 2),
                    "peak_i": c.peak_index[0],
                    "peak_j": c.peak_index[1],
                    "peak_k": c.peak_index[2],
                    "hemisphere": c.hemisphere,
                    "posterior_fraction": round(c.posterior_fraction, 3),
                    "threshold_z": round(contrast.threshold, 3),
                }
            )
    return rows


def glm_options(
    contrasts: Sequence[str], threshold: str = "z=3.1", cluster_extent: int = 10
) -> GlmOptions:
    """GlmOptions from the command line's ``--contrast``, ``--fmri-threshold``, extent.

    ``threshold`` is ``z=VALUE`` (uncorrected z) or ``fdr=``, ``fpr=``, ``bonferroni=ALPHA``.

    Examples
    --------
    >>> glm_options(["face"], "fdr=0.05").height_control.value
    'fdr'
    """
    kind, _, value = threshold.partition("=")
    kind = kind.strip().lower()
    try:
        number = float(value)
    except ValueError:
        raise InvalidInputError(
            "--fmri-threshold", f"{threshold!r} is not KIND=NUMBER", hint="e.g. z=3.1, fdr=0.05"
        ) from None
    if kind == "z":
        return GlmOptions(tuple(contrasts), threshold=number, cluster_extent=cluster_extent)
    if kind not in ("fdr", "fpr", "bonferroni"):
        raise InvalidInputError(
            "--fmri-threshold", f"unknown kind {kind!r}", hint="z, fdr, fpr or bonferroni"
        )
    return GlmOptions(
        tuple(contrasts),
        height_control=HeightControl(kind),
        alpha=number,
        cluster_extent=cluster_extent,
    )
