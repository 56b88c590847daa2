"""Self-configuring segmentation plan: nnU-Net's rules, plan.json, preprocessing geometry."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core import Image
from medsight.core.errors import InvalidInputError
from medsight.training.plan import (
    IntensityStats,
    Normalization,
    SegmentationPlan,
    make_plan,
    normalize,
    plan_from_dataset,
    prepare_image,
    prepare_label,
    restore_array,
)


def test_hippocampus_plan_matches_nnunet(shared_data):
    # nnU-Net's published 3d_fullres plan for MSD Task04 (nnUNetPlansv2.1): median spacing
    # 1 mm, patch size [40, 56, 40], batch size 9, three 2x poolings on every axis.
    from medsight.data import load_dataset

    plan = plan_from_dataset(load_dataset(f"msd:{shared_data / 'hippocampus'}"), modality="MR")
    assert plan.target_spacing == [1.0, 1.0, 1.0]
    assert plan.patch_size == [40, 56, 40]
    assert plan.batch_size == 9
    assert plan.strides == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert plan.normalization is Normalization.ZSCORE_NONZERO
    assert plan.orientation == "RAS"
    assert plan.network_args()["out_channels"] == 3


def test_anisotropic_ct_plan():
    spacings = [[0.7, 0.7, 5.0]] * 8 + [[0.8, 0.8, 3.0]] * 2
    shapes = [[512, 512, 40]] * 10
    stats = IntensityStats(mean=50, std=20, percentile_00_5=-100, percentile_99_5=300)
    plan = make_plan(
        spacings=spacings,
        shapes=shapes,
        label_names={0: "bg", 1: "liver"},
        modality="CT",
        intensity=stats,
    )
    # the coarse axis takes the 10th percentile of its spacings (nnU-Net's anisotropy rule),
    # then the image is coarsened isotropically to fit the 128^3 voxel budget
    assert plan.target_spacing[2] / plan.target_spacing[0] == pytest.approx(3.0 / 0.7, rel=1e-3)
    assert np.prod(plan.patch_size) <= 1.5 * 128**3
    assert plan.kernel_size[0] == [3, 3, 1]  # no 3x3x3 convolutions across thick slices
    assert all(
        s % 2 ** sum(st[a] == 2 for st in plan.strides) == 0 for a, s in enumerate(plan.patch_size)
    )
    x = np.array([[[-500.0, 50.0, 1000.0]]], np.float32)
    assert normalize(x, plan).ravel().tolist() == pytest.approx([-7.5, 0.0, 12.5])


def test_ct_without_stats_and_bad_input():
    with pytest.raises(InvalidInputError, match="CT normalisation"):
        make_plan(spacings=[[1, 1]], shapes=[[8, 8]], label_names={0: "b"}, modality="CT")
    with pytest.raises(InvalidInputError):
        make_plan(spacings=[[1, 1]], shapes=[[8, 8, 8]], label_names={0: "b"})


def test_plan_json_round_trip_and_bad_field(tmp_path):
    plan = make_plan(spacings=[[1, 1]], shapes=[[64, 48]], label_names={0: "b", 1: "x"})
    path = plan.save(tmp_path / "plan.json")
    assert SegmentationPlan.load(path) == plan
    path.write_text(path.read_text().replace('"batch_size": ', '"batch_size": -'))
    with pytest.raises(InvalidInputError, match="batch_size"):
        SegmentationPlan.load(path)


def test_prepare_and_restore_geometry():
    # an LPS image, a plan for RAS data with 2 mm spacing: prepared data are reoriented and
    # resampled, and restore_array maps them back onto the input grid exactly (same shape,
    # and constant regions survive the round trip)
    arr = np.zeros((10, 12, 8), np.float32)
    arr[:4] = 1.0
    img = Image(arr, spacing=(1.0, 1.0, 2.0), modality="MR")
    assert img.orientation == "LPS"
    plan = make_plan(
        spacings=[[2.0, 2.0, 2.0]],
        shapes=[[5, 6, 8]],
        label_names={0: "b", 1: "x"},
        orientation="RAS",
        modality="US",
    )
    prepared = prepare_image(img, plan)
    assert prepared.array.shape == (1, 5, 6, 8)
    # L->R flips axis 0, P->A flips axis 1
    ones = (arr - arr.mean()) / arr.std()
    assert prepared.array[0, -1, 0, 0] == pytest.approx(ones[0, 0, 0], abs=1e-5)
    label = prepare_label(img.with_array(arr.astype(np.uint8)), prepared)
    assert label.shape == (5, 6, 8) and label[-1, 0, 0] == 1 and label[0, 0, 0] == 0
    back = restore_array(label[None].astype(np.float32), prepared)
    assert back.shape == (1, 10, 12, 8)
    assert np.array_equal(back[0] > 0.5, arr > 0.5)


def test_plan_from_the_data_fingerprint_agrees(shared_data):
    # the data module's fingerprint and plan_from_dataset's own statistics give the same plan
    from medsight.data import load_dataset
    from medsight.data.fingerprint import compute_fingerprint
    from medsight.training.plan import plan_from_fingerprint

    ds = load_dataset(f"msd:{shared_data / 'hippocampus'}")
    ds = ds.with_cases(list(ds)[:40])
    a = plan_from_fingerprint(compute_fingerprint(ds), ds.label_names, modality="MR")
    b = plan_from_dataset(ds, modality="MR")
    for field in ("target_spacing", "patch_size", "strides", "kernel_size", "normalization"):
        assert getattr(a, field) == getattr(b, field)
    assert a.orientation == b.orientation == "RAS"


def _plan(**changes) -> SegmentationPlan:
    base = dict(
        spatial_ndim=2,
        modality="CT",
        target_spacing=[0.8, 0.8],
        median_shape=[16, 16],
        patch_size=[16, 16],
        batch_size=2,
        kernel_size=[[3, 3]] * 3,
        strides=[[1, 1]] + [[2, 2]] * 2,
        filters=[32, 64, 128],
        normalization="ct",
        intensity=IntensityStats(mean=50, std=20, percentile_00_5=-100, percentile_99_5=300),
        label_names={0: "bg", 1: "x"},
    )
    return SegmentationPlan(**{**base, **changes})


def test_one_intensity_enum_and_legacy_ct_plans_load(tmp_path):
    from medsight.models import seg_plan
    from medsight.models.spec import Intensity

    assert Normalization is seg_plan.Normalization is Intensity  # old names: one enum
    path = _plan().save(tmp_path / "plan.json")
    assert '"normalization": "ct_window"' in path.read_text()
    # plan.json files written before the merge say "ct"
    path.write_text(path.read_text().replace('"ct_window"', '"ct"'))
    assert SegmentationPlan.load(path).normalization is Intensity.CT_WINDOW
    for value in ("zscore_nonzero", "zscore", "none"):
        path.write_text(_plan(normalization=value).model_dump_json())
        assert SegmentationPlan.load(path).normalization is Intensity(value)
    # classification-only modes are no segmentation normalisation
    path.write_text(_plan().model_dump_json().replace('"ct_window"', '"scale_0_1"'))
    with pytest.raises(InvalidInputError, match="normalization"):
        SegmentationPlan.load(path)


def test_plan_preprocessing_is_what_inference_applies():
    from medsight.models.spec import Intensity, PreprocessingSpec
    from medsight.transforms.preprocess import normalize_intensity

    plan = _plan()
    spec = plan.preprocessing(channels=2)
    assert PreprocessingSpec.model_validate_json(spec.model_dump_json()) == spec
    assert spec.target_spacing == plan.target_spacing and spec.size == plan.patch_size
    assert spec.intensity is Intensity.CT_WINDOW and spec.per_channel and spec.channels == 2
    assert spec.intensity_args == {"lower": -100, "upper": 300, "mean": 50, "std": 20}
    rng = np.random.default_rng(0)
    x = rng.normal(100, 80, (2, 6, 7)).astype(np.float32)
    x[:, :2] = 0
    x[1] *= 5
    for value in ("ct", "zscore_nonzero", "zscore", "none"):
        p = _plan(normalization=value)
        out = normalize(x, p)
        assert np.array_equal(out, normalize_intensity(x.copy(), p.preprocessing(2)))
        if value in ("zscore", "zscore_nonzero"):  # each channel on its own
            fg = x != 0 if value == "zscore_nonzero" else np.ones_like(x, bool)
            for c in range(2):
                assert out[c][fg[c]].mean() == pytest.approx(0, abs=1e-5)
                assert out[c][fg[c]].std() == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(normalize(x, plan)[0, 0], (np.clip(x[0, 0], -100, 300) - 50) / 20)
    # what older trainers wrote to model.json (recognised on package load)
    legacy = _plan(normalization="zscore_nonzero").legacy_preprocessing(1)
    assert legacy.intensity is Intensity.ZSCORE and not legacy.per_channel
