"""The shared pixel scan: hashes, thumbnails, statistics, masks, unreadable cases."""

from __future__ import annotations

import numpy as np
from scipy.fft import dctn

from medsight.core import Case, Image, UnreadableFileError
from medsight.data import Dataset
from medsight.data.scan import phash, scan_case, scan_dataset, thumbnail


def test_digest_ignores_memory_layout_and_phash_matches_definition():
    arr = np.random.default_rng(0).integers(0, 255, (40, 30)).astype(np.uint8)
    c_order = Image(np.ascontiguousarray(arr))
    f_order = Image(np.asfortranarray(arr))
    ds = Dataset("d", [Case("c", images={"image": c_order}), Case("f", images={"image": f_order})])
    a, b = scan_dataset(ds)
    assert a.digest == b.digest and a.phash == b.phash
    # pHash by its definition: 8x8 low DCT coefficients above their median (DC excluded)
    t = thumbnail(c_order)
    low = dctn(t.astype(float), norm="ortho")[:8, :8].ravel()
    bits = "".join("1" if v > np.median(low[1:]) else "0" for v in low)
    assert phash(t) == int(bits, 2)


def test_thumbnail_block_mean_and_zoom_agree_on_smooth_images():
    x, y = np.meshgrid(np.linspace(0, 1, 64), np.linspace(0, 1, 64), indexing="ij")
    smooth = Image((x + y).astype(np.float32))
    fast = thumbnail(smooth)  # 64 -> 32 block means
    slow = thumbnail(Image(smooth.array[:63, :63]))  # 63 -> 32 by interpolation
    assert fast.shape == slow.shape == (32, 32)
    assert np.corrcoef(fast.ravel(), slow.ravel())[0, 1] > 0.99


def test_statistics_foreground_and_errors():
    arr = np.arange(100, dtype=np.int16).reshape(10, 10)
    mask = np.zeros((10, 10), np.uint8)
    mask[5:, :] = 2

    def broken() -> Image:
        raise UnreadableFileError("x.png", "truncated")

    ds = Dataset(
        "s",
        [
            Case("ok", images={"image": Image(arr)}, label=Image(mask)),
            Case("bad", images={"image": broken}),
        ],
    )
    ok = scan_case(ds, 0, samples=30)
    assert (ok.channels[0].min, ok.channels[0].max, ok.channels[0].mean) == (0, 99, 49.5)
    assert ok.channels[0].samples.size == 30 and ok.channels[0].samples.min() >= 50
    assert ok.mask.counts == {0: 50, 2: 50} and ok.mask.same_shape and ok.mask.same_geometry
    bad = scan_case(ds, 1)
    assert not bad.ok and "truncated" in bad.error
    again = scan_case(ds, 0, samples=30)
    np.testing.assert_array_equal(again.channels[0].samples, ok.channels[0].samples)
