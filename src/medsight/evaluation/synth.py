"""``medsight evaluate`` for synthesis packages: realism (Frechet distance) and memorisation.

Frechet distance (Heusel et al. 2017, "FID" when the encoder is ImageNet's Inception-v3): the
distance between Gaussians fitted to encoder features of real held-out images and of synthetic
images, ``|mu_r - mu_s|^2 + Tr(S_r + S_s - 2 (S_r S_s)^(1/2))``.  No ImageNet weights are
available to medsight, so the encoder is one the project trains itself: a classification
package passed as ``encoder`` (its penultimate layer, :func:`medsight.inference.features.
package_features`), else the synthesis package's own U-Net (middle block, clean image, no class).
Numbers are therefore comparable only between runs that use the same encoder; the report
also gives the distance between real training and real held-out images with that encoder, the
floor a perfect generator would reach at these sample sizes.

Memorisation: for each synthetic image, the nearest training image by Pearson correlation of
the pixels (equivalently the L2 distance of the zero-mean, unit-norm images:
``sqrt(2 - 2 r)``); the report gives the distribution and the fraction above a near-copy
threshold (default ``r >= 0.95``), next to the same numbers for real held-out images (how close
an unseen real image comes to the training set by chance).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> a = rng.normal(size=(200, 4))
>>> round(frechet_distance(a, a), 9), frechet_distance(a, a + 1.0) > 3.9
(0.0, True)
>>> idx, r = nearest_training(a[:3] * 2.0, a)
>>> idx.tolist(), np.round(r, 6).tolist()
([0, 1, 2], [1.0, 1.0, 1.0])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core import Split
from medsight.core.errors import InvalidInputError
from medsight.core.image import Image

__all__ = [
    "NEAR_COPY",
    "evaluate_synthesizer",
    "frechet_distance",
    "nearest_training",
    "pixel_vectors",
]

#: Correlation with the nearest training image at or above which a synthetic one is a near copy.
NEAR_COPY = 0.95


def _sqrt_psd(m: NDArray[np.float64]) -> NDArray[np.float64]:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: NDArray[np.floating[Any]], b: NDArray[np.floating[Any]]) -> float:
    """Frechet distance between Gaussians fitted to feature rows ``a`` ``(n, d)`` and ``b``.

    The trace term uses ``Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2))``, equal to
    ``Tr((S_a S_b)^(1/2))`` and computed from symmetric eigen-decompositions, so it is real and
    exactly 0 for identical sets.

    Raises
    ------
    InvalidInputError
        Fewer than two rows, or different feature sizes.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise InvalidInputError(
            "features", f"need two (n >= 2, d) arrays of one width, got {a.shape} and {b.shape}"
        )
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = _sqrt_psd(sa)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ sb @ root), 0.0, None)).sum()
    value = float(mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * cross)
    return max(value, 0.0) if value > -1e-9 * (1 + abs(np.trace(sa))) else value


def pixel_vectors(
    images: Sequence[Image], size: Sequence[int] | None = None
) -> NDArray[np.float64]:
    """Each image's pixels as a zero-mean, unit-norm row (resized to ``size`` when given)."""
    from medsight.transforms.preprocess import resize

    rows = []
    for im in images:
        arr = np.asarray(im.array, np.float32)
        x = np.moveaxis(arr, -1, 0) if im.has_channels else arr[None]
        if size is not None:
            x = resize(x, size)
        v = x.ravel().astype(np.float64)
        v = v - v.mean()
        rows.append(v / (np.linalg.norm(v) or 1.0))
    return np.stack(rows)


def nearest_training(
    query: NDArray[np.float64], reference: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """For each row of ``query``, the most correlated row of ``reference`` and the correlation.

    Rows are centred and scaled to unit norm first, so the correlation is Pearson's ``r``.
    """

    def unit(m: NDArray[np.float64]) -> NDArray[np.float64]:
        m = np.asarray(m, np.float64)
        m = m - m.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        return m / np.where(norms > 0, norms, 1.0)

    r = unit(query) @ unit(reference).T
    idx = r.argmax(axis=1)
    return idx.astype(np.int64), np.clip(r[np.arange(len(idx)), idx], -1.0, 1.0)


def _summary(r: NDArray[np.float64], threshold: float) -> dict[str, Any]:
    q = np.quantile(r, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    return {
        "n": len(r),
        "quantiles": dict(
            zip(
                ("min", "p05", "p25", "median", "p75", "p95", "max"),
                (float(v) for v in q),
                strict=True,
            )
        ),
        "near_copy_fraction": float(np.mean(r >= threshold)),
        "l2_median": float(np.median(np.sqrt(np.clip(2 - 2 * r, 0.0, None)))),
    }


def _bootstrap_fd(
    real: NDArray[np.float64], synth: NDArray[np.float64], n_resamples: int, seed: int
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    vals = [
        frechet_distance(
            real[rng.integers(0, len(real), len(real))],
            synth[rng.integers(0, len(synth), len(synth))],
        )
        for _ in range(n_resamples)
    ]
    lo, hi = np.quantile(vals, [0.025, 0.975])
    return float(lo), float(hi)


def _held_out(dataset: Any, split: str | None) -> tuple[list[Any], str]:
    cases = list(dataset)
    if split in (None, ""):
        for name in (Split.TEST, Split.VAL):
            chosen = [c for c in cases if c.split is name]
            if chosen:
                return chosen, name.value
        raise InvalidInputError(
            "data", "has no test or validation split to compare synthetic images with"
        )
    chosen = [c for c in cases if c.split is not None and c.split.value == split]
    if not chosen:
        raise InvalidInputError("--split", f"no cases in split {split!r}")
    return chosen, str(split)


def _encoder(package: Any, encoder: Any, device: str) -> tuple[Any, str]:
    from medsight.inference.synth import Synthesizer

    if encoder is None:
        synth = Synthesizer(package, device=device)
        return synth.features, f"{package.id} (its own U-Net middle block; no ImageNet weights)"
    from medsight.inference.features import package_features
    from medsight.models.package import ModelPackage

    enc = encoder if isinstance(encoder, ModelPackage) else ModelPackage.load(encoder)
    return (lambda images: package_features(enc, images)), f"{enc.id} (penultimate layer)"


def evaluate_synthesizer(
    package: Any,
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    by: Sequence[str] = (),
    n_resamples: int = 1000,
    seed: int = 0,
    encoder: Any = None,
    n_per_class: int = 200,
    steps: int | None = None,
    near_copy: float = NEAR_COPY,
    device: str = "cpu",
) -> dict[str, Any]:
    """Sample per class, compare with real held-out images; write ``report.json`` and HTML.

    For each class, as many synthetic images as the held-out split has of it (at most
    ``n_per_class``) are sampled with ``seed``.  ``by`` is accepted for the common evaluator
    signature; the report is per class instead.

    Parameters
    ----------
    encoder : ModelPackage or path, optional
        A classification package whose features the Frechet distance uses (default: the
        synthesis package's own network).

    Returns
    -------
    dict
        The report (also ``out/report.json``): ``metrics`` (Frechet distance with a bootstrap
        CI, the real-vs-real floor, near-copy fractions), ``memorisation``, ``per_class``.
    """
    from medsight.inference.synth import Synthesizer
    from medsight.io.html import write_html

    synth = Synthesizer(package, device=device)
    if synth.method == "gan":
        if steps is not None:
            raise InvalidInputError(
                "steps", f"applies to diffusion models; {synth.package.id} is a GAN"
            )
    else:
        steps = min(50, synth.timesteps) if steps is None else steps
    held, split_name = _held_out(dataset, split)
    train = [c for c in dataset if c.split is Split.TRAIN]
    if not train:
        raise InvalidInputError("data", "has no training split for the memorisation check")
    names = synth.labels
    real_images: list[Image] = []
    synthetic: list[Image] = []
    per_class: dict[str, dict[str, Any]] = {}
    by_name = {v: k for k, v in dict(getattr(dataset, "label_names", {})).items()}
    for index, name in enumerate(names):
        ds_index = by_name.get(name, index)  # the data set's index of the class, by name
        mine = [c for c in held if _class_of(c) == ds_index][:n_per_class]
        if not mine:
            continue
        imgs = [c.image() for c in mine]
        fake = synth.sample(len(mine), index, seed=seed + index, steps=steps)
        real_images += imgs
        synthetic += fake
        per_class[name] = {"n_real": len(imgs), "n_synthetic": len(fake)}
    if len(real_images) < 2:
        raise InvalidInputError(f"split {split_name}", "needs at least two labelled images")
    features, encoder_name = _encoder(package, encoder, device)
    f_real = features(real_images)
    f_synth = features(synthetic)
    train_images = [c.image() for c in train]
    f_train = features(train_images[: max(len(real_images), 2) * 4])
    fd = frechet_distance(f_real, f_synth)
    lo, hi = _bootstrap_fd(f_real, f_synth, min(n_resamples, 1000), seed)
    floor = frechet_distance(f_train, f_real)
    start = 0
    for row in per_class.values():
        k = row["n_real"]
        if k >= 2:
            row["frechet_distance"] = frechet_distance(
                f_real[start : start + k], f_synth[start : start + k]
            )
        start += k
    size = list(package.spec.preprocessing.size or [])
    v_train = pixel_vectors(train_images, size)
    idx, r_synth = nearest_training(pixel_vectors(synthetic, size), v_train)
    _, r_real = nearest_training(pixel_vectors(real_images, size), v_train)
    memo_synth, memo_real = _summary(r_synth, near_copy), _summary(r_real, near_copy)
    closest = np.argsort(-r_synth)[:5]
    report = {
        "model": package.id,
        "task": "synthesis",
        "split": split_name,
        "n_cases": len(real_images),
        "n_synthetic": len(synthetic),
        "n_train": len(train_images),
        "encoder": encoder_name,
        "sampling": {"steps": steps, "seed": seed, "sampler": "DDIM, eta 0"}
        if synth.method == "ddpm"
        else {"seed": seed, "sampler": "GAN generator (one forward pass)"},
        "metrics": [
            {"name": "frechet_distance", "value": fd, "low": lo, "high": hi},
            {"name": "frechet_distance_real_train_vs_heldout", "value": floor},
            {"name": "near_copy_fraction_synthetic", "value": memo_synth["near_copy_fraction"]},
            {"name": "near_copy_fraction_real_heldout", "value": memo_real["near_copy_fraction"]},
        ],
        "memorisation": {
            "threshold": near_copy,
            "measure": "Pearson r of pixels with the nearest training image",
            "synthetic": memo_synth,
            "real_heldout": memo_real,
            "closest": [
                {
                    "synthetic": int(i),
                    "label": synthetic[i].meta["label"],
                    "train_case": train[int(idx[i])].case_id,
                    "r": float(r_synth[i]),
                }
                for i in closest
            ],
        },
        "per_class": per_class,
        "notes": [
            "Frechet distance on features of an encoder trained by this project; no ImageNet "
            "weights are available, so values are not comparable with published FIDs.",
            "The real-vs-real distance is the floor a perfect generator reaches at these sizes.",
        ],
    }
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    write_html(folder / "report.html", "synth_eval.html.j2", r=report)
    return report


def _class_of(case: Any) -> int | None:
    label = case.label
    if isinstance(label, tuple) and len(label) == 1:
        label = label[0]
    return int(label) if isinstance(label, int | np.integer) else None
