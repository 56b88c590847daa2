"""RetinaNet for 2D and 3D detection, on MONAI's ``monai.apps.detection`` stack.

:func:`build_retinanet` (registry name ``retinanet``) builds MONAI's
:class:`~monai.apps.detection.networks.retinanet_network.RetinaNet` on a small MONAI ResNet with
a MONAI feature pyramid.  MONAI's own ``resnet_fpn_feature_extractor`` takes the intermediate
layers with torchvision's ``IntermediateLayerGetter``; medsight does not depend on torchvision,
so :class:`ResNetFPN` runs the same backbone layers itself and feeds MONAI's
``FeaturePyramidNetwork`` (with its ``LastLevelMaxPool``), the same computation.

The anchors (``anchor_shapes`` in pixels of the network input at the finest pyramid level,
scaled by 2 per level) are architecture arguments too, so :func:`build_detector` makes the
matching :class:`~monai.apps.detection.networks.retinanet_detector.RetinaNetDetector` (anchor
generator, ATSS matcher, hard-negative sampler, box coder, box selector) from the network alone.
Training and inference both call it: one description of the detector.

Examples
--------
>>> import torch
>>> net = build_retinanet(spatial_dims=2, in_channels=1, num_classes=1,
...     block_inplanes=[8, 16, 32], fpn_channels=16, anchor_shapes=[[8, 8], [16, 16]])
>>> out = net(torch.zeros(1, 1, 64, 64))
>>> [tuple(t.shape) for t in out["classification"]]
[(1, 2, 16, 16), (1, 2, 8, 8), (1, 2, 4, 4), (1, 2, 2, 2)]
>>> det = build_detector(net).eval()
>>> sorted(det(torch.zeros(1, 1, 64, 64))[0])
['boxes', 'labels', 'labels_scores']
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["ResNetFPN", "build_detector", "build_retinanet", "size_divisible"]


class ResNetFPN(nn.Module):
    """A MONAI ResNet's first layers with a MONAI feature pyramid on the returned ones.

    Parameters
    ----------
    spatial_dims, in_channels : int
    block_inplanes : sequence of int
        Channels of ResNet layers 1, 2, ... (one basic block each unless ``layers`` says).
    layers : sequence of int, optional
        Blocks per layer.
    fpn_channels : int
        Channels of every pyramid level.
    conv1_stride : int
        Stride of the stem convolution (a max pool follows it).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        block_inplanes: Sequence[int],
        layers: Sequence[int] | None = None,
        fpn_channels: int = 32,
        conv1_stride: int = 2,
    ) -> None:
        super().__init__()
        from monai.networks.blocks.feature_pyramid_network import (
            FeaturePyramidNetwork,
            LastLevelMaxPool,
        )
        from monai.networks.nets.resnet import ResNet, ResNetBlock

        n = len(block_inplanes)
        if not 1 <= n <= 4:
            raise ValueError("block_inplanes: give 1 to 4 ResNet layers")
        blocks = list(layers) if layers is not None else [1] * n
        # MONAI's ResNet always builds four layers: pad, then drop the unused ones
        backbone = ResNet(
            block=ResNetBlock,
            layers=blocks + [1] * (4 - n),
            block_inplanes=list(block_inplanes) + [block_inplanes[-1]] * (4 - n),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=conv1_stride,
            feed_forward=False,
        )
        for extra in range(n + 1, 5):
            delattr(backbone, f"layer{extra}")
        for name in ("avgpool", "fc"):
            if hasattr(backbone, name):
                delattr(backbone, name)
        self.body = backbone
        self.n_layers = n
        self.fpn = FeaturePyramidNetwork(
            spatial_dims=spatial_dims,
            in_channels_list=list(block_inplanes),
            out_channels=fpn_channels,
            extra_blocks=LastLevelMaxPool(spatial_dims),
        )
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pyramid feature maps, finest first."""
        b = self.body
        x = b.act(b.bn1(b.conv1(x)))
        if not b.no_max_pool:
            x = b.maxpool(x)
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i in range(1, self.n_layers + 1):
            x = getattr(b, f"layer{i}")(x)
            feats[str(i - 1)] = x
        return self.fpn(feats)


def size_divisible(n_layers: int, conv1_stride: int = 2) -> int:
    """What every input side must be a multiple of: stem stride x max pool x layers x extra pool.

    >>> size_divisible(3)
    32
    """
    return conv1_stride * 2 * 2 ** (n_layers - 1) * 2


def build_retinanet(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    anchor_shapes: Sequence[Sequence[float]],
    block_inplanes: Sequence[int] = (16, 32, 64),
    layers: Sequence[int] | None = None,
    fpn_channels: int = 32,
    conv1_stride: int = 2,
) -> nn.Module:
    """MONAI's RetinaNet on :class:`ResNetFPN` (the ``retinanet`` registry entry).

    ``anchor_shapes`` (one ``[w, h(, d)]`` per anchor, input pixels at the finest level) are
    kept on the module as ``anchor_shapes``; :func:`build_detector` reads them.
    """
    from monai.apps.detection.networks.retinanet_network import RetinaNet

    shapes = [[float(v) for v in s] for s in anchor_shapes]
    if not shapes or any(len(s) != spatial_dims for s in shapes):
        raise ValueError(f"anchor_shapes: give [w, h{', d' if spatial_dims == 3 else ''}] each")
    extractor = ResNetFPN(
        spatial_dims, in_channels, block_inplanes, layers, fpn_channels, conv1_stride
    )
    net = RetinaNet(
        spatial_dims=spatial_dims,
        num_classes=num_classes,
        num_anchors=len(shapes),
        feature_extractor=extractor,
        size_divisible=size_divisible(len(block_inplanes), conv1_stride),
    )
    net.anchor_shapes = shapes  # type: ignore[assignment]
    net.n_levels = len(block_inplanes) + 1  # type: ignore[assignment]
    return net


def _detector_class() -> type:
    """MONAI's ``RetinaNetDetector`` with its anchor matching limited to the ATSS matcher.

    MONAI's ``compute_anchor_matched_idxs`` first asks ``isinstance(matcher, Matcher)`` of
    torchvision's ``Matcher``, which fails when torchvision is not installed (medsight does not
    need it); this subclass runs the ATSS branch of the same method directly.
    """
    global _DETECTOR_CLASS
    if _DETECTOR_CLASS is not None:
        return _DETECTOR_CLASS
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
    from monai.apps.detection.utils.ATSS_matcher import ATSSMatcher

    class ATSSRetinaNetDetector(RetinaNetDetector):  # type: ignore[misc]
        def compute_anchor_matched_idxs(
            self,
            anchors: list[torch.Tensor],
            targets: list[dict[str, torch.Tensor]],
            num_anchor_locs_per_level: Sequence[int],
        ) -> list[torch.Tensor]:
            if not isinstance(self.proposal_matcher, ATSSMatcher):
                raise NotImplementedError("medsight's RetinaNet trains with the ATSS matcher")
            matched = []
            for anchors_per_image, target in zip(anchors, targets, strict=True):
                boxes = target[self.target_box_key]
                if boxes.numel() == 0:
                    matched.append(
                        torch.full(
                            (anchors_per_image.size(0),),
                            -1,
                            dtype=torch.int64,
                            device=anchors_per_image.device,
                        )
                    )
                    continue
                _, idx = self.proposal_matcher(
                    boxes.to(anchors_per_image.device),
                    anchors_per_image,
                    num_anchor_locs_per_level,
                    self.num_anchors_per_loc,
                )
                matched.append(idx)
            return matched

    _DETECTOR_CLASS = ATSSRetinaNetDetector
    return _DETECTOR_CLASS


_DETECTOR_CLASS: type | None = None


def build_detector(
    net: nn.Module,
    *,
    score_thresh: float = 0.02,
    nms_thresh: float = 0.22,
    detections_per_img: int = 100,
    batch_size_per_image: int = 64,
    positive_fraction: float = 0.3,
    patch_size: Sequence[int] | None = None,
) -> Any:
    """MONAI's ``RetinaNetDetector`` around a :func:`build_retinanet` network.

    Anchors: ``AnchorGeneratorWithAnchorShape`` with the network's ``anchor_shapes`` at scales
    1, 2, 4 ... per pyramid level; training: ATSS matching and MONAI's hard-negative sampler
    (``batch_size_per_image`` anchors per image, ``positive_fraction`` of them positive at
    most), the box coder with unit weights; inference: the box selector with
    ``score_thresh``, NMS at ``nms_thresh`` IoU and at most ``detections_per_img`` boxes.
    With ``patch_size`` (a model trained on patches of large images, e.g. CT) MONAI's
    sliding-window inferer (25 % overlap) is set; call the detector with ``use_inferer=True``.
    """
    from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape

    levels = int(net.n_levels)
    anchors = AnchorGeneratorWithAnchorShape(
        feature_map_scales=[2**i for i in range(levels)],
        base_anchor_shapes=[tuple(s) for s in net.anchor_shapes],
    )
    det = _detector_class()(network=net, anchor_generator=anchors, debug=False)
    det.set_atss_matcher(num_candidates=4, center_in_gt=False)
    det.set_hard_negative_sampler(
        batch_size_per_image=batch_size_per_image,
        positive_fraction=positive_fraction,
        pool_size=20,
        min_neg=16,
    )
    det.set_target_keys(box_key="boxes", label_key="labels")
    det.set_box_selector_parameters(
        score_thresh=score_thresh,
        topk_candidates_per_level=1000,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
    )
    if patch_size is not None:
        det.set_sliding_window_inferer(roi_size=list(patch_size), sw_batch_size=1, overlap=0.25)
    return det
