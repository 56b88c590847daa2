"""Deterministic preprocessing: a :class:`PreprocessingSpec` applied to an Image.

The same function runs at training and at inference, so a package's ``model.json`` fully
describes what the network saw.  :func:`to_network_input` returns a channels-first float32
array ``(C, *spatial)`` with the spatial axes in medsight's index order; :func:`to_monai`
compiles the same spec to a MONAI ``Compose`` for channel-first arrays (tested equal).

Examples
--------
>>> import numpy as np
>>> from medsight.core import Image
>>> from medsight.models.spec import Intensity, PreprocessingSpec
>>> spec = PreprocessingSpec(size=[4, 4], intensity=Intensity.SCALE_0_1, channels=3)
>>> x = to_network_input(Image(np.full((8, 8), 255, np.uint8)), spec)
>>> x.shape, x.dtype, float(x.max())
((3, 4, 4), dtype('float32'), 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.models.spec import Intensity, PreprocessingSpec

__all__ = ["normalize_intensity", "resize", "to_monai", "to_network_input"]


def _channels_first(image: Image) -> NDArray[np.float32]:
    arr = np.asarray(image.array, dtype=np.float32)
    if image.has_channels:
        return np.moveaxis(arr, -1, 0)
    return arr[None]


_TINY_STD = 1e-8  # a (near-)constant image or channel is centred, not divided by ~0


def _zscore(x: NDArray[np.float32], *, nonzero: bool) -> NDArray[np.float32]:
    """(x - mean) / std over ``x`` (or over its non-zero voxels, the zeros kept at 0)."""
    if not nonzero:
        std = float(x.std())
        return (x - x.mean()) / np.float32(std if std > _TINY_STD else 1.0)
    fg = x != 0
    if not fg.any():
        return x
    vals = x[fg]
    std = float(vals.std())
    z = (x - vals.mean()) / np.float32(std if std > _TINY_STD else 1.0)
    return np.where(fg, z, np.float32(0.0))


def normalize_intensity(x: NDArray[np.float32], spec: PreprocessingSpec) -> NDArray[np.float32]:
    """Apply ``spec.intensity`` (with ``spec.intensity_args``) to a channels-first array.

    The one intensity normalisation of medsight: classification packages, segmentation plans
    (through :meth:`~medsight.models.seg_plan.SegmentationPlan.preprocessing`) and the
    analysis' plausibility statistics all come here.  ``zscore`` and ``zscore_nonzero`` use
    each channel's own statistics when ``spec.per_channel`` (segmentation), otherwise those of
    all channels together; a standard deviation under 1e-8 counts as 1.  ``ct_window`` clips to
    ``[lower, upper]`` and z-scores with the fixed ``mean``/``std``.  ``robust_percentile``
    maps the image's own ``percentile_low`` / ``percentile_high`` (0.5 / 99.5) to 0 / 1 (the
    denoisers' scaling, :func:`medsight.transforms.noise.scale_to_unit`).

    Examples
    --------
    >>> x = np.array([[[0.0, 2.0], [4.0, 6.0]], [[0.0, 20.0], [40.0, 60.0]]], np.float32)
    >>> joint = PreprocessingSpec(intensity=Intensity.ZSCORE)
    >>> each = PreprocessingSpec(intensity=Intensity.ZSCORE, per_channel=True)
    >>> [round(float(normalize_intensity(x, s)[0].max()), 4) for s in (joint, each)]
    [-0.5036, 1.3416]
    >>> nz = PreprocessingSpec(intensity=Intensity.ZSCORE_NONZERO, per_channel=True)
    >>> [[round(float(v), 4) for v in row] for row in normalize_intensity(x, nz)[1]]
    [[0.0, -1.2247], [0.0, 1.2247]]
    """
    args = spec.intensity_args
    mode = Intensity(spec.intensity)
    if mode is Intensity.NONE:
        return x
    if mode is Intensity.SCALE_0_1:
        return x / np.float32(args.get("max", 255.0))
    if mode in (Intensity.ZSCORE, Intensity.ZSCORE_NONZERO):
        nonzero = mode is Intensity.ZSCORE_NONZERO
        if not spec.per_channel or x.shape[0] == 1:
            return _zscore(x, nonzero=nonzero)
        out = np.array(x, dtype=np.float32)
        for c in range(out.shape[0]):
            out[c] = _zscore(out[c], nonzero=nonzero)
        return out
    if mode is Intensity.ROBUST_PERCENTILE:
        lo, hi = np.percentile(
            x[np.isfinite(x)] if x.size else np.zeros(1, np.float32),
            [args.get("percentile_low", 0.5), args.get("percentile_high", 99.5)],
        )
        scale = float(hi - lo)
        if not scale > 1e-12 * max(1.0, abs(float(lo))):
            scale = 1.0
        return ((x - np.float32(lo)) / np.float32(scale)).astype(np.float32)
    if mode is Intensity.CT_WINDOW:
        lower, upper = args.get("lower", -1000.0), args.get("upper", 1000.0)
        mean = args.get("mean", (lower + upper) / 2)
        std = args.get("std", (upper - lower) / 2)
        return (np.clip(x, lower, upper) - np.float32(mean)) / np.float32(max(std, _TINY_STD))
    if "mean" not in args or "std" not in args:
        raise InvalidInputError(
            "preprocessing.intensity_args", "dataset_zscore needs 'mean' and 'std'"
        )
    return (x - np.float32(args["mean"])) / np.float32(args["std"])


def resize(
    x: NDArray[np.float32], size: Sequence[int], *, nearest: bool = False
) -> NDArray[np.float32]:
    """Resize a channels-first array ``(C, *spatial)`` to spatial ``size``.

    Linear (bilinear / trilinear, ``align_corners=False``), or with ``nearest`` nearest
    neighbour (``nearest-exact``, for label maps).  The one resize of medsight's network
    input: classification preprocessing, segmentation plans and saliency maps use it.

    Examples
    --------
    >>> x = np.arange(4, dtype=np.float32).reshape(1, 2, 2)
    >>> resize(x, [4, 4]).shape, resize(x, [4, 4], nearest=True)[0, 0].tolist()
    ((1, 4, 4), [0.0, 0.0, 1.0, 1.0])
    """
    if tuple(x.shape[1:]) == tuple(size):
        return x
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.array(x, dtype=np.float32))[None]
    if nearest:
        out = F.interpolate(t, size=tuple(size), mode="nearest-exact")
    else:
        mode = "bilinear" if len(size) == 2 else "trilinear"
        out = F.interpolate(t, size=tuple(size), mode=mode, align_corners=False)
    return out[0].numpy()


def _match_channels(x: NDArray[np.float32], channels: int) -> NDArray[np.float32]:
    if x.shape[0] == channels:
        return x
    if x.shape[0] == 1:
        return np.repeat(x, channels, axis=0)
    if channels == 1:
        return x.mean(axis=0, keepdims=True)
    raise InvalidInputError("image", f"has {x.shape[0]} channels; the model expects {channels}")


def to_network_input(image: Image, spec: PreprocessingSpec) -> NDArray[np.float32]:
    """Resize, normalise and match channels: the network's input for one Image."""
    x = _channels_first(image)
    if spec.size is not None:
        if len(spec.size) != image.spatial_ndim:
            raise InvalidInputError(
                "preprocessing.size",
                f"{spec.size} has {len(spec.size)} axes; the image has {image.spatial_ndim}",
            )
        x = resize(x, spec.size)
    x = normalize_intensity(x, spec)
    return np.ascontiguousarray(_match_channels(x, spec.channels), dtype=np.float32)


def to_monai(spec: PreprocessingSpec) -> Any:
    """The same preprocessing as a MONAI ``Compose`` for channel-first arrays.

    Examples
    --------
    >>> import numpy as np
    >>> spec = PreprocessingSpec(size=[2, 2], intensity=Intensity.SCALE_0_1)
    >>> out = to_monai(spec)(np.full((1, 4, 4), 51.0, np.float32))
    >>> tuple(out.shape), round(float(out.max()), 3)
    ((1, 2, 2), 0.2)
    """
    from monai import transforms as mt

    steps: list[Any] = []
    if spec.size is not None:
        mode = "bilinear" if len(spec.size) == 2 else "trilinear"
        steps.append(mt.Resize(spatial_size=spec.size, mode=mode, anti_aliasing=False))
    args = spec.intensity_args
    mode_i = Intensity(spec.intensity)
    if mode_i is Intensity.SCALE_0_1:
        steps.append(mt.ScaleIntensityRange(0.0, args.get("max", 255.0), 0.0, 1.0))
    elif mode_i is Intensity.ZSCORE:
        steps.append(mt.NormalizeIntensity(channel_wise=spec.per_channel))
    elif mode_i is Intensity.ZSCORE_NONZERO:
        steps.append(mt.NormalizeIntensity(nonzero=True, channel_wise=spec.per_channel))
    elif mode_i is Intensity.CT_WINDOW:
        lower, upper = args.get("lower", -1000.0), args.get("upper", 1000.0)
        mean = args.get("mean", (lower + upper) / 2)
        std = args.get("std", (upper - lower) / 2)
        steps += [
            mt.ThresholdIntensity(lower, above=True, cval=lower),
            mt.ThresholdIntensity(upper, above=False, cval=upper),
            mt.NormalizeIntensity(subtrahend=mean, divisor=max(std, _TINY_STD)),
        ]
    elif mode_i is Intensity.DATASET_ZSCORE:
        steps.append(mt.NormalizeIntensity(subtrahend=args["mean"], divisor=args["std"]))
    elif mode_i is Intensity.ROBUST_PERCENTILE:
        steps.append(
            mt.ScaleIntensityRangePercentiles(
                args.get("percentile_low", 0.5),
                args.get("percentile_high", 99.5),
                0.0,
                1.0,
                channel_wise=spec.per_channel,
            )
        )
    if spec.channels > 1:
        steps.append(mt.RepeatChannel(repeats=spec.channels))
    steps.append(mt.EnsureType(data_type="numpy", dtype=np.float32))
    return mt.Compose(steps)
