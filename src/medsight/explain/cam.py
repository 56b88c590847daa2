"""Grad-CAM and occlusion sensitivity for classifiers.

The network sees a preprocessed tensor (resized, normalised); the map lives on that tensor's
grid.  :func:`explain_classifier` resizes it back to the original Image, so the heatmap is an
Image with exactly the input's shape and affine and can be overlaid or stored.

Occlusion sensitivity is MONAI's ``OcclusionSensitivity`` (forward passes only).  Grad-CAM is
:func:`grad_cam`, MONAI's ``GradCAM`` arithmetic (channel weights = spatial mean of the
gradient of the class score at the target layer, ReLU of the weighted sum of its activation,
MONAI's linear upsampling) with per-call state: MONAI's ``GradCAM`` registers a forward and a
backward hook on the target layer that it never removes and that store every later forward
pass's activation on the hook object.  On a network shared between threads (the service's
model cache, :mod:`medsight.inference.cache`) that leaks one hook pair per explanation and lets
one thread's forward pass overwrite another's activation.  :func:`grad_cam` instead hooks the
layer for one forward pass of the calling thread only, takes the gradient with
``torch.autograd.grad`` (nothing is accumulated in the parameters' ``.grad``) and removes the
hook before it returns, so concurrent calls on one network give each exactly its own map.
"""

from __future__ import annotations

import threading
from enum import StrEnum
from typing import Any

import numpy as np
import torch

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.transforms.preprocess import resize

__all__ = ["ExplainMethod", "explain_classifier", "grad_cam", "last_conv_layer"]


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


def _module(network: torch.nn.Module, name: str) -> torch.nn.Module:
    for module_name, module in network.named_modules():
        if module_name == name:
            return module
    raise InvalidInputError(f"target layer {name!r}", "is not a layer of the network")


def grad_cam(
    network: torch.nn.Module, tensor: torch.Tensor, class_index: int, target_layer: str
) -> torch.Tensor:
    """The raw Grad-CAM map ``(N, 1, *spatial)`` of ``tensor`` on its own grid.

    The same arithmetic as MONAI's ``GradCAM`` with ``postprocessing`` the identity, without
    its permanent hooks (see the module notes): safe to call from several threads on one
    network.  The target layer's output is cloned for the rest of the forward pass, so an
    in-place operation after the layer cannot change the activation the map is made of.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Flatten(),
    ...     torch.nn.Linear(2 * 8 * 8, 3))
    >>> heat = grad_cam(net.eval(), torch.rand(1, 1, 8, 8), 2, "0")
    >>> tuple(heat.shape), bool((heat >= 0).all()), len(net[0]._forward_hooks)
    ((1, 1, 8, 8), True, 0)
    """
    from monai.visualize.visualizer import default_upsampler

    from medsight.inference.classify import logits_of

    layer = _module(network, target_layer)
    thread = threading.get_ident()
    seen: list[torch.Tensor] = []

    def keep(_module: Any, _args: Any, output: Any) -> Any:
        if threading.get_ident() != thread or seen or not isinstance(output, torch.Tensor):
            return None  # another thread's forward pass through the shared layer
        seen.append(output)
        return output.clone()

    handle = layer.register_forward_hook(keep)
    try:
        x = tensor.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = logits_of(network(x))
            if not seen:
                raise InvalidInputError(
                    f"target layer {target_layer!r}", "produced no tensor output for Grad-CAM"
                )
            acti = seen[0]
            score = logits[:, class_index].squeeze()
            (grad,) = torch.autograd.grad(score.sum(), acti)
    finally:
        handle.remove()
    b, c, *spatial = grad.shape
    weights = grad.reshape(b, c, -1).mean(2).reshape(b, c, *[1] * len(spatial))
    acti_map = torch.relu((weights * acti.detach()).sum(1, keepdim=True))
    return default_upsampler(tuple(tensor.shape[2:]))(acti_map)  # type: ignore[no-any-return]


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

    The map explains ``network`` on ``tensor`` itself, the identity view: a package with
    test-time augmentation (:mod:`medsight.models.tta`) reports the average over its flipped
    views, but its explanation stays on the unflipped input, the image as the reader sees it.

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
    if network.training:  # a shared (cached) network is in eval mode: write nothing to it
        network.eval()
    if method == ExplainMethod.GRAD_CAM:
        # the raw map (MONAI's default post-processing would flip it), normalised below so
        # that 1 means "most evidence"
        heat = grad_cam(network, tensor, class_index, target_layer or last_conv_layer(network))
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
