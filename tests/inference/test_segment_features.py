"""Segmenter features (the OOD gate's input) with the foreground crop: the pooled features are
those of the uncropped window grid, with far fewer windows run."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core import Image
from medsight.inference.segment import Segmenter
from medsight.training.plan import plan_from_dataset
from medsight.training.segmentation import (
    SegTrainConfig,
    load_preprocessed,
    preprocess_dataset,
    train_segmentation,
)

from ..training.seg_synthetic import blob_dataset, tiny


@pytest.fixture(scope="module")
def package_3d(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seg3d")
    ds = blob_dataset(3, n=3)
    plan = tiny(plan_from_dataset(ds))
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp / "p.npz"))
    return train_segmentation(data, plan, SegTrainConfig(max_steps=1, device="cpu"), tmp).package


def _volume(size: int = 48) -> Image:
    """A constant volume with one small noisy bright blob off-centre."""
    rng = np.random.default_rng(0)
    arr = np.zeros((size,) * 3, np.float32)
    arr[30:36, 8:13, 20:25] = rng.normal(160, 5, (6, 5, 5))
    return Image(arr, spacing=(1.0, 1.0, 1.0), modality="MR")


def _counting(seg: Segmenter) -> list[int]:
    """Windows the torch network runs (one entry per forward pass: its batch size)."""
    seen: list[int] = []
    seg.torch_net.register_forward_pre_hook(lambda _m, args: seen.append(int(args[0].shape[0])))
    return seen


def test_cropped_features_equal_the_uncropped_ones_with_fewer_windows(package_3d):
    image = _volume()
    cropped = Segmenter(package_3d, device="cpu", crop=True, postprocess=False)
    full = Segmenter(package_3d, device="cpu", crop=False, postprocess=False)
    ran_cropped, ran_full = _counting(cropped), _counting(full)
    a = cropped(image, features=True)
    b = full(image, features=True)  # every window of the grid, as the OOD reference was built
    assert a.features is not None and b.features is not None
    scale = max(1.0, float(np.abs(b.features).max()))
    np.testing.assert_allclose(a.features, b.features, atol=1e-5 * scale, rtol=0)
    assert sum(ran_cropped) * 3 < sum(ran_full)  # the crop happened
    # every window over the blob ran in both: the same labels there (outside the crop the
    # cropped run says background, as the crop rule states; this net is trained one step only)
    blob = (slice(30, 36), slice(8, 13), slice(20, 25))
    assert np.array_equal(a.mask.array[blob], b.mask.array[blob])
    # the features differ from the all-background volume's: the blob is in them
    blank = full(Image(np.zeros((48,) * 3, np.float32), spacing=(1.0,) * 3), features=True)
    assert np.abs(blank.features - b.features).max() > 1e-4


def test_mirrored_passes_do_not_change_the_features(package_3d):
    image = _volume()
    plain = Segmenter(package_3d, device="cpu", postprocess=False)(image, features=True)
    tta = Segmenter(package_3d, device="cpu", tta=True, postprocess=False)(image, features=True)
    np.testing.assert_allclose(tta.features, plain.features, atol=1e-6)
