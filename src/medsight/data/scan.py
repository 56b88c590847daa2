"""One pass over a data set's pixels that the fingerprint and the quality report share.

For every Case :func:`scan_dataset` reads the image (and the mask when there is one) once and
keeps only small numbers: shape, spacing, orientation, dtype, per-channel intensity statistics,
a hash of the pixel bytes, a 64-bit perceptual hash, a 32x32 thumbnail, voxels sampled with a
seeded generator (inside the foreground where a mask exists, as nnU-Net's fingerprint does) and
mask facts (shape, geometry, values, voxel counts).  A Case that cannot be read gets its error
message instead; the scan goes on.

Examples
--------
>>> import numpy as np
>>> from medsight.core import Case, Image
>>> from medsight.data import Dataset
>>> img = Image(np.arange(64, dtype=np.uint8).reshape(8, 8))
>>> mask = Image((np.arange(64).reshape(8, 8) > 40).astype(np.uint8))
>>> (s,) = scan_dataset(Dataset("t", [Case("a", images={"image": img}, label=mask)]))
>>> s.shape, s.dtype, s.mask.values, s.mask.counts[1], float(s.channels[0].fg_min)
((8, 8), 'uint8', (0, 1), 23, 41.0)
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.fft import dctn
from scipy.ndimage import zoom

from medsight.core import Box, Image, MedsightError
from medsight.data._arrays import value_counts
from medsight.data.dataset import Dataset
from medsight.data.splits import stratum_of

__all__ = [
    "CaseScan",
    "ChannelStats",
    "MaskScan",
    "class_counts",
    "phash",
    "scan_dataset",
    "thumbnail",
]

THUMB = 32


@dataclasses.dataclass(eq=False)
class ChannelStats:
    """Intensity statistics of one channel (whole image, and sampled foreground values)."""

    mean: float
    std: float
    min: float
    max: float
    p01: float
    p99: float
    samples: NDArray[np.float32]  # seeded sample, foreground only when a mask exists
    fg_min: float = float("nan")


@dataclasses.dataclass
class MaskScan:
    """What a mask looks like next to its image."""

    shape: tuple[int, ...] | None = None
    same_shape: bool = True
    same_geometry: bool = True
    values: tuple[int, ...] = ()
    counts: dict[int, int] = dataclasses.field(default_factory=dict)
    error: str | None = None


@dataclasses.dataclass(eq=False)  # identity: scans are compared in membership tests
class CaseScan:
    """The facts about one Case that the checks and the fingerprint use."""

    index: int
    case_id: str
    patient_id: str
    split: str | None
    stratum: str
    file: str
    error: str | None = None
    shape: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    orientation: str = ""
    dtype: str = ""
    n_channels: int = 1
    modality: str | None = None
    channels: list[ChannelStats] = dataclasses.field(default_factory=list)
    digest: str = ""
    phash: int = 0
    thumb: NDArray[np.float32] | None = None
    mask: MaskScan | None = None
    boxes: tuple[Box, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the image was read."""
        return self.error is None


def _grey(image: Image) -> NDArray[np.float32]:
    arr = np.asarray(image.array, dtype=np.float32)
    return arr.mean(axis=-1) if image.has_channels else arr


def thumbnail(image: Image, size: int = THUMB) -> NDArray[np.float32]:
    """A ``size``-wide grey thumbnail (2D: whole image; 3D: ``size``^3 volume), range-free.

    Examples
    --------
    >>> thumbnail(Image(np.ones((100, 50)))).shape
    (32, 32)
    """
    grey = _grey(image)
    grey = np.nan_to_num(grey, nan=0.0, posinf=0.0, neginf=0.0)
    if all(s % size == 0 for s in grey.shape):  # exact block means (64 -> 32), much faster
        flip = grey.flags.f_contiguous and not grey.flags.c_contiguous
        g = grey.T if flip else np.ascontiguousarray(grey)  # reduce in memory order
        blocks = [(size, s // size) for s in g.shape]
        shaped = g.reshape([n for pair in blocks for n in pair])
        out = shaped.mean(axis=tuple(range(1, 2 * g.ndim, 2)), dtype=np.float32)
        return np.ascontiguousarray(out.T) if flip else out
    factors = [size / s for s in grey.shape]
    return zoom(grey, factors, order=1, prefilter=False, grid_mode=True, mode="nearest").astype(
        np.float32
    )


def phash(thumb: NDArray[np.float32]) -> int:
    """64-bit DCT perceptual hash of a thumbnail (2D: 8x8, 3D: 4x4x4 low frequencies).

    The hash bit is whether a low-frequency DCT coefficient is above their median
    (Zauner 2010, the pHash of ``imagehash``).

    Examples
    --------
    >>> t = thumbnail(Image(np.random.default_rng(0).random((64, 64))))
    >>> phash(t) == phash(t * 3 + 1)
    True
    """
    coeffs = dctn(thumb.astype(np.float64), norm="ortho")
    low = coeffs[:8, :8] if thumb.ndim == 2 else coeffs[:4, :4, :4]
    flat = low.ravel()
    bits = flat > np.median(flat[1:])
    return int(np.packbits(bits).view(">u8")[0])


def _stats(values: NDArray, rng: np.random.Generator, fg: NDArray | None, n: int) -> ChannelStats:
    flat = values.ravel(order="K")  # no copy for transposed (Fortran-ordered) arrays
    finite = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
    if finite.size == 0:
        finite = np.zeros(1, np.float32)
    pick = finite if finite.size <= 20000 else finite[rng.integers(0, finite.size, 20000)]
    p01, p99 = np.percentile(pick, [1, 99])
    pool = finite
    fg_min = float("nan")
    if fg is not None:
        pool = values[fg].ravel()
        if pool.size:
            fg_min = float(pool.min())
    samples = pool if pool.size <= n else pool[rng.integers(0, pool.size, n)]
    return ChannelStats(
        mean=float(finite.mean(dtype=np.float64)),
        std=float(finite.std(dtype=np.float64)),
        min=float(finite.min()),
        max=float(finite.max()),
        p01=float(p01),
        p99=float(p99),
        samples=np.asarray(samples, dtype=np.float32),
        fg_min=fg_min,
    )


def _scan_mask(case_mask: Image, image: Image) -> MaskScan:
    arr = case_mask.array
    out = MaskScan(shape=case_mask.shape)
    out.same_shape = case_mask.shape == image.shape
    out.same_geometry = bool(np.allclose(case_mask.affine, image.affine, atol=1e-3))
    values, counts = value_counts(arr)
    out.values = tuple(int(v) for v in values)
    out.counts = {int(v): int(c) for v, c in zip(values, counts, strict=True)}
    return out


def _boxes(case_label: object, attributes: object) -> tuple[Box, ...]:
    if isinstance(case_label, tuple) and case_label and isinstance(case_label[0], Box):
        return case_label
    boxes = attributes.get("boxes") if hasattr(attributes, "get") else None
    return tuple(boxes) if boxes else ()


def scan_case(dataset: Dataset, index: int, *, seed: int = 0, samples: int = 1000) -> CaseScan:
    """Scan one Case (see the module doc); errors are recorded, not raised."""
    case = dataset[index]
    rng = np.random.default_rng([seed, index])
    out = CaseScan(
        index=index,
        case_id=case.case_id,
        patient_id=str(case.patient_id),
        split=case.split.value if case.split is not None else None,
        stratum=stratum_of(case),
        file=dataset.describe(case.case_id),
        boxes=_boxes(case.label, case.attributes),
    )
    try:
        image = case.image()
        arr = image.array
    except (MedsightError, OSError, ValueError) as exc:
        out.error = str(exc)
        return out
    out.shape = image.shape
    out.spacing = tuple(round(float(s), 6) for s in image.spacing)
    out.orientation = image.orientation
    out.dtype = str(arr.dtype)
    out.n_channels = image.n_channels
    out.modality = image.modality
    # hash the bytes in Fortran order: medsight arrays are usually transposed views (no copy)
    out.digest = hashlib.sha1(
        f"{arr.shape}{arr.dtype}".encode() + np.ascontiguousarray(arr.T).data
    ).hexdigest()
    out.thumb = thumbnail(image)
    out.phash = phash(out.thumb)
    fg = None
    if case.label is not None and (isinstance(case.label, Image) or callable(case.label)):
        try:
            mask = case.mask()
            assert mask is not None
            out.mask = _scan_mask(mask, image)
            if out.mask.same_shape:
                fg = np.asarray(mask.array) > 0
                if not fg.any():
                    fg = None
        except (MedsightError, OSError, ValueError) as exc:
            out.mask = MaskScan(error=str(exc))
    chans = [arr[..., c] for c in range(image.n_channels)] if image.has_channels else [arr]
    out.channels = [_stats(ch, rng, fg, samples) for ch in chans]
    return out


def scan_dataset(
    dataset: Dataset,
    *,
    seed: int = 0,
    samples: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> list[CaseScan]:
    """Scan every Case; ``progress(i)`` is called after each one."""
    scans = []
    for i in range(len(dataset)):
        scans.append(scan_case(dataset, i, seed=seed, samples=samples))
        if progress is not None:
            progress(i)
    return scans


def class_counts(ds: Dataset, scans: list[CaseScan]) -> dict[str, int]:
    """Cases per class name (multi-label: per label), labelled cases only."""
    counts: Counter[str] = Counter()
    for s in scans:
        if s.stratum in ("none", "mask", "boxes"):
            continue
        for part in s.stratum.split("|") if s.stratum else []:
            counts[str(ds.label_names.get(int(part), part)) if part.isdigit() else part] += 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
