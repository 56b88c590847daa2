"""The feature vector a network computes for an input, for out-of-distribution scoring.

* Classifiers: the input of the last ``nn.Linear`` layer (the penultimate features).
* Segmentation networks with a ``bottleneck`` (MONAI's DynUNet, UNet-like): the per-channel
  mean and log standard deviation of the bottleneck's last convolution, *before* its instance
  normalisation (after it every channel has the same mean and spread by construction),
  averaged over every sliding window the input was cut into.  An ensemble
  (:class:`medsight.models.ensemble.EnsembleNet`) uses its last member's bottleneck, the
  layer whose reference that member's trainer fitted.

:func:`capture` hooks the layer for the duration of a ``with`` block; the vectors collected
feed :class:`medsight.models.ood.OodReference`.  The hook records only the forward passes of
the thread that opened the block: a cached network is shared by the service's threads
(:mod:`medsight.inference.cache`), and a hook on a shared module is called by every thread's
forward pass.

Examples
--------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> with capture(net, "classifier") as grab:
...     _ = net(torch.zeros(5, 4))
>>> grab.vectors().shape, grab.layer
((5, 3), '2')
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image

if TYPE_CHECKING:
    import torch

__all__ = ["FeatureGrab", "capture", "feature_layer", "package_features"]


def feature_layer(net: torch.nn.Module, kind: str) -> tuple[str, torch.nn.Module]:
    """The name and module whose activity is the feature vector (see the module doc).

    Raises
    ------
    InvalidInputError
        The network has no such layer.
    """
    from torch import nn

    if kind == "classifier":
        linear = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
        if linear:
            return linear[-1]
    elif kind == "segmentation":
        prefix, owner = "", net
        members = getattr(net, "members", None)  # an ensemble: its last member's bottleneck
        if getattr(net, "bottleneck", None) is None and isinstance(members, nn.ModuleList):
            prefix, owner = f"members.{len(members) - 1}.", members[-1]
        bottleneck = getattr(owner, "bottleneck", None)
        if bottleneck is not None:
            convs = [
                (n, m)
                for n, m in bottleneck.named_modules()
                if isinstance(m, nn.Conv2d | nn.Conv3d)
            ]
            if convs:
                return f"{prefix}bottleneck.{convs[-1][0]}", convs[-1][1]
    raise InvalidInputError(
        f"network {type(net).__name__}", f"has no layer for {kind} features (OOD scoring)"
    )


class FeatureGrab:
    """Feature vectors collected while hooked; one row per network input (or per window).

    Only forward passes run by the thread that created the grab are recorded (another thread
    running the same shared network at the same time calls the hook too).
    """

    def __init__(self, layer: str, kind: str) -> None:
        self.layer = layer
        self.kind = kind
        self._rows: list[NDArray[np.float64]] = []
        self._thread = threading.get_ident()

    def hook(self, module: Any, args: tuple[Any, ...], output: Any) -> None:
        """A forward hook (module, inputs, output); ignores other threads' forward passes."""
        if threading.get_ident() != self._thread:
            return
        if self.kind == "classifier":
            x = args[0].detach().float()
            self._rows.append(x.reshape(len(x), -1).cpu().numpy().astype(np.float64))
        else:
            y = output.detach().float().flatten(2)  # (n, c, voxels)
            mean = y.mean(dim=2)
            log_std = (y.std(dim=2) + 1e-6).log()
            self._rows.append(np.concatenate([mean.cpu().numpy(), log_std.cpu().numpy()], 1))

    def vectors(self) -> NDArray[np.float64]:
        """Every row collected, ``(n, d)``."""
        if not self._rows:
            raise InvalidInputError(f"layer {self.layer}", "produced no features")
        return np.concatenate(self._rows).astype(np.float64)

    def pooled(self) -> NDArray[np.float64]:
        """The mean row (one input cut into sliding windows), ``(d,)``."""
        return self.vectors().mean(axis=0)

    def clear(self) -> None:
        """Forget the rows collected so far."""
        self._rows.clear()


@contextlib.contextmanager
def capture(net: torch.nn.Module, kind: str) -> Iterator[FeatureGrab]:
    """Hook the feature layer of ``net`` (``kind``: classifier or segmentation)."""
    name, module = feature_layer(net, kind)
    grab = FeatureGrab(name, kind)
    handle = module.register_forward_hook(grab.hook)
    try:
        yield grab
    finally:
        handle.remove()


def package_features(
    package: Any,
    images: Iterable[Image],
    *,
    progress: Callable[[int], None] | None = None,
) -> NDArray[np.float64]:
    """The feature vector of every image through ``package``'s inference path ``(n, d)``.

    Classifiers: the package's preprocessing, then the penultimate layer.  Segmentation: the
    bottleneck features over the sliding windows (:class:`~medsight.inference.segment.Segmenter`
    without mirroring).  ``progress(i)`` is called after each image.
    """
    from medsight.models.spec import Task

    rows = []
    if package.spec.task is Task.SEGMENTATION:
        from medsight.inference.segment import Segmenter

        seg = Segmenter(package, device="cpu", tta=False, postprocess=False)
        for i, image in enumerate(images):
            result = seg(image, features=True)
            assert result.features is not None
            rows.append(result.features)
            if progress is not None:
                progress(i + 1)
        return np.stack(rows)
    from medsight.inference.classify import Predictor

    predictor = Predictor(package, tta=False)  # the identity view, as the reference was fitted
    with capture(predictor.network, "classifier") as grab:
        batch: list[NDArray[np.float32]] = []
        for i, image in enumerate(images):
            batch.append(predictor.preprocess(image))
            if len(batch) == 256:
                predictor.predict_arrays(np.stack(batch))
                batch.clear()
            if progress is not None:
                progress(i + 1)
        if batch:
            predictor.predict_arrays(np.stack(batch))
    return grab.vectors()
