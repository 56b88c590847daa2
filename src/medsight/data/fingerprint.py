"""The data set fingerprint, as nnU-Net computes it, saved as JSON for self-configuring training.

Per data set: image sizes and spacings (all, and the median), orientations, data types,
intensity statistics per channel (mean, std, median, min, max, 0.5 and 99.5 percentiles) over
voxels sampled with a seeded generator, inside the foreground where masks exist (nnU-Net's
``foreground_intensity_properties_per_channel``), and the class balance (cases per class; voxels
per mask label).

Examples
--------
>>> import numpy as np
>>> from medsight.core import Case, Image
>>> from medsight.data import Dataset
>>> cases = [Case(f"c{i}", images={"image": Image(np.full((4, 6), i, np.int16))}, label=i % 2)
...          for i in range(3)]
>>> fp = compute_fingerprint(Dataset("toy", cases, label_names={0: "no", 1: "yes"}))
>>> fp.median_shape, fp.class_balance["cases"], fp.intensity_per_channel["0"].max
([4.0, 6.0], {'no': 2, 'yes': 1}, 2.0)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from medsight.core import UnreadableFileError
from medsight.data.dataset import Dataset
from medsight.data.scan import CaseScan, class_counts, scan_dataset
from medsight.io.atomic import write_text_atomic

__all__ = ["ChannelFingerprint", "Fingerprint", "compute_fingerprint"]


class ChannelFingerprint(BaseModel):
    """Intensity statistics of one channel over the sampled (foreground) voxels."""

    name: str
    foreground: bool
    n_samples: int
    mean: float
    std: float
    median: float
    min: float
    max: float
    percentile_00_5: float
    percentile_99_5: float


class Fingerprint(BaseModel):
    """What self-configuring training needs to know about a data set."""

    version: int = 1
    dataset: str
    task: str
    n_cases: int
    n_read: int
    seed: int
    samples_per_case: int
    shapes: list[list[int]]
    spacings: list[list[float]]
    median_shape: list[float]
    median_spacing: list[float]
    orientations: dict[str, int]
    dtypes: dict[str, int]
    modalities: dict[str, int]
    intensity_per_channel: dict[str, ChannelFingerprint]
    class_balance: dict[str, dict[str, int]]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON atomically."""
        p = Path(path)
        write_text_atomic(p, self.model_dump_json(indent=1))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Fingerprint:
        """Read a fingerprint JSON; a bad file raises UnreadableFileError naming it."""
        p = Path(path)
        try:
            return cls.model_validate_json(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UnreadableFileError(p, f"not a medsight fingerprint ({exc})") from exc


def _median(rows: list[tuple]) -> list[float]:
    if not rows:
        return []
    n = min(len(r) for r in rows)
    return [float(v) for v in np.median(np.array([r[:n] for r in rows], dtype=float), axis=0)]


def compute_fingerprint(
    dataset: Dataset,
    *,
    scans: list[CaseScan] | None = None,
    seed: int = 0,
    samples_per_case: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> Fingerprint:
    """Fingerprint a data set (reusing ``scans`` from :func:`scan_dataset` when given).

    Examples
    --------
    >>> import numpy as np
    >>> from medsight.core import Case, Image
    >>> from medsight.data import Dataset
    >>> img = Image(np.arange(27, dtype=np.float32).reshape(3, 3, 3), spacing=(1, 1, 3))
    >>> mask = Image((np.arange(27).reshape(3, 3, 3) >= 20).astype(np.uint8), spacing=(1, 1, 3))
    >>> fp = compute_fingerprint(Dataset("t", [Case("a", images={"image": img}, label=mask)]))
    >>> ch = fp.intensity_per_channel["0"]
    >>> ch.foreground, ch.min >= 20, fp.median_spacing, fp.class_balance["voxels"]
    (True, True, [1.0, 1.0, 3.0], {'0': 20, '1': 7})
    """
    if scans is None:
        scans = scan_dataset(dataset, seed=seed, samples=samples_per_case, progress=progress)
    ok = [s for s in scans if s.ok]
    channels: dict[str, ChannelFingerprint] = {}
    n_ch = max((len(s.channels) for s in ok), default=0)
    fg = any(s.mask is not None and s.mask.counts.keys() - {0} for s in ok)
    for c in range(n_ch):
        values = [s.channels[c].samples for s in ok if len(s.channels) > c]
        pool = np.concatenate(values) if values else np.zeros(0, np.float32)
        pool = pool[np.isfinite(pool)]
        if pool.size == 0:
            continue
        p05, p50, p995 = np.percentile(pool, [0.5, 50, 99.5])
        channels[str(c)] = ChannelFingerprint(
            name=str(dataset.channel_names.get(c, f"channel_{c}")),
            foreground=fg,
            n_samples=int(pool.size),
            mean=float(pool.mean(dtype=np.float64)),
            std=float(pool.std(dtype=np.float64)),
            median=float(p50),
            min=float(pool.min()),
            max=float(pool.max()),
            percentile_00_5=float(p05),
            percentile_99_5=float(p995),
        )
    voxels: Counter[str] = Counter()
    for s in ok:
        if s.mask is not None and not s.mask.error:
            for value, n in s.mask.counts.items():
                voxels[str(dataset.label_names.get(value, value))] += n
    balance = {"cases": class_counts(dataset, scans)}
    if voxels:
        balance["voxels"] = dict(voxels)
    return Fingerprint(
        dataset=dataset.name,
        task=dataset.task.value,
        n_cases=len(dataset),
        n_read=len(ok),
        seed=seed,
        samples_per_case=samples_per_case,
        shapes=[list(s.shape) for s in ok],
        spacings=[list(s.spacing) for s in ok],
        median_shape=_median([s.shape for s in ok]),
        median_spacing=_median([s.spacing for s in ok]),
        orientations=dict(Counter(s.orientation for s in ok)),
        dtypes=dict(Counter(s.dtype for s in ok)),
        modalities=dict(Counter(str(s.modality) for s in ok)),
        intensity_per_channel=channels,
        class_balance=balance,
    )
