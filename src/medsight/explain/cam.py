"""Grad-CAM and occlusion sensitivity for classifiers, through MONAI's implementations.

The network sees a preprocessed tensor (resized, normalised); the map MONAI returns lives on
that tensor's grid.  :func:`explain_classifier` resizes it back to the original Image, so the
heatmap is an Image with exactly the input's shape and affine and can be overlaid or stored.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import torch

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.transforms.preprocess import resize

__all__ = ["ExplainMethod", "explain_classifier", "last_conv_layer"]


class ExplainMethod(StrEnum):
    """Which saliency method to use."""

    GRAD_CAM = "gradcam"
    OCCLUSION = "occlusion"


def last_conv_layer(network: torch.nn.Module) -> str:
    """Name of the last convolution in ``network`` (Grad-CAM's usual target layer).

    Examples
    --------
    >>> conv = torch.nn.Conv2d
    >>> last_conv_layer(torch.nn.Sequential(conv(1, 4, 3), torch.nn.ReLU(), conv(4, 8, 3)))
    '2'
    """
    name = None
    for module_name, module in network.named_modules():
        if isinstance(module, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Conv3d):
            name = module_name
    if name is None:
        raise InvalidInputError("network", "has no convolution layer for Grad-CAM; use occlusion")
    return name


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def explain_classifier(
    network: torch.nn.Module,
    tensor: torch.Tensor,
    image: Image,
    class_index: int,
    *,
    method: ExplainMethod | str = ExplainMethod.GRAD_CAM,
    target_layer: str | None = None,
) -> Image:
    """A saliency map for ``class_index`` on the grid of the original ``image``.

    Parameters
    ----------
    network : torch.nn.Module
        The classifier (eval mode).
    tensor : torch.Tensor
        The preprocessed input, shape ``(1, C, *spatial)``, whose spatial axes correspond to
        ``image``'s index axes (same order, possibly resized).
    image : Image
        The original image; the result has its shape and affine.
    class_index : int
        The output to explain.
    method : ExplainMethod
        Grad-CAM (default) or occlusion sensitivity.

    Returns
    -------
    Image
        float32 values in [0, 1], ``meta["explanation"]`` names the method.
    """
    method = ExplainMethod(method)
    if tensor.ndim != image.spatial_ndim + 2 or tensor.shape[0] != 1:
        raise InvalidInputError(
            "tensor", f"shape {tuple(tensor.shape)} is not (1, C, *spatial) for this image"
        )
    network = network.eval()
    if method == ExplainMethod.GRAD_CAM:
        from monai.visualize import GradCAM

        # MONAI's default post-processing maps (min, max) to (1, 0), i.e. it flips the map;
        # keep the raw map and normalise below so that 1 means "most evidence".
        cam = GradCAM(
            network,
            target_layers=target_layer or last_conv_layer(network),
            postprocessing=_identity,
        )
        with torch.enable_grad():
            heat = cam(tensor.detach().clone().requires_grad_(True), class_idx=class_index)
        heat_np = heat.detach()[0, 0].cpu().numpy()
    else:
        from monai.visualize import OcclusionSensitivity

        spatial = tensor.shape[2:]
        mask_size = [max(2, s // 7) for s in spatial]
        occ = OcclusionSensitivity(network, mask_size=mask_size, n_batch=16, verbose=False)
        with torch.no_grad():
            occ_map, _ = occ(tensor)
        # occlusion map: drop of the class score when a region is hidden -> importance
        heat_np = -occ_map[0, class_index].cpu().numpy()
    heat_np = np.nan_to_num(heat_np.astype(np.float32))
    heat_np = heat_np - heat_np.min()
    if heat_np.max() > 0:
        heat_np = heat_np / heat_np.max()
    # bilinear / trilinear back to the image grid: medsight's one resize, channels first
    resized = resize(heat_np[None], image.shape)[0].clip(0, 1).astype(np.float32)
    return Image(
        resized,
        image.affine,
        spatial_ndim=image.spatial_ndim,
        modality=image.modality,
        source=image.source,
        meta={"explanation": method.value, "class_index": class_index},
    )
