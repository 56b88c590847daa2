"""Faster sliding-window inference: crop to the foreground, skip background windows, batch.

MONAI's :func:`monai.inferers.sliding_window_inference` cuts the whole input into overlapping
windows, runs the network on each and blends the logits with a Gaussian importance map.  On a
volume that is mostly background (air around a head, zero padding around a crop) most of that
work is spent on windows whose result is thrown away.  :func:`sliding_window_logits` keeps
MONAI's blending (it calls MONAI on what is left) and removes that work, in three steps:

1. **Foreground crop** (nnU-Net's ``crop_to_nonzero`` idea, stated here as a rule): the
   *background value* is the value shared by all corner voxels of every channel (when the
   corners disagree nothing is cropped); the foreground is every voxel that differs from it in
   any channel by more than ``1e-6``; the crop is the foreground's bounding box grown by half a
   patch on each side, clipped to the volume.  Windows run only inside the crop; outside it
   the output is background (class 0: its logit 0, every other class ``-inf``, i.e.
   probability 1 for class 0 after a softmax; with ``background_class=False``, for the
   sigmoid outputs of a region-based network, every channel ``-inf``: probability 0 for
   every region).
2. **Background windows skipped, exactly**: a window whose input is entirely the background
   value is the same input for every such window, so the network runs on it once and that
   output is reused.  This changes nothing in the result (the network is applied per window).
3. **Cached Gaussian importance map** (built once per patch size and device) and windows
   batched (``sw_batch_size`` at a time).

**Grid-aligned crop** (``aligned=True``; what a call asking for features uses): the crop is
the bounding box of the windows of the *uncropped* window grid that overlap the foreground's
extent on every axis (:func:`aligned_box`).  MONAI's window grid on that box is then exactly
those windows (checked; when it is not, nothing is cropped), so every window that runs is one
the uncropped run would have run on the same input, and every window outside the box is all
background.  The foreground voxels' probabilities are the uncropped run's (every window
overlapping them is inside the box), and features pooled over the windows are unchanged when
the windows outside the box are counted as the one background window (``stats`` gives the
counts: ``windows_total`` of the uncropped grid, ``windows_run``, ``windows_reused``).

With ``crop=False`` and no window entirely background the result is MONAI's, up to float
round-off (a test checks it against MONAI within 1e-5).  ``net`` may be any callable from
``(N, C, *patch)`` tensors to logits, e.g. :class:`medsight.inference.onnx_backend.OnnxNetwork`
to run the windows in ONNX Runtime.

Examples
--------
>>> import numpy as np
>>> a = np.zeros((1, 20, 20), np.float32); a[0, 8:10, 9:11] = 1.0
>>> foreground_box(a, (4, 4))
(slice(6, 12, None), slice(7, 13, None))
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "aligned_box",
    "axis_starts",
    "background_value",
    "foreground_box",
    "gaussian_map",
    "sliding_window_logits",
    "window_count",
]

_FG_TOL = 1e-6


def background_value(array: Any) -> float | None:
    """The value every corner voxel of every channel shares, or None when they differ.

    ``array`` is ``(C, *spatial)`` (numpy or torch).
    """
    a = np.asarray(array.detach().cpu() if hasattr(array, "detach") else array)
    corners = [a[(slice(None), *(-b for b in bits))] for bits in np.ndindex(*(2,) * (a.ndim - 1))]
    values = np.concatenate([np.ravel(c) for c in corners])
    if values.size == 0 or np.ptp(values) > _FG_TOL:
        return None
    return float(values[0])


def foreground_box(
    array: Any, patch_size: Sequence[int], background: float | None = None
) -> tuple[slice, ...] | None:
    """The crop: the foreground's bounding box plus half a patch per side, clipped.

    ``array`` is ``(C, *spatial)``.  ``background`` defaults to :func:`background_value`.
    Returns None when there is no background value (nothing to crop) or no foreground.
    """
    a = np.asarray(array.detach().cpu() if hasattr(array, "detach") else array)
    if background is None:
        background = background_value(a)
        if background is None:
            return None
    fg = np.any(np.abs(a - background) > _FG_TOL, axis=0)
    if not fg.any():
        return None
    box = []
    for axis, (n, p) in enumerate(zip(fg.shape, patch_size, strict=True)):
        other = tuple(i for i in range(fg.ndim) if i != axis)
        hit = np.flatnonzero(fg.any(axis=other))
        margin = int(p) // 2
        box.append(slice(max(0, int(hit[0]) - margin), min(n, int(hit[-1]) + 1 + margin)))
    return tuple(box)


def axis_starts(n: int, p: int, overlap: float) -> list[int]:
    """Where MONAI's sliding windows of size ``p`` start along an axis of ``n`` voxels
    (``n >= p``): steps of ``int(p (1 - overlap))`` (at least 1; ``p`` when ``p == n``), the
    last window moved back to end at the edge (``monai.data.utils.dense_patch_slices``).

    >>> axis_starts(20, 8, 0.5)
    [0, 4, 8, 12]
    >>> axis_starts(21, 8, 0.5)
    [0, 4, 8, 12, 13]
    """
    step = p if p == n else max(1, int(p * (1 - overlap)))
    starts = []
    for idx in range(-(-n // step)):
        s = idx * step
        starts.append(s - max(s + p - n, 0))
        if s + p >= n:
            break
    return starts


def window_count(shape: Sequence[int], patch: Sequence[int], overlap: float) -> int:
    """Number of windows of MONAI's grid on ``shape`` (every axis at least its patch size).

    >>> window_count((20, 21), (8, 8), 0.5)
    20
    """
    return int(
        np.prod([len(axis_starts(n, p, overlap)) for n, p in zip(shape, patch, strict=True)])
    )


def aligned_box(
    array: Any, patch_size: Sequence[int], overlap: float, background: float | None = None
) -> tuple[slice, ...] | None:
    """The grid-aligned crop (see the module notes): the bounding box of the uncropped grid's
    windows that overlap the foreground's extent on every axis.

    Returns None when there is no background value, no foreground, an axis shorter than its
    patch (MONAI pads such an input), or MONAI's grid on the box would not be those windows.

    >>> a = np.zeros((1, 40, 40), np.float32); a[0, 21, 3] = 1.0
    >>> aligned_box(a, (8, 8), 0.5)
    (slice(16, 28, None), slice(0, 8, None))
    """
    a = np.asarray(array.detach().cpu() if hasattr(array, "detach") else array)
    if background is None:
        background = background_value(a)
        if background is None:
            return None
    fg = np.any(np.abs(a - background) > _FG_TOL, axis=0)
    if not fg.any() or any(n < int(p) for n, p in zip(fg.shape, patch_size, strict=True)):
        return None
    box = []
    for axis, (n, p) in enumerate(zip(fg.shape, (int(q) for q in patch_size), strict=True)):
        other = tuple(i for i in range(fg.ndim) if i != axis)
        hit = np.flatnonzero(fg.any(axis=other))
        lo, hi = int(hit[0]), int(hit[-1])
        used = [s for s in axis_starts(n, p, overlap) if s <= hi and s + p > lo]
        start, stop = used[0], used[-1] + p
        if [start + s for s in axis_starts(stop - start, p, overlap)] != used:
            return None
        box.append(slice(start, stop))
    return tuple(box)


@functools.lru_cache(maxsize=16)
def _gaussian(roi: tuple[int, ...], sigma_scale: float, device: str) -> torch.Tensor:
    from monai.data.utils import compute_importance_map

    return compute_importance_map(
        roi, mode="gaussian", sigma_scale=sigma_scale, device=device, dtype=_float32()
    )


def _float32() -> Any:
    import torch

    return torch.float32


def gaussian_map(
    roi: Sequence[int], device: torch.device | str = "cpu", sigma_scale: float = 0.125
) -> torch.Tensor:
    """MONAI's Gaussian importance map for a patch, built once per (patch, sigma, device)."""
    return _gaussian(tuple(int(r) for r in roi), float(sigma_scale), str(device))


class _SkipBackground:
    """Wraps a network: windows whose input is all background reuse one cached output."""

    def __init__(self, net: Callable[[Any], Any], background: float) -> None:
        self.net = net
        self.background = background
        self.cached: Any = None
        self.skipped = 0
        self.run = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        flat = x.reshape(x.shape[0], -1)
        bg = (flat - self.background).abs().amax(dim=1) <= _FG_TOL
        if not bool(bg.any()):
            self.run += int(x.shape[0])
            return _first(self.net(x))
        if self.cached is None:
            self.cached = _first(self.net(x[bg][:1]))
            self.run += 1
            self.skipped -= 1  # that window was run, not reused
        keep = ~bg
        if bool(keep.any()):
            real = _first(self.net(x[keep]))
            self.run += int(keep.sum())
            out = torch.empty((x.shape[0], *real.shape[1:]), dtype=real.dtype, device=real.device)
            out[keep] = real
        else:
            out = torch.empty(
                (x.shape[0], *self.cached.shape[1:]),
                dtype=self.cached.dtype,
                device=self.cached.device,
            )
        out[bg] = self.cached.expand(int(bg.sum()), *self.cached.shape[1:])
        self.skipped += int(bg.sum())
        return out


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def sliding_window_logits(
    net: Callable[[Any], Any],
    x: torch.Tensor,
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    sw_batch_size: int = 8,
    crop: bool = True,
    skip_background: bool = True,
    aligned: bool = False,
    stats: dict[str, Any] | None = None,
    background_class: bool = True,
) -> torch.Tensor:
    """Gaussian-blended sliding-window logits ``(1, n_classes, *spatial)`` of ``(1, C, *spatial)``.

    Parameters
    ----------
    net : callable
        ``(N, C, *patch) -> (N, n_classes, *patch)`` logits (a tuple's first entry is used).
    x : torch.Tensor
        One image with its batch axis.
    crop, skip_background : bool
        The foreground crop and the exact reuse of background windows (see the module notes).
    aligned : bool
        With ``crop``: the grid-aligned crop (:func:`aligned_box`) instead of the foreground box
        plus half a patch.
    stats : dict, optional
        Filled with ``crop`` (the box as (start, stop) pairs, None when uncropped),
        ``background`` (the value, or None), ``windows_total`` (windows of the uncropped grid),
        ``windows_run`` (None when no window was checked for background: every window of the
        run ran) and ``windows_reused``.
    background_class : bool
        Channel 0 is background (softmax outputs): outside the crop its logit is 0 and the
        others' ``-inf``; False (sigmoid region outputs): every channel ``-inf`` there.
    """
    import torch
    from monai.inferers import sliding_window_inference

    roi = tuple(int(p) for p in patch_size)
    if x.ndim != len(roi) + 2 or x.shape[0] != 1:
        raise ValueError(f"expected (1, C, *spatial) with {len(roi)} spatial axes, got {x.shape}")
    background = background_value(x[0]) if (crop or skip_background) else None
    box = None
    if crop and background is not None:
        box = (
            aligned_box(x[0], roi, overlap, background)
            if aligned
            else foreground_box(x[0], roi, background)
        )
    sub = x if box is None else x[(slice(None), slice(None), *box)]
    predictor: Callable[[Any], Any] = net
    skipper = None
    if skip_background and background is not None:
        skipper = _SkipBackground(net, background)
        predictor = skipper
    weight = gaussian_map(roi, x.device)
    with torch.no_grad():
        logits = sliding_window_inference(
            sub,
            roi_size=roi,
            sw_batch_size=sw_batch_size,
            predictor=predictor,
            overlap=overlap,
            mode="gaussian",
            roi_weight_map=weight,
        )
    logits = _first(logits)
    if stats is not None:
        stats["crop"] = None if box is None else [(s.start, s.stop) for s in box]
        stats["background"] = background
        shape = tuple(x.shape[2:])
        stats["windows_total"] = (
            window_count(shape, roi, overlap) if min(np.subtract(shape, roi)) >= 0 else None
        )
        stats["windows_run"] = skipper.run if skipper is not None else None
        stats["windows_reused"] = skipper.skipped if skipper is not None else 0
    if box is None:
        return logits
    full = torch.full(
        (1, logits.shape[1], *x.shape[2:]), float("-inf"), dtype=logits.dtype, device=x.device
    )
    if background_class:
        full[:, 0] = 0.0
    full[(slice(None), slice(None), *box)] = logits
    return full
