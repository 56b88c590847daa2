"""MONAI's DynUNet with a state dict that lists every tensor once, and its registration."""

from __future__ import annotations

from typing import Any

from medsight.models.seg_plan import SEG_NETWORK

__all__ = ["SEG_NETWORK", "register_segmentation_networks"]


def _dynunet_single(**kwargs: Any) -> Any:
    """MONAI ``DynUNet`` whose state dict lists every tensor once.

    DynUNet registers its blocks twice (``input_block`` ... and again under ``skip_layers``), so
    its state dict holds each weight under two names, which doubles a package's size and which
    safetensors refuses.  The alias names are dropped when saving and filled back in from their
    canonical names when loading; the network itself is unchanged.
    """
    from monai.networks.nets import DynUNet

    net = DynUNet(**kwargs)
    first: dict[int, str] = {}
    alias: dict[str, str] = {}
    for key, tensor in net.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            alias[key] = first[id(tensor)]
        else:
            first[id(tensor)] = key

    def drop(module: Any, state: dict[str, Any], prefix: str, local: Any) -> None:
        for key in alias:
            state.pop(prefix + key, None)

    def fill(state: dict[str, Any], prefix: str, *args: Any) -> None:
        for key, canonical in alias.items():
            if prefix + key not in state and prefix + canonical in state:
                state[prefix + key] = state[prefix + canonical]

    net._register_state_dict_hook(drop)
    net._register_load_state_dict_pre_hook(fill)
    return net


def register_segmentation_networks() -> None:
    """Add :data:`SEG_NETWORK` to the network registry (idempotent)."""
    from medsight.models.registry import available_networks, register_network

    if SEG_NETWORK not in available_networks():
        register_network(SEG_NETWORK, _dynunet_single)
