"""Detection inference: lesions as boxes with a score and a class.

The contract every detection predictor keeps: ``Detector(package).detect(image)`` returns a
list of :class:`Detection` in the index space of ``image`` (the axes of
:class:`~medsight.core.image.Image`), highest score first.

:class:`Detector` runs a ``detection`` ModelPackage (MONAI RetinaNet,
:mod:`medsight.models.retinanet`): the package's preprocessing (resize to
``preprocessing.size`` when set, intensity normalisation, channels;
:func:`medsight.transforms.preprocess.to_network_input`, the same call as in training) is
applied, MONAI's ``RetinaNetDetector`` decodes the anchors, runs its box selector (score floor,
NMS) and the boxes are mapped back to the input's index space and clipped to the image.  A
package trained on patches (``extra.detector.patch_size``: large images such as CT, at their
own resolution) runs MONAI's sliding-window inferer over the whole image.  With the ONNX
backend (``backend="onnx"``, ``--backend onnx`` or the default measured at export) only
RetinaNet's forward pass runs in ONNX Runtime (its head outputs,
:func:`medsight.inference.onnx_families.onnx_head_module`); the anchors, box decoding, score
floor and NMS are MONAI's, as on torch.

Coordinates: MONAI boxes are in pixel-edge coordinates of the network input (``0`` is the
outer edge of the first pixel); a resize scales edges by ``size / shape`` per axis, so
:func:`regions_to_boxes` and :func:`boxes_to_regions` are exact inverses.  ``detect`` returns
every candidate down to the package's score floor (``extra.detector.score_floor``), which
FROC evaluation needs; the operating threshold chosen on validation
(:attr:`Detector.threshold`, ``thresholds["score"]``) is the decision a report uses.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.core.findings import Region
from medsight.core.image import Image
from medsight.core.task import Task
from medsight.models.package import ModelPackage
from medsight.transforms.preprocess import to_network_input

__all__ = ["Detection", "Detector", "boxes_to_regions", "network_scale", "regions_to_boxes"]


@dataclasses.dataclass(frozen=True)
class Detection:
    """One detected lesion.

    Parameters
    ----------
    region : Region
        Box (or circle / sphere) in voxel index coordinates of the input image.
    score : float
        The model's confidence in [0, 1] (calibrated where the package says so).
    label : int
        Class index into the package's labels (0-based over the foreground classes).
    """

    region: Region
    score: float
    label: int = 0


def network_scale(shape: Sequence[int], size: Sequence[int] | None) -> NDArray[np.float64]:
    """Per-axis factor from image pixels to network-input pixels (1 without a resize).

    >>> network_scale((512, 256), [256, 256]).tolist()
    [0.5, 1.0]
    """
    if size is None:
        return np.ones(len(shape))
    return np.asarray(size, dtype=float) / np.asarray(shape, dtype=float)


def regions_to_boxes(regions: Sequence[Region], scale: Sequence[float]) -> NDArray[np.float32]:
    """Regions (index space) to MONAI corner boxes ``[lo..., hi...]`` in network pixels.

    >>> regions_to_boxes([Region((4.5, 9.5), (10, 4))], [0.5, 1.0]).tolist()
    [[0.0, 8.0, 5.0, 12.0]]
    """
    s = np.asarray(scale, dtype=float)
    out = np.zeros((len(regions), 2 * len(s)), dtype=np.float32)
    for n, r in enumerate(regions):
        c, z = np.asarray(r.center), np.asarray(r.size)
        out[n] = np.concatenate([(c - z / 2 + 0.5) * s, (c + z / 2 + 0.5) * s])
    return out


def boxes_to_regions(
    boxes: NDArray[Any], scale: Sequence[float], shape: Sequence[int]
) -> list[Region]:
    """MONAI corner boxes in network pixels to Regions in the image's index space, clipped.

    >>> boxes_to_regions(np.array([[0.0, 8.0, 5.0, 12.0]]), [0.5, 1.0], (8, 20))[0]
    Region(center=(3.5, 9.5), size=(8.0, 4.0), shape='box')
    """
    s = np.asarray(scale, dtype=float)
    n = len(s)
    limit = np.asarray(shape, dtype=float)
    out = []
    for b in np.asarray(boxes, dtype=float).reshape(-1, 2 * n):
        lo = np.clip(b[:n] / s, 0.0, limit)
        hi = np.clip(b[n:] / s, 0.0, limit)
        hi = np.maximum(hi, lo)
        out.append(Region(tuple((lo + hi) / 2 - 0.5), tuple(hi - lo)))
    return out


class Detector:
    """A detection ModelPackage, ready to run on Images.

    Parameters
    ----------
    package : ModelPackage or path
        A package of task ``detection``.
    device : str
        ``auto``, ``cpu`` or ``cuda[:i]``.
    backend : {"torch", "onnx"}, optional
        Default: :func:`medsight.inference.onnx_backend.resolve_backend` (``--backend``, else
        the package's measured default, else torch).  ONNX runs the exported RetinaNet (its
        class and box maps per pyramid level) on CPU; MONAI's anchors, box decoding, score
        floor and NMS run on its outputs as on torch's.

    Raises
    ------
    InvalidInputError
        The package is not a detector, or ``backend`` names an export it lacks or one whose
        file changed.
    """

    def __init__(
        self,
        package: ModelPackage | str | os.PathLike[str],
        device: str = "auto",
        *,
        backend: str | None = None,
    ) -> None:
        from medsight.inference.onnx_backend import onnx_network, resolve_backend
        from medsight.inference.onnx_families import onnx_head_module
        from medsight.models.device import select_device
        from medsight.models.retinanet import build_detector

        pkg = ModelPackage.of_task(package, Task.DETECTION, "a detector (task detection)")
        self.backend = resolve_backend(pkg, backend)
        self._package = pkg
        self._device = select_device(device)
        settings = dict(pkg.spec.extra.get("detector", {}))
        self._floor = float(settings.get("score_floor", 0.02))
        net = pkg.build_network().float()
        self._detector = build_detector(
            net,
            score_thresh=self._floor,
            nms_thresh=float(settings.get("nms_iou", 0.22)),
            detections_per_img=int(settings.get("max_detections", 100)),
            patch_size=settings.get("patch_size"),
        ).to(self._device)
        if self.backend != "torch":  # the exported heads; anchors, decoding and NMS stay here
            self._detector.network = onnx_head_module(onnx_network(pkg, self.backend))
        self._sliding = settings.get("patch_size") is not None
        self._detector.eval()

    @property
    def package(self) -> ModelPackage:
        """The model package."""
        return self._package

    @property
    def threshold(self) -> float:
        """The operating score threshold chosen on validation (the floor when none is stored)."""
        return float(self._package.spec.thresholds.get("score", self._floor))

    @property
    def labels(self) -> list[str]:
        """Foreground class names in index order."""
        return self._package.spec.label_names

    def _check(self, image: Image) -> None:
        spec = self._package.spec
        if image.spatial_ndim != spec.input.spatial_ndim:
            raise InvalidInputError(
                "image",
                f"is {image.spatial_ndim}D; {self._package.id} detects in "
                f"{spec.input.spatial_ndim}D images",
            )
        if image.n_channels not in (1, spec.input.channels) and spec.preprocessing.channels != 1:
            raise InvalidInputError(
                "image", f"has {image.n_channels} channels; the model takes {spec.input.channels}"
            )

    def detect(self, image: Image, *, min_score: float | None = None) -> list[Detection]:
        """Lesions in ``image``: index-space regions, highest score first, clipped to the image.

        Parameters
        ----------
        image : Image
            2D or 3D as the package says.
        min_score : float, optional
            Drop detections scoring below it (default: keep all above the package's floor).

        Raises
        ------
        InvalidInputError
            The image's dimensionality or channels do not fit the package.
        """
        return self.detect_many([image], min_score=min_score)[0]

    def detect_many(
        self, images: Sequence[Image], *, min_score: float | None = None
    ) -> list[list[Detection]]:
        """:meth:`detect` for several images (one forward pass per image)."""
        import torch

        from medsight.inference.cache import model_lock

        spec = self._package.spec
        out: list[list[Detection]] = []
        for image in images:
            self._check(image)
            x = to_network_input(image, spec.preprocessing)
            scale = network_scale(image.shape, spec.preprocessing.size)
            # MONAI's detector keeps the last image shape's anchors on itself between calls:
            # a cached Detector shared by threads runs one image at a time
            with torch.no_grad(), model_lock(self._detector):
                result = self._detector(
                    [torch.from_numpy(x).to(self._device)], use_inferer=self._sliding
                )[0]
            boxes = result["boxes"].float().cpu().numpy()
            scores = result["labels_scores"].float().cpu().numpy()
            labels = result["labels"].cpu().numpy()
            regions = boxes_to_regions(boxes, scale, image.shape)
            found = [
                Detection(region, float(score), int(label))
                for region, score, label in zip(regions, scores, labels, strict=True)
                if min_score is None or score >= min_score
            ]
            found.sort(key=lambda d: -d.score)
            out.append(found)
        return out
