"""Segment an Image with a segmentation ModelPackage; the mask comes back on the input's grid.

One call for a DICOM series, a NIfTI volume or a 2D picture: the image is reoriented, normalised
and resampled as the package's ``plan.json`` says, predicted by sliding windows with Gaussian
blending (``monai.inferers.sliding_window_inference``), optionally averaged over mirrored copies
(test-time augmentation), mapped back to the input grid (probabilities resampled linearly, then
argmax), and post-processed with the largest-connected-component rule for the labels where the
validation data showed that it helps (``spec.extra["postprocessing"]``).  The mask is the input
Image's :meth:`~medsight.core.Image.with_array`: same shape, same affine, same source.

A region-based package (``spec.extra["regions"]``, :mod:`medsight.models.seg_regions`) has one
sigmoid output per region: its region probabilities are mapped back to the input grid the same
way, then turned into the label map (each region at ``p > 0.5``, painted from the largest to
the smallest region with the label it adds), and the post-processing applies to that map.

Examples
--------
>>> import numpy as np
>>> m = np.zeros((6, 6), np.int16); m[0:2, 0:2] = 1; m[3:6, 3:6] = 1
>>> keep_largest_component(m, [1]).sum()
np.int64(9)
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.models.dynunet import register_segmentation_networks
from medsight.models.seg_plan import PLAN_FILE, SegmentationPlan
from medsight.transforms.seg_plan import prepare_image, restore_array

if TYPE_CHECKING:
    import torch

    from medsight.models.package import ModelPackage

__all__ = ["SegmentationResult", "Segmenter", "keep_largest_component", "sliding_window_probs"]


@dataclasses.dataclass(frozen=True)
class SegmentationResult:
    """A label mask on the input grid, and optionally the class probabilities.

    ``mask`` has the input's shape and affine (int16 label values); ``probabilities`` is
    ``(*shape, n_classes)`` float32 when requested; ``features`` the network's bottleneck
    feature vector averaged over the sliding windows (:mod:`medsight.inference.features`,
    for OOD scoring) when requested.  For a region-based package ``region_probabilities``
    (``(*shape, n_regions)``, the sigmoid outputs) comes with ``probabilities``, which are
    then the per-label probabilities derived from them
    (:func:`medsight.models.seg_regions.label_probabilities`).
    """

    mask: Image
    probabilities: np.ndarray | None
    label_names: dict[int, str]
    postprocessed: tuple[int, ...] = ()
    features: np.ndarray | None = None
    region_probabilities: np.ndarray | None = None


def keep_largest_component(mask: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Keep only the largest connected component (face connectivity) of each label given."""
    from scipy import ndimage

    out = np.array(mask, copy=True)
    for label in labels:
        comp, n = ndimage.label(out == label)
        if n > 1:
            sizes = np.bincount(comp.ravel())[1:]
            out[(comp > 0) & (comp != int(np.argmax(sizes)) + 1)] = 0
    return out


def sliding_window_probs(
    net: torch.nn.Module,
    array: np.ndarray | torch.Tensor,
    plan: SegmentationPlan,
    *,
    tta: bool = False,
    overlap: float = 0.5,
    device: torch.device | str = "cpu",
    sw_batch_size: int = 8,
    crop: bool = False,
    aligned: bool = False,
    stats: dict[str, Any] | None = None,
    sigmoid: bool = False,
) -> torch.Tensor:
    """Softmax probabilities ``(n_classes, *spatial)`` of ``(C, *spatial)`` input.

    With ``sigmoid`` (a region-based network) the sigmoid probabilities ``(n_regions,
    *spatial)`` instead, 0 for every region outside the crop.

    Gaussian-weighted sliding windows of the plan's patch size; with ``tta`` the mean over all
    mirrorings of the spatial axes (4 in 2D, 8 in 3D).  With ``crop`` (the Segmenter's default)
    the windows cover only the foreground box and windows that are all background run once
    (:func:`medsight.inference.windows.sliding_window_logits`, the rule is stated there);
    ``crop=False`` (the default here, e.g. training's validation) is MONAI's
    ``sliding_window_inference`` result.  ``aligned`` selects the grid-aligned crop (what a
    call asking for features uses); ``stats`` is filled by the un-mirrored pass (see
    :func:`~medsight.inference.windows.sliding_window_logits`).
    """
    import torch

    from medsight.inference.windows import sliding_window_logits

    x = torch.as_tensor(array, dtype=torch.float32, device=device)[None]
    axes = list(range(2, 2 + plan.spatial_ndim))
    flips: list[tuple[int, ...]] = [()]
    if tta:
        flips = [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]
    total = None
    with torch.no_grad():
        for i, f in enumerate(flips):
            xf = torch.flip(x, f) if f else x
            logits = sliding_window_logits(
                net,
                xf,
                tuple(plan.patch_size),
                overlap=overlap,
                sw_batch_size=sw_batch_size,
                crop=crop,
                skip_background=crop,
                aligned=aligned,
                stats=stats if i == 0 else None,
                background_class=not sigmoid,
            )
            if isinstance(logits, (tuple, list)):
                logits = logits[0]
            p = torch.sigmoid(logits.float()) if sigmoid else torch.softmax(logits.float(), dim=1)
            p = torch.flip(p, f) if f else p
            total = p if total is None else total + p
    assert total is not None
    return (total / len(flips))[0]


class Segmenter:
    """A loaded segmentation package, ready to segment Images.

    Parameters
    ----------
    package : ModelPackage or path
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:n]"``.
    tta : bool
        Mirror test-time augmentation.
    postprocess : bool
        Apply the package's largest-component rule (chosen on validation data).
    backend : {"torch", "onnx", "onnx-int8"}, optional
        Default: :func:`medsight.inference.onnx_backend.resolve_backend` (``--backend``, else
        the package's measured default, else torch).  ONNX Runtime runs the windows on the CPU;
        a call asking for ``features`` runs on torch (the bottleneck is not an ONNX output).
    crop : bool
        Windows only over the foreground box, background windows run once
        (:mod:`medsight.inference.windows`); ``False``: MONAI's sliding window over the whole
        input.  A call asking for ``features`` (the OOD gate) crops to the grid-aligned box
        instead: the OOD reference pooled the features of every window of the uncropped grid,
        and the windows left out are all background, counted as one background window each,
        so the pooled features are unchanged.

    Raises
    ------
    InvalidInputError
        The package is not a segmentation model or lacks its ``plan.json``.
    """

    def __init__(
        self,
        package: ModelPackage | str | os.PathLike[str],
        *,
        device: str = "auto",
        tta: bool = False,
        postprocess: bool = True,
        backend: str | None = None,
        crop: bool = True,
    ) -> None:
        from medsight.inference.onnx_backend import onnx_network, resolve_backend
        from medsight.models.device import select_device
        from medsight.models.package import ModelPackage
        from medsight.models.spec import Task

        pkg = ModelPackage.of_task(package, Task.SEGMENTATION, "segmentation")
        plan_path = Path(pkg.path) / PLAN_FILE
        if not plan_path.is_file():
            raise InvalidInputError(plan_path, "is missing: a segmentation package needs its plan")
        self.package = pkg
        self.plan = SegmentationPlan.load(plan_path)
        register_segmentation_networks()
        self.backend = resolve_backend(pkg, backend)
        if self.backend == "torch":
            self.device = select_device(device)
            self.net: Any = pkg.build_network().to(self.device)
            self.torch_net: Any = self.net
        else:
            self.device = select_device("cpu")
            self.net = onnx_network(pkg, self.backend)
            self.torch_net = None  # loaded when a call asks for features
        self._torch_lock = threading.Lock()  # a cached Segmenter is shared between threads
        self.tta = tta
        rules: dict[str, Any] = pkg.spec.extra.get("postprocessing", {})
        self.lcc_labels = tuple(int(k) for k, v in rules.items() if v == "largest_component")
        self.postprocess = postprocess
        self.crop = crop
        #: region-based package: its regions, largest first (None: one softmax output a label)
        self.regions: list[list[int]] | None = pkg.spec.extra.get("regions") or None

    def _pooled_features(self, net: Any, rows: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
        """The mean feature row over every window of the *uncropped* window grid.

        ``rows`` holds one row per window the network ran, the un-mirrored pass first (every
        mirrored pass cuts its own windows: only the first pass counts).  Windows the pass did
        not run (outside the grid-aligned crop, or all-background windows reused) all had the
        same constant input, the background value: their row is computed once here and counted
        once per such window, so the result equals the uncropped run's mean (up to float
        round-off).
        """
        import torch

        from medsight.inference.features import capture

        total = stats.get("windows_total")
        run = stats.get("windows_run")
        passes = 2**self.plan.spatial_ndim if self.tta else 1
        first = rows[: run if run is not None else (total or len(rows) // passes)]
        missing = 0 if total is None else total - len(first)
        if missing <= 0:
            return first.mean(axis=0)
        channels = int(self.package.spec.input.channels)
        blank = torch.full(
            (1, channels, *self.plan.patch_size),
            float(stats["background"]),
            dtype=torch.float32,
            device=self.device,
        )
        with capture(net, "segmentation") as grab, torch.no_grad():
            net(blank)
        background_row = grab.vectors()[0]
        return (first.sum(axis=0) + missing * background_row) / total

    def _as_image(self, image: Image | str | os.PathLike[str]) -> Image:
        if isinstance(image, Image):
            return image
        from medsight.io import read_image

        return read_image(image)

    def __call__(
        self,
        image: Image | str | os.PathLike[str],
        *,
        probabilities: bool = False,
        features: bool = False,
    ) -> SegmentationResult:
        """Segment one image (an Image, or a path to a DICOM series, NIfTI or PNG/JPEG).

        ``features`` also returns the bottleneck feature vector of the un-mirrored pass.
        """
        from medsight.inference.features import capture

        img = self._as_image(image)
        want = self.package.spec.input.channels
        if img.has_channels and img.n_channels != want:
            if want != 1:
                raise InvalidInputError(
                    "image", f"has {img.n_channels} channels, the model takes {want}"
                )
            img = img.with_array(np.asarray(img.array, dtype=np.float32).mean(axis=-1))
        prepared = prepare_image(img, self.plan)
        net = self.net
        if features:  # the feature hook needs the torch network
            if self.torch_net is None:
                with self._torch_lock:  # built once, whichever thread asks first
                    if self.torch_net is None:
                        self.torch_net = self.package.build_network().to(self.device)
            net = self.torch_net
        stats: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            grab = stack.enter_context(capture(net, "segmentation")) if features else None
            # with features: the grid-aligned crop, so the pooled features stay those of the
            # uncropped window grid (see _pooled_features)
            probs = sliding_window_probs(
                net,
                prepared.array,
                self.plan,
                tta=self.tta,
                device=self.device,
                crop=self.crop,
                aligned=features,
                stats=stats,
                sigmoid=self.regions is not None,
            )
        vector = None
        if grab is not None:
            vector = self._pooled_features(net, grab.vectors(), stats)
        back = restore_array(probs.cpu().numpy(), prepared)
        regions_back = None
        if self.regions is not None:
            from medsight.models.seg_regions import label_probabilities, regions_to_labels

            mask = regions_to_labels(back, self.regions)
            regions_back = back
            if probabilities:
                back = label_probabilities(back, self.regions, self.plan.n_classes)
        else:
            mask = np.argmax(back, axis=0).astype(np.int16)
        applied: tuple[int, ...] = ()
        if self.postprocess and self.lcc_labels:
            mask = keep_largest_component(mask, self.lcc_labels)
            applied = self.lcc_labels
        source = image if isinstance(image, Image) else img
        out = source.with_array(mask) if not source.has_channels else img.with_array(mask)
        return SegmentationResult(
            mask=out,
            probabilities=np.moveaxis(back, 0, -1) if probabilities else None,
            label_names=dict(self.plan.label_names),
            postprocessed=applied,
            features=vector,
            region_probabilities=(
                np.moveaxis(regions_back, 0, -1)
                if probabilities and regions_back is not None
                else None
            ),
        )
