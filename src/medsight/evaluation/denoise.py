"""Denoising metrics (PSNR, SSIM) and ``medsight evaluate`` for denoising packages.

Conventions (named so results can be compared with other tools):

* **PSNR** ``10 log10(R^2 / MSE)`` in dB, with ``R = data_range``;
  :func:`image_psnr` uses the clean reference's ``max - min`` as ``R`` (scikit-image's choice
  for float images, given explicitly here).
* **SSIM**: scikit-image's ``structural_similarity`` (Wang et al. 2004, 7 x 7 uniform
  window) with the same ``data_range``; volumes are scored slice by slice (the denoisers are
  2D) and averaged.

:func:`evaluate_denoiser` adds the package's own noise model at fixed levels (seeded) to
held-out clean images and reports both the noisy input's and the denoised output's PSNR and
SSIM, each with a patient-level bootstrap 95% CI, and their paired gain.

Examples
--------
>>> import numpy as np
>>> ref = np.zeros((16, 16)); ref[4:12, 4:12] = 1.0
>>> round(psnr(ref + 0.1, ref, data_range=1.0), 6)
20.0
>>> ssim(ref, ref, data_range=1.0)
1.0
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from medsight.core.errors import InvalidInputError
from medsight.evaluation.bootstrap import bootstrap_ci
from medsight.evaluation.estimability import subgroup_mean
from medsight.io.atomic import atomic_path, write_text_atomic
from medsight.io.html import write_html
from medsight.transforms.noise import NoiseModel, apply_noise, sample_noise

__all__ = [
    "LesionContrast",
    "evaluate_denoiser",
    "image_psnr",
    "image_ssim",
    "lesion_contrast",
    "psnr",
    "ssim",
]


def _pair(test: ArrayLike, ref: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, r = np.asarray(test, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if t.shape != r.shape:
        raise InvalidInputError("images", f"shapes differ: {t.shape} vs {r.shape}")
    return t, r


def psnr(test: ArrayLike, ref: ArrayLike, *, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB of ``test`` against ``ref`` (inf when identical)."""
    t, r = _pair(test, ref)
    if not data_range > 0:
        raise InvalidInputError("data_range", f"must be positive, got {data_range}")
    mse = float(np.mean((t - r) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def ssim(test: ArrayLike, ref: ArrayLike, *, data_range: float) -> float:
    """Structural similarity of 2D images (scikit-image, 7 x 7 window, ``data_range`` given)."""
    from skimage.metrics import structural_similarity

    t, r = _pair(test, ref)
    win = min(7, *t.shape)
    win -= 1 - win % 2  # odd
    if win < 3:
        raise InvalidInputError("images", f"shape {t.shape} is too small for SSIM (3 x 3 min)")
    return float(structural_similarity(t, r, data_range=data_range, win_size=win))


def _range(ref: np.ndarray) -> float:
    span = float(np.max(ref) - np.min(ref))
    return span if span > 0 else 1.0


def image_psnr(test: ArrayLike, ref: ArrayLike) -> float:
    """PSNR with ``data_range`` = the reference's max - min (1 for a constant reference)."""
    t, r = _pair(test, ref)
    return psnr(t, r, data_range=_range(r))


def image_ssim(test: ArrayLike, ref: ArrayLike) -> float:
    """SSIM with ``data_range`` = the reference's max - min; 3D: mean over slices (axis 2)."""
    t, r = _pair(test, ref)
    rng = _range(r)
    if t.ndim == 2:
        return ssim(t, r, data_range=rng)
    return float(np.mean([ssim(t[:, :, k], r[:, :, k], data_range=rng) for k in range(t.shape[2])]))


@dataclasses.dataclass(frozen=True)
class LesionContrast:
    """Intensity statistics inside a lesion mask and in a ring of background around it.

    ``contrast`` is ``inside_mean - ring_mean``; ``cnr`` the contrast-to-noise ratio
    ``|inside_mean - ring_mean| / sqrt(inside_std^2 + ring_std^2)`` (the ultrasound convention,
    e.g. Patterson and Foster 1983; ``inf`` when both parts are constant and differ).
    """

    inside_mean: float
    ring_mean: float
    inside_std: float
    ring_std: float
    n_inside: int
    n_ring: int

    @property
    def contrast(self) -> float:
        """Mean inside the lesion minus mean in the ring."""
        return self.inside_mean - self.ring_mean

    @property
    def cnr(self) -> float:
        """Contrast-to-noise ratio (see the class docstring)."""
        noise = float(np.hypot(self.inside_std, self.ring_std))
        if noise == 0:
            return 0.0 if self.contrast == 0 else float("inf")
        return abs(self.contrast) / noise


def lesion_contrast(image: ArrayLike, mask: ArrayLike, *, ring: int = 10) -> LesionContrast:
    """Contrast of a lesion against the background ring ``ring`` pixels wide around its mask.

    The ring is the mask dilated ``ring`` times (3 x 3 cross) minus the mask, cut to the image.
    Compare a denoised image's value with the clean image's: a denoiser that paints a lesion
    away lowers ``contrast``; one that keeps it and removes noise raises ``cnr``.

    Raises
    ------
    InvalidInputError
        Shapes differ, the mask is empty or covers the image, or ``ring < 1``.

    Examples
    --------
    >>> img = np.full((32, 32), 50.0); img[12:20, 12:20] = 100.0
    >>> m = img > 75
    >>> r = lesion_contrast(img, m, ring=4)
    >>> r.contrast, r.cnr, r.n_inside
    (50.0, inf, 64)
    """
    from scipy.ndimage import binary_dilation

    arr = np.asarray(image, dtype=np.float64)
    inside = np.asarray(mask).astype(bool)
    if arr.shape != inside.shape:
        raise InvalidInputError("lesion mask", f"shape {inside.shape} differs from {arr.shape}")
    if ring < 1:
        raise InvalidInputError("ring", f"must be at least 1 pixel, got {ring}")
    if not inside.any():
        raise InvalidInputError("lesion mask", "is empty: there is no lesion to measure")
    around = binary_dilation(inside, iterations=ring) & ~inside
    if not around.any():
        raise InvalidInputError("lesion mask", "covers the image: no background ring is left")
    a, b = arr[inside], arr[around]
    return LesionContrast(
        inside_mean=float(a.mean()),
        ring_mean=float(b.mean()),
        inside_std=float(a.std()),
        ring_std=float(b.std()),
        n_inside=int(a.size),
        n_ring=int(b.size),
    )


def _select(dataset: Any, split: str | None) -> tuple[list[Any], str]:
    parts = {c.split.value for c in dataset if c.split is not None}
    chosen = split or ("test" if "test" in parts else "all")
    if chosen == "all":
        return list(dataset), chosen
    cases = [c for c in dataset if c.split is not None and c.split.value == chosen]
    if not cases:
        raise InvalidInputError("split", f"no {chosen!r} cases (parts present: {sorted(parts)})")
    return cases, chosen


def _grey(image: Any) -> np.ndarray:
    arr = np.asarray(image.array, dtype=np.float32)
    if image.has_channels:
        if image.n_channels == 3:
            return arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return arr[..., 0]
    return arr


def evaluate_denoiser(
    package: Any,
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    by: Sequence[str] = (),
    n_resamples: int = 1000,
    seed: int = 0,
    levels: Sequence[float] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """``medsight evaluate`` for denoising packages: PSNR / SSIM with CIs, ``report.json/html``.

    Parameters
    ----------
    levels : sequence of float, optional
        Noise levels (percent of each image's p0.5-p99.5 range) to test at; default the low
        end, middle and high end of the package's training range.  Every case is tested at
        every level, with noise seeded by ``seed``, the level and the case.
    by : sequence of str
        Attributes for subgroups (mean denoised PSNR per value, with a patient-level CI where
        :mod:`medsight.evaluation.estimability` allows one).
    """
    from medsight.inference.denoise import Denoiser

    cases, chosen = _select(dataset, split)
    den = Denoiser(package, device=device)
    noise = package.spec.extra.get("noise", {})
    model = NoiseModel(noise.get("model", "gaussian"))
    lo, hi = noise.get("levels", [5.0, 5.0])
    test_levels = [float(v) for v in (levels or sorted({lo, (lo + hi) / 2, hi}))]
    rows: list[dict[str, Any]] = []
    figure: tuple[np.ndarray, ...] | None = None
    for ci, case in enumerate(cases):
        image = case.image()
        clean = _grey(image)
        for li, level in enumerate(test_levels):
            rng = np.random.default_rng([seed, li, ci])
            noisy = apply_noise(clean, sample_noise(model, (level, level), clean, rng))
            work = noisy if clean.ndim == 2 else np.moveaxis(noisy, 2, 0)
            den_arr = den.denoise_array(work if clean.ndim == 3 else work[None])
            denoised = den_arr[0] if clean.ndim == 2 else np.moveaxis(den_arr, 0, 2)
            rows.append(
                {
                    "case_id": case.case_id,
                    "patient_id": case.patient_id or case.case_id,
                    "level": level,
                    "psnr_noisy": image_psnr(noisy, clean),
                    "psnr_denoised": image_psnr(denoised, clean),
                    "ssim_noisy": image_ssim(noisy, clean),
                    "ssim_denoised": image_ssim(denoised, clean),
                    **{a: str(case.attributes.get(a)) for a in by},
                }
            )
            if figure is None and li == len(test_levels) - 1:
                mid = (lambda a: a) if clean.ndim == 2 else (lambda a: a[:, :, a.shape[2] // 2])
                figure = (mid(clean), mid(noisy), mid(denoised))
    if not rows:
        raise InvalidInputError("data", f"no cases in the {chosen!r} split")
    metrics = []
    for level in test_levels:
        mine = [r for r in rows if r["level"] == level]
        groups = [r["patient_id"] for r in mine]
        for field in ("psnr_noisy", "psnr_denoised", "ssim_noisy", "ssim_denoised"):
            vals = np.array([r[field] for r in mine], dtype=float)
            res = bootstrap_ci(np.mean, vals, groups=groups, n_resamples=n_resamples, seed=seed)
            metrics.append({"name": f"{field}@{level:g}", "level": level, **res.as_dict()})
        gain = np.array([r["psnr_denoised"] - r["psnr_noisy"] for r in mine], dtype=float)
        res = bootstrap_ci(np.mean, gain, groups=groups, n_resamples=n_resamples, seed=seed)
        metrics.append({"name": f"psnr_gain@{level:g}", "level": level, **res.as_dict()})
    subgroups: dict[str, dict[str, Any]] = {}
    for attr in by:  # mean denoised PSNR over (case, level) rows, its CI or why there is none
        for v in sorted({r[attr] for r in rows}):
            mine = [r for r in rows if r[attr] == v]
            ci = subgroup_mean(
                [r["psnr_denoised"] for r in mine],
                [r["patient_id"] for r in mine],
                n_resamples=n_resamples,
                seed=seed,
            )
            subgroups[f"{attr}={v}"] = {"psnr_denoised": ci["value"], **ci}
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    report = {
        "model": package.id if hasattr(package, "id") else str(package),
        "task": "denoising",
        "split": chosen,
        "n_cases": len(cases),
        "noise": {"model": model.value, "levels": test_levels, "seed": seed},
        "conventions": "levels: percent of the clean image's p0.5-p99.5 range; PSNR and SSIM "
        "data_range: the clean image's max - min; SSIM 7x7 window, volumes slice-wise",
        "metrics": metrics,
        "subgroups": subgroups,
        "cases": rows,
        "figure": _figure(figure, target / "before_after.png") if figure else None,
    }
    write_text_atomic(target / "report.json", json.dumps(report, indent=1, default=float))
    write_html(target / "report.html", "denoise_eval.html.j2", r=report)
    return report


def _figure(arrays: tuple[np.ndarray, ...], path: Path) -> str | None:
    """Clean / noisy / denoised / difference panels as a PNG; its file name (None if no
    matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    clean, noisy, denoised = arrays
    lo, hi = np.percentile(clean, [0.5, 99.5])
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
    diff = denoised - noisy
    lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    panels = [
        (clean, "clean", "gray", lo, hi),
        (noisy, "noisy input", "gray", lo, hi),
        (denoised, "denoised", "gray", lo, hi),
        (diff, "removed (denoised - noisy)", "coolwarm", -lim, lim),
    ]
    for ax, (a, title, cmap, vmin, vmax) in zip(axes, panels, strict=True):
        ax.imshow(a.T, cmap=cmap, vmin=vmin, vmax=vmax)  # index (i, j) -> display rows j
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path.name
