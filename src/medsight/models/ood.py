"""Out-of-distribution detection on a network's own features: Mahalanobis distance.

The trainer (or ``scripts/finalize_zoo.py`` for the zoo) runs the network over its training
images and keeps one feature vector per image: the input of the classifier's last linear layer,
or the globally pooled bottleneck of a segmentation network.  :func:`fit_reference` models those
features as Gaussians with one shared, shrunk covariance (per class for classifiers, as in Lee
et al., "A Simple Unified Framework for Detecting Out-of-Distribution Samples", NeurIPS 2018;
one Gaussian for segmentation).  The score of a new input is its smallest Mahalanobis distance
to a class mean.

The threshold is set on **held-out** in-distribution images (the validation split, never the
training images the means came from) at a stated false-rejection rate: with the default 5%,
about one in twenty images like the validation data is withheld.  Inputs above it are outside
the model's intended use and their predictions are withheld (see :mod:`medsight.analysis`).

The reference is a small file in the package (``ood.safetensors``: class means and precision
matrix) whose sha256 and threshold live in ``model.json`` under ``extra["ood"]``.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> train = rng.normal(size=(400, 8)); val = rng.normal(size=(200, 8))
>>> ref = fit_reference(train, val, false_rejection_rate=0.05)
>>> round(ref.val_rejection_rate, 3)
0.05
>>> bool(ref.score(rng.normal(size=(1, 8)))[0] < ref.threshold)
True
>>> bool(ref.score(np.full((1, 8), 6.0))[0] > ref.threshold)
True
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medsight.core.errors import InvalidInputError

__all__ = ["OOD_FILE", "OodReference", "fit_reference", "ledoit_wolf"]

#: File name of the reference inside a ModelPackage folder.
OOD_FILE = "ood.safetensors"
#: Default share of in-distribution (validation) images the threshold may reject.
DEFAULT_FALSE_REJECTION = 0.05


def ledoit_wolf(x: ArrayLike) -> NDArray[np.float64]:
    """Ledoit-Wolf shrunk covariance of centred rows ``x`` ``(n, d)`` (towards a scaled identity).

    Examples
    --------
    >>> c = ledoit_wolf(np.random.default_rng(0).normal(size=(20, 50)))
    >>> c.shape, bool(np.all(np.linalg.eigvalsh(c) > 0))
    ((50, 50), True)
    """
    a = np.asarray(x, dtype=np.float64)
    n, d = a.shape
    s = a.T @ a / n
    mu = float(np.trace(s)) / d
    delta = float(np.sum((s - mu * np.eye(d)) ** 2)) / d
    sq = a**2  # sum_k ||x_k x_k^T - S||_F^2 = sum_k ||x_k||^4 - n ||S||_F^2
    beta_sum = float(np.sum(sq.sum(axis=1) ** 2) - n * np.sum(s**2))
    beta = min(beta_sum / d / n**2, delta)
    shrink = beta / delta if delta > 0 else 1.0
    return (1 - shrink) * s + shrink * mu * np.eye(d)


@dataclasses.dataclass(frozen=True)
class OodReference:
    """Class means, shared precision, threshold and how it was set."""

    means: NDArray[np.float64]  # (k, d)
    precision: NDArray[np.float64]  # (d, d)
    threshold: float
    false_rejection_rate: float  # the target on held-out in-distribution data
    val_rejection_rate: float  # what the threshold rejects of the validation features
    n_train: int
    n_val: int
    layer: str = ""

    def score(self, features: ArrayLike) -> NDArray[np.float64]:
        """Smallest Mahalanobis distance of each row ``(n, d)`` to a class mean."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim == 1:
            f = f[None]
        if f.shape[1] != self.means.shape[1]:
            raise InvalidInputError(
                "features", f"have {f.shape[1]} dimensions, the reference {self.means.shape[1]}"
            )
        diff = f[:, None, :] - self.means[None]  # (n, k, d)
        d2 = np.einsum("nkd,de,nke->nk", diff, self.precision, diff)
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))

    def describe(self) -> str:
        """One sentence for reports and model cards."""
        return (
            f"Mahalanobis distance on the network's features ({self.layer or 'penultimate'}); "
            f"threshold {self.threshold:.3g} set on {self.n_val} held-out validation images at a "
            f"{self.false_rejection_rate:.0%} target false-rejection rate "
            f"({self.val_rejection_rate:.1%} rejected there)"
        )

    def metadata(self, digest: str) -> dict[str, Any]:
        """What ``model.json`` keeps under ``extra["ood"]``."""
        return {
            "method": "mahalanobis",
            "file": OOD_FILE,
            "sha256": digest,
            "layer": self.layer,
            "threshold": self.threshold,
            "false_rejection_rate": self.false_rejection_rate,
            "val_rejection_rate": self.val_rejection_rate,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_classes": int(self.means.shape[0]),
            "feature_dim": int(self.means.shape[1]),
        }

    def to_bytes(self) -> bytes:
        """The arrays as a safetensors file."""
        from safetensors.numpy import save

        return save(
            {
                "means": np.ascontiguousarray(self.means, dtype=np.float32),
                "precision": np.ascontiguousarray(self.precision, dtype=np.float32),
            }
        )

    def packaged(self) -> tuple[dict[str, Any], bytes]:
        """The ``extra["ood"]`` entry and the :data:`OOD_FILE` bytes it names (with their sha256),
        for ``ModelPackage.save(extra_files=...)``."""
        data = self.to_bytes()
        return self.metadata(hashlib.sha256(data).hexdigest()), data

    def save(self, folder: str | Path) -> dict[str, Any]:
        """Write :data:`OOD_FILE` into a package folder; returns the ``extra["ood"]`` entry."""
        meta, data = self.packaged()
        (Path(folder) / OOD_FILE).write_bytes(data)
        return meta

    @classmethod
    def load(cls, folder: str | Path, meta: Mapping[str, Any]) -> OodReference:
        """Read the reference a package's ``extra["ood"]`` names (checking its sha256).

        Raises
        ------
        InvalidInputError
            Missing or altered file.
        """
        from safetensors.numpy import load

        path = Path(folder) / str(meta.get("file", OOD_FILE))
        if not path.is_file():
            raise InvalidInputError(path, "is missing: the package's OOD reference is gone")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise InvalidInputError(path, "does not match the sha256 in model.json (altered)")
        arrays = load(data)
        return cls(
            means=arrays["means"].astype(np.float64),
            precision=arrays["precision"].astype(np.float64),
            threshold=float(meta["threshold"]),
            false_rejection_rate=float(meta["false_rejection_rate"]),
            val_rejection_rate=float(meta.get("val_rejection_rate", float("nan"))),
            n_train=int(meta.get("n_train", 0)),
            n_val=int(meta.get("n_val", 0)),
            layer=str(meta.get("layer", "")),
        )


def fit_reference(
    train: ArrayLike,
    val: ArrayLike,
    *,
    train_labels: ArrayLike | None = None,
    false_rejection_rate: float = DEFAULT_FALSE_REJECTION,
    layer: str = "",
) -> OodReference:
    """Fit the Gaussians on ``train`` features and set the threshold on held-out ``val``.

    ``train_labels`` (class indices) give one mean per class; classes with fewer than two
    images fall back to the pooled mean.

    Raises
    ------
    InvalidInputError
        Too few images to fit (fewer than 10 training or 10 validation feature rows).
    """
    tr = np.asarray(train, dtype=np.float64)
    va = np.asarray(val, dtype=np.float64)
    if tr.ndim != 2 or va.ndim != 2 or len(tr) < 10 or len(va) < 10:
        raise InvalidInputError(
            "OOD reference",
            f"needs at least 10 training and 10 validation feature rows, got {tr.shape} / "
            f"{va.shape}",
        )
    if not 0 < false_rejection_rate < 0.5:
        raise InvalidInputError("false_rejection_rate", f"{false_rejection_rate} not in (0, 0.5)")
    if train_labels is None:
        groups = [np.arange(len(tr))]
    else:
        y = np.asarray(train_labels).reshape(len(tr), -1)[:, 0].astype(np.int64)
        groups = [np.flatnonzero(y == k) for k in np.unique(y)]
        groups = [g for g in groups if len(g) >= 2] or [np.arange(len(tr))]
    means = np.stack([tr[g].mean(axis=0) for g in groups])
    centred = np.concatenate([tr[g] - means[i] for i, g in enumerate(groups)])
    cov = ledoit_wolf(centred)
    precision = np.linalg.inv(cov)
    ref = OodReference(means, precision, 0.0, false_rejection_rate, 0.0, len(tr), len(va), layer)
    scores = ref.score(va)
    threshold = float(np.quantile(scores, 1 - false_rejection_rate))
    rejected = float(np.mean(scores > threshold))
    return dataclasses.replace(ref, threshold=threshold, val_rejection_rate=rejected)
