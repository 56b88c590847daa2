"""Network registry: an architecture name plus keyword arguments -> a torch module.

Every built-in entry is a MONAI network, called with the arguments stored in the package's
``ArchitectureSpec.args`` exactly as MONAI names them (so MONAI's documentation is the
reference).  Plug-ins add their own with :func:`register_network`.

Examples
--------
>>> from medsight.models.spec import ArchitectureSpec
>>> net = build_network(ArchitectureSpec(name="unet", args=dict(
...     spatial_dims=2, in_channels=1, out_channels=3, channels=[4, 8], strides=[2])))
>>> type(net).__name__
'UNet'
>>> "resnet18" in available_networks() and "dynunet" in available_networks()
True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from medsight.core.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

    from medsight.models.spec import ArchitectureSpec

__all__ = ["available_networks", "build_network", "register_network"]

#: name -> "module:attribute" of a MONAI network class or factory.
_BUILTIN: dict[str, str] = {
    # classification
    "classifier": "monai.networks.nets:Classifier",  # small strided CNN, suits 28-64 px inputs
    "smallcnn": "medsight.models.smallcnn:SmallCNN",  # MONAI conv blocks; encoder + head
    "ensemble": "medsight.models.ensemble:EnsembleNet",  # seed / fold ensemble of the above
    "resnet10": "monai.networks.nets:resnet10",
    "resnet18": "monai.networks.nets:resnet18",
    "resnet34": "monai.networks.nets:resnet34",
    "resnet50": "monai.networks.nets:resnet50",
    "densenet121": "monai.networks.nets:DenseNet121",
    "efficientnet": "monai.networks.nets:EfficientNetBN",
    "seresnet50": "monai.networks.nets:SEResNet50",
    "vit": "monai.networks.nets:ViT",
    # segmentation
    "unet": "monai.networks.nets:UNet",
    "basicunet": "monai.networks.nets:BasicUNet",
    "attentionunet": "monai.networks.nets:AttentionUnet",
    "dynunet": "monai.networks.nets:DynUNet",
    "segresnet": "monai.networks.nets:SegResNet",
    "unetr": "monai.networks.nets:UNETR",
    "swinunetr": "monai.networks.nets:SwinUNETR",
    # generative / self-supervised
    "autoencoder": "monai.networks.nets:AutoEncoder",
    "vitautoenc": "monai.networks.nets:ViTAutoEnc",
    "diffusion_unet": "monai.networks.nets:DiffusionModelUNet",  # synthesis (DDPM)
    # detection: MONAI RetinaNet on a small ResNet + FPN (anchors in the arguments)
    "retinanet": "medsight.models.retinanet:build_retinanet",
    # risk (image embeddings + clinical variables, one visit or a sequence)
    "risk_fusion": "medsight.models.fusion:RiskNet",
}
_PLUGINS: dict[str, Callable[..., Any]] = {}


def register_network(name: str, factory: Callable[..., torch.nn.Module]) -> None:
    """Add a network factory under ``name`` (keyword arguments come from the spec)."""
    key = name.lower()
    if key in _BUILTIN or key in _PLUGINS:
        raise InvalidInputError(f"network {name!r}", "is already registered")
    _PLUGINS[key] = factory


def available_networks() -> list[str]:
    """All registered names, sorted."""
    return sorted({*_BUILTIN, *_PLUGINS})


def _factory(name: str) -> Callable[..., Any]:
    key = name.lower()
    if key in _PLUGINS:
        return _PLUGINS[key]
    if key not in _BUILTIN:
        raise InvalidInputError(
            f"architecture {name!r}",
            "is not a registered network",
            hint=f"choose one of {', '.join(available_networks())}",
        )
    module, attr = _BUILTIN[key].split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise InvalidInputError(
            f"architecture {name!r}",
            f"needs a missing library: {exc.name}",
            hint="install medsight with the [ml] extra (torch, monai)",
        ) from None


def build_network(spec: ArchitectureSpec) -> torch.nn.Module:
    """Instantiate ``spec.name`` with ``spec.args``.

    Raises
    ------
    InvalidInputError
        Unknown name, or arguments the network does not accept.
    """
    factory = _factory(spec.name)
    try:
        return factory(**spec.args)
    except TypeError as exc:
        raise InvalidInputError(
            f"architecture {spec.name!r}", f"bad arguments {sorted(spec.args)}: {exc}"
        ) from None
