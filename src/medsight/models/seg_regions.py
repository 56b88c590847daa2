"""Region-based segmentation (nnU-Net's recipe for nested labels such as BraTS's tumour parts).

When labels are nested (whole tumour ⊃ tumour core ⊃ enhancing tumour), nnU-Net trains one
sigmoid output per *region*, a set of label values, instead of one softmax output per label:
the region masks are built from the label map, and the loss is Dice + binary cross-entropy per
region.  A package trained so records its regions in ``model.json``
(``spec.extra["regions"]``, largest first); inference turns the region probabilities back into
the label map the rest of medsight uses (:func:`regions_to_labels`).

The rule (stated here once; training, the Segmenter and the ONNX export check use it):

* Regions are listed **from the largest to the smallest**, each a proper superset of the next
  (nested, as nnU-Net's ``regions_class_order`` assumes); every region names label values the
  data has (not background, 0), and together they cover every label.
* Each region **adds exactly one label** to the next one: region ``i`` minus region ``i + 1``
  (the last region: itself) is one label value, the label painted for that region.
* **Conversion**: every region's probability is thresholded at 0.5 (``p > 0.5``); starting
  from background, the regions are painted from the largest to the smallest, each with the
  label it adds, so a smaller region overwrites a larger one.

Examples
--------
>>> regions = check_regions([[1, 2, 3], [2, 3], [3]], {0: "bg", 1: "edema", 2: "core", 3: "et"})
>>> region_labels(regions)
[1, 2, 3]
>>> p = np.array([[0.9, 0.9, 0.2], [0.8, 0.1, 0.1], [0.7, 0.1, 0.1]])  # 3 regions, 3 voxels
>>> regions_to_labels(p, regions).tolist()
[3, 1, 0]
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from medsight.core.errors import InvalidInputError

__all__ = [
    "REGION_THRESHOLD",
    "check_regions",
    "format_regions",
    "label_probabilities",
    "parse_regions",
    "region_dice",
    "region_labels",
    "region_names",
    "regions_to_labels",
]

#: A region is predicted where its sigmoid probability is above this (nnU-Net's 0.5).
REGION_THRESHOLD = 0.5


def parse_regions(text: str, source: str = "--regions") -> list[list[int]]:
    """Regions from ``"1,2,3;2,3;3"`` (regions separated by ``;``, label values by ``,``).

    Only the syntax is checked here; :func:`check_regions` checks them against the labels.

    Examples
    --------
    >>> parse_regions("1,2,3; 2,3; 3")
    [[1, 2, 3], [2, 3], [3]]
    """
    regions = []
    for part in text.split(";"):
        try:
            values = [int(v) for v in part.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values:
            raise InvalidInputError(
                source,
                f"{text!r} is not a list of regions: {part.strip()!r} is not label values",
                hint="e.g. '1,2,3;2,3;3': regions separated by ';', label values by ','",
            )
        regions.append(values)
    return regions


def format_regions(regions: Sequence[Sequence[int]]) -> str:
    """The ``--regions`` text of ``regions`` (:func:`parse_regions` reads it back).

    >>> format_regions([[1, 2, 3], [2, 3], [3]])
    '1,2,3;2,3;3'
    """
    return ";".join(",".join(str(v) for v in r) for r in regions)


def check_regions(
    regions: Sequence[Sequence[int]],
    label_names: Mapping[int, str],
    source: str | os.PathLike[str] = "--regions",
) -> list[list[int]]:
    """``regions`` as sorted lists of label values, or an error naming what is wrong.

    Raises
    ------
    InvalidInputError
        No regions, an empty region, a label value twice in a region, background (0) or a
        label the data does not have (``label_names``), regions that are not nested from the
        largest to the smallest, a region that adds more than one label to the next, or a
        label in no region (it could never be predicted).
    """
    names = {int(k): v for k, v in label_names.items()}
    given = format_regions(regions) if regions else "(none)"
    if not regions:
        raise InvalidInputError(source, "no regions given")
    out: list[list[int]] = []
    for i, region in enumerate(regions):
        values = [int(v) for v in region]
        if not values:
            raise InvalidInputError(source, f"region {i + 1} of {given} is empty")
        if len(set(values)) != len(values):
            raise InvalidInputError(source, f"region {i + 1} of {given} names a label twice")
        if 0 in values:
            raise InvalidInputError(
                source, f"region {i + 1} of {given} contains 0: background is no region's label"
            )
        unknown = sorted(v for v in values if v not in names)
        if unknown:
            known = ", ".join(f"{k} ({v})" for k, v in sorted(names.items()) if k > 0)
            raise InvalidInputError(
                source,
                f"region {i + 1} of {given} names label {', '.join(map(str, unknown))}, which "
                f"the data does not have (its labels: {known})",
            )
        out.append(sorted(values))
    for i in range(len(out) - 1):
        big, small = set(out[i]), set(out[i + 1])
        if not small < big:
            raise InvalidInputError(
                source,
                f"regions {given} are not nested: region {i + 2} ({format_regions([out[i + 1]])})"
                f" is not inside region {i + 1} ({format_regions([out[i]])})",
                hint="list the regions from the largest to the smallest, each containing the "
                "next (nnU-Net's rule), e.g. '1,2,3;2,3;3'",
            )
    for i, added in enumerate(_added(out)):
        if len(added) != 1:
            raise InvalidInputError(
                source,
                f"region {i + 1} of {given} adds labels {', '.join(map(str, sorted(added)))} to "
                "the next region: each region must add exactly one label, the one painted "
                "where it is predicted",
            )
    missing = sorted(k for k in names if k > 0 and k not in out[0])
    if missing:
        raise InvalidInputError(
            source,
            f"label {', '.join(f'{k} ({names[k]})' for k in missing)} is in no region of "
            f"{given}: it could never be predicted",
            hint="the first (largest) region holds every label",
        )
    return out


def _added(regions: Sequence[Sequence[int]]) -> list[set[int]]:
    sets = [set(r) for r in regions]
    return [s - (sets[i + 1] if i + 1 < len(sets) else set()) for i, s in enumerate(sets)]


def region_labels(regions: Sequence[Sequence[int]]) -> list[int]:
    """The label each region adds to the next (regions checked by :func:`check_regions`)."""
    return [min(a) for a in _added(regions)]


def region_names(regions: Sequence[Sequence[int]], label_names: Mapping[int, str]) -> list[str]:
    """A metric-safe name per region: its label names joined by ``+`` (``edema+core+et``).

    >>> region_names([[1, 2], [2]], {0: "bg", 1: "edema", 2: "core"})
    ['edema+core', 'core']
    """
    return ["+".join(str(label_names.get(v, v)) for v in r) for r in regions]


def region_dice(pred: np.ndarray, ref: np.ndarray, regions: Sequence[Sequence[int]]) -> list[float]:
    """Dice of each region (the union of its labels) between two label maps, as BraTS reports.

    Both empty counts as 1 (nothing to find, nothing found).

    >>> ref = np.array([0, 1, 2, 2]); pred = np.array([0, 2, 2, 1])
    >>> region_dice(pred, ref, [[1, 2], [2]])
    [1.0, 0.5]
    """
    out = []
    for r in regions:
        p, t = np.isin(pred, r), np.isin(ref, r)
        denom = int(p.sum()) + int(t.sum())
        out.append(1.0 if denom == 0 else float(2 * (p & t).sum() / denom))
    return out


def regions_to_labels(
    probabilities: np.ndarray, regions: Sequence[Sequence[int]], axis: int = 0
) -> np.ndarray:
    """The int16 label map of region probabilities (the regions along ``axis``).

    Each region above :data:`REGION_THRESHOLD`, painted from the largest to the smallest with
    the label it adds (see the module notes).
    """
    p = np.moveaxis(np.asarray(probabilities), axis, 0)
    if p.shape[0] != len(regions):
        raise InvalidInputError(
            "probabilities", f"has {p.shape[0]} region channels, the package has {len(regions)}"
        )
    out = np.zeros(p.shape[1:], dtype=np.int16)
    for channel, label in zip(p, region_labels(regions), strict=True):
        out[channel > REGION_THRESHOLD] = label
    return out


def label_probabilities(
    probabilities: np.ndarray, regions: Sequence[Sequence[int]], n_classes: int
) -> np.ndarray:
    """Per-label probabilities ``(n_classes, *S)`` of region probabilities ``(R, *S)``.

    The regions' probabilities made nested (each at most the one before it), then background
    ``1 - p_1`` and each region's added label ``p_i - p_(i+1)``: the channels sum to 1.  What a
    consumer of class probabilities (e.g. a threshold edit) reads; the label map itself is
    :func:`regions_to_labels`.

    >>> q = label_probabilities(np.array([[0.9], [0.6], [0.7]]), [[1, 2, 3], [2, 3], [3]], 4)
    >>> [round(float(v), 3) for v in q[:, 0]]
    [0.1, 0.3, 0.0, 0.6]
    """
    p = np.minimum.accumulate(np.clip(np.asarray(probabilities, dtype=np.float32), 0, 1), axis=0)
    out = np.zeros((n_classes, *p.shape[1:]), dtype=np.float32)
    out[0] = 1.0 - p[0]
    for i, label in enumerate(region_labels(regions)):
        out[label] = p[i] - (p[i + 1] if i + 1 < len(p) else 0.0)
    return out
