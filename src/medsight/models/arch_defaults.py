"""Architecture defaults: registry arguments and input size fitted to a data set's images.

The network a classification run builds when the config names only an architecture: its
registry arguments (:func:`default_arch_args`, for :func:`medsight.models.registry.build_network`)
and its input size (:func:`default_size`).  They live in the models layer, beside the registry
they feed, so that any task family's trainer (and self-supervised pretraining) reads the same
defaults.

Examples
--------
>>> from medsight.models.arch_defaults import default_arch_args, default_size
>>> size = default_size([500, 430])
>>> size
[128, 128]
>>> args = default_arch_args("smallcnn", 2, 3, 5, size)
>>> args["channels"], args["out_channels"], args["stem_stride"]
([32, 64, 128], 5, 1)
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_DEFAULT_EDGE", "default_arch_args", "default_size", "stem_stride"]

#: largest default input edge (2D, 3D); bigger images are resized down to it
MAX_DEFAULT_EDGE = {2: 128, 3: 64}


def stem_stride(spatial_ndim: int, size: list[int] | None) -> int:
    """The stride of the small CNN's stem for inputs of ``spatial_ndim`` dimensions and ``size``.

    2D: none; 3D: 2, or 4 above 32 voxels a side, so that the first stage works on a grid of
    at most 16 voxels a side and a 64^3 volume costs about what a 28^3 one does.

    Parameters
    ----------
    spatial_ndim : int
        2 or 3.
    size : list of int or None
        The network input size; ``None`` (unknown) counts as small.

    Returns
    -------
    int
        1, 2 or 4.

    Examples
    --------
    >>> stem_stride(2, [128, 128]), stem_stride(3, [28] * 3), stem_stride(3, [64] * 3)
    (1, 2, 4)
    >>> stem_stride(3, None)
    2
    """
    if spatial_ndim == 2:
        return 1
    return 4 if size and max(size) > 32 else 2


def default_arch_args(
    arch: str,
    spatial_ndim: int,
    in_channels: int,
    n_outputs: int,
    size: list[int] | None = None,
) -> dict[str, Any]:
    """Registry arguments for ``arch`` fitted to the input and the number of outputs.

    Parameters
    ----------
    arch : str
        The registry name (case-insensitive): ``smallcnn``, ``classifier``, ``resnet*``,
        ``seresnet50``, ``densenet121``, ``efficientnet`` or ``vit``.
    spatial_ndim : int
        2 or 3.
    in_channels : int
        Channels of the network input.
    n_outputs : int
        Outputs of the network (logits).
    size : list of int, optional
        The network input size (spatial); needed by ``classifier`` and ``vit``, and sets the
        small CNN's stem stride in 3D.

    Returns
    -------
    dict
        Keyword arguments for the architecture; empty for an architecture without defaults
        (the config's ``arch_args`` then say everything).

    Examples
    --------
    >>> [default_arch_args("smallcnn", nd, 1, 2)["channels"] for nd in (2, 3)]
    [[32, 64, 128], [8, 16, 32]]
    >>> [default_arch_args("smallcnn", 3, 1, 2, [n] * 3)["stem_stride"] for n in (28, 64)]
    [2, 4]
    >>> default_arch_args("resnet18", 2, 3, 5)["num_classes"]
    5
    >>> default_arch_args("unknown-net", 2, 1, 2)
    {}
    """
    name = arch.lower()
    if name == "smallcnn":
        # 2D: (32, 64, 128) raised BreastMNIST's validation AUC from 0.924 to 0.953 (mean of 3
        # seeds) over (16, 32, 64); RetinaMNIST's stayed within its spread (0.817 -> 0.808)
        # (benchmarks/classification_width_sweep.py).  3D stays narrow for speed.
        channels = [32, 64, 128] if spatial_ndim == 2 else [8, 16, 32]
        return dict(
            spatial_dims=spatial_ndim,
            in_channels=in_channels,
            out_channels=n_outputs,
            channels=channels,
            dropout=0.2,
            stem_stride=stem_stride(spatial_ndim, size),
        )
    if name == "classifier":
        return dict(in_shape=[in_channels, *(size or [])], classes=n_outputs,
                    channels=[16, 32, 64], strides=[2, 2, 2])  # fmt: skip
    if name.startswith("resnet"):
        return dict(spatial_dims=spatial_ndim, n_input_channels=in_channels, num_classes=n_outputs)
    if name == "seresnet50":
        return dict(spatial_dims=spatial_ndim, in_channels=in_channels, num_classes=n_outputs)
    if name == "densenet121":  # needs inputs of at least 32 px
        return dict(spatial_dims=spatial_ndim, in_channels=in_channels, out_channels=n_outputs)
    if name == "efficientnet":
        return dict(model_name="efficientnet-b0", pretrained=False, spatial_dims=spatial_ndim,
                    in_channels=in_channels, num_classes=n_outputs)  # fmt: skip
    if name == "vit":  # a small ViT: 4-px patches (7x7 tokens at 28 px)
        return dict(in_channels=in_channels, img_size=list(size or []), patch_size=4,
                    hidden_size=192, mlp_dim=384, num_layers=4, num_heads=3,
                    classification=True, num_classes=n_outputs, spatial_dims=spatial_ndim,
                    post_activation=None)  # fmt: skip
    return {}


def default_size(shape: list[int]) -> list[int]:
    """The network input size when none is given: the image's own size, capped.

    Parameters
    ----------
    shape : list of int
        The spatial shape of an image (2 or 3 edges).

    Returns
    -------
    list of int
        ``shape`` itself when no edge exceeds :data:`MAX_DEFAULT_EDGE` for its dimensionality,
        else that cap on every edge (the image is resized down to a square / cube).

    Examples
    --------
    >>> default_size([28, 28]), default_size([500, 430]), default_size([64, 64, 96])
    ([28, 28], [128, 128], [64, 64, 64])
    """
    cap = MAX_DEFAULT_EDGE[len(shape)]
    return shape if max(shape) <= cap else [cap] * len(shape)
