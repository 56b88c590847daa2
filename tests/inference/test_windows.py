"""Faster sliding windows: MONAI's output when nothing is cropped, exact background reuse, and
the stated foreground-crop rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from medsight.inference.windows import (
    background_value,
    foreground_box,
    gaussian_map,
    sliding_window_logits,
)


def _net(ndim: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d if ndim == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(
        conv(1, 4, 3, padding=1), torch.nn.ReLU(), conv(4, 3, 3, padding=1)
    ).eval()


def _monai(net, x, roi, sw_batch_size=1):
    with torch.no_grad():
        return sliding_window_inference(x, roi, sw_batch_size, net, overlap=0.5, mode="gaussian")


@pytest.mark.parametrize(
    ("shape", "roi"), [((1, 1, 21, 17, 23), (8, 8, 8)), ((1, 1, 33, 5), (8, 8))]
)
def test_equals_monai_default_when_nothing_is_cropped(shape, roi):
    # random input: the corners differ, so there is no background value and nothing is skipped
    net = _net(len(roi))
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    stats: dict = {}
    out = sliding_window_logits(net, x, roi, sw_batch_size=5, stats=stats)
    ref = _monai(net, x, roi)
    assert out.shape == ref.shape
    assert float((out - ref).abs().max()) < 1e-5
    assert stats["crop"] is None


def test_background_windows_are_reused_without_changing_the_result():
    net = _net(3)
    x = torch.zeros(1, 1, 32, 28, 24)
    x[0, 0, 10:15, 20:26, 5:9] = torch.randn(5, 6, 4, generator=torch.Generator().manual_seed(2))
    stats: dict = {}
    out = sliding_window_logits(net, x, (8, 8, 8), crop=False, stats=stats)
    ref = _monai(net, x, (8, 8, 8), sw_batch_size=64)
    assert float((out - ref).abs().max()) < 1e-5
    assert stats["windows_reused"] > 2 * stats["windows_run"]


def test_crop_follows_the_stated_rule_and_outside_is_background():
    net = _net(3)
    x = torch.full((1, 1, 48, 40, 44), -3.0)
    x[0, 0, 20:24, 10:13, 30:31] = 1.0
    assert background_value(x[0]) == -3.0
    box = foreground_box(x[0], (8, 10, 6))
    # bounding box [20,24) x [10,13) x [30,31) grown by half a patch (4, 5, 3), clipped
    assert box == (slice(16, 28), slice(5, 18), slice(27, 34))
    stats: dict = {}
    probs = torch.softmax(sliding_window_logits(net, x, (8, 10, 6), stats=stats), dim=1)
    assert stats["crop"] == [(16, 28), (5, 18), (27, 34)]
    outside = torch.ones(x.shape[2:], dtype=torch.bool)
    outside[box] = False
    assert torch.all(probs[0, 0][outside] == 1.0)
    assert torch.allclose(probs.sum(dim=1), torch.ones(1, *x.shape[2:]))
    inside = probs[0][(slice(None), *box)]
    assert not torch.all(inside[0] == 1.0)  # the network ran inside the crop


def test_no_crop_without_a_shared_corner_value_or_foreground():
    a = np.zeros((1, 10, 10), np.float32)
    assert foreground_box(a, (4, 4)) is None  # no foreground
    a[0, 0, 0] = 5.0
    assert background_value(a) is None
    assert foreground_box(a, (4, 4)) is None


def test_gaussian_map_is_cached_and_matches_monai():
    from monai.data.utils import compute_importance_map

    m = gaussian_map((8, 6, 4))
    assert gaussian_map([8, 6, 4]) is m
    ref = compute_importance_map((8, 6, 4), mode="gaussian", sigma_scale=0.125)
    assert torch.allclose(m, ref)


def test_onnx_network_runs_the_windows(tmp_path):
    pytest.importorskip("onnxruntime")
    from medsight.inference.onnx_backend import OnnxNetwork

    net = _net(3)
    path = tmp_path / "net.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 1, 8, 8, 8),),
        str(path),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        dynamo=False,
    )
    x = torch.zeros(1, 1, 24, 20, 16)
    x[0, 0, 8:12, 6:10, 5:9] = 1.0
    out = sliding_window_logits(OnnxNetwork(path), x, (8, 8, 8), sw_batch_size=4)
    ref = sliding_window_logits(net, x, (8, 8, 8), sw_batch_size=4)
    assert float((out - ref)[torch.isfinite(ref)].abs().max()) < 1e-4


@pytest.mark.parametrize(
    ("n", "p", "overlap"), [(20, 8, 0.5), (21, 8, 0.5), (8, 8, 0.5), (37, 12, 0.25), (9, 8, 0.9)]
)
def test_axis_starts_are_monais_window_grid(n, p, overlap):
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    from medsight.inference.windows import axis_starts, window_count

    interval = _get_scan_interval((n, 5), (p, 5), 2, (overlap, overlap))
    ref = sorted({s[0].start for s in dense_patch_slices((n, 5), (p, 5), interval)})
    assert axis_starts(n, p, overlap) == ref
    assert window_count((n, 5), (p, 5), overlap) == len(
        dense_patch_slices((n, 5), (p, 5), interval)
    )


def test_aligned_crop_runs_only_the_uncropped_grids_windows_that_see_foreground():
    from medsight.inference.windows import aligned_box

    net = _net(3)
    x = torch.full((1, 1, 40, 36, 44), -1.0)
    x[0, 0, 18:22, 3:6, 30:33] = torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(3))
    roi = (8, 8, 8)
    box = aligned_box(x[0], roi, 0.5)
    assert box is not None
    stats: dict = {}
    out = sliding_window_logits(net, x, roi, crop=True, aligned=True, stats=stats)
    full: dict = {}
    ref = sliding_window_logits(net, x, roi, crop=False, skip_background=False, stats=full)
    assert stats["crop"] == [(s.start, s.stop) for s in box] == [(12, 28), (0, 12), (24, 40)]
    assert stats["windows_total"] == full["windows_total"] == 9 * 8 * 10
    assert stats["windows_run"] + stats["windows_reused"] == 18  # 3 x 2 x 3 grid windows inside
    # every window that overlaps the foreground is inside the box: its logits are unchanged
    fg = (slice(None), slice(None), slice(18, 22), slice(3, 6), slice(30, 33))
    assert float((out[fg] - ref[fg]).abs().max()) < 1e-5
