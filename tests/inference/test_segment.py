"""Segmentation inference: masks come back on the input grid (same shape and affine) for DICOM
series (an oblique one too), NIfTI and 2D pictures, through the same call."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core import Image
from medsight.core.errors import InvalidInputError
from medsight.inference.segment import Segmenter, keep_largest_component
from medsight.io import read_image, write_image
from medsight.training.plan import plan_from_dataset
from medsight.training.segmentation import (
    SegTrainConfig,
    load_preprocessed,
    preprocess_dataset,
    train_segmentation,
)

from ..training.seg_synthetic import blob_dataset, tiny


def _package(tmp_path_factory, ndim, **plan_changes):
    tmp = tmp_path_factory.mktemp(f"seg{ndim}d")
    ds = blob_dataset(ndim, n=3)
    plan = tiny(plan_from_dataset(ds)).model_copy(update=plan_changes)
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp / "p.npz"))
    res = train_segmentation(data, plan, SegTrainConfig(max_steps=1, device="cpu"), tmp)
    return res.package


@pytest.fixture(scope="module")
def package_3d(tmp_path_factory):
    # coarse 8 mm target spacing keeps a whole 512x512 MR series small on the CPU
    return _package(tmp_path_factory, 3, target_spacing=[8.0, 8.0, 8.0], orientation="RAS")


@pytest.fixture(scope="module")
def package_2d(tmp_path_factory):
    return _package(tmp_path_factory, 2)


@pytest.mark.parametrize("series", ["T1post", "HCrop"])
def test_dicom_series_mask_has_the_input_geometry(shared_data, package_3d, series):
    study = shared_data / "dicom" / "brain_mr_study1"
    folder = next(p for p in study.iterdir() if series in p.name)
    img = read_image(folder)
    seg = Segmenter(package_3d, device="cpu", tta=True)
    out = seg(folder)  # a path works as well as an Image
    assert out.mask.shape == img.shape
    assert np.array_equal(out.mask.affine, img.affine)
    assert out.mask.source == img.source
    assert set(np.unique(out.mask.array)) <= {0, 1, 2}


def test_oblique_series_is_oblique(shared_data):
    # guard: the T1post series really is oblique (direction cosines off the axes)
    study = shared_data / "dicom" / "brain_mr_study1"
    img = read_image(next(p for p in study.iterdir() if "T1post" in p.name))
    d = img.direction
    assert not np.allclose(np.abs(d), np.round(np.abs(d)), atol=1e-3)


def test_nifti_and_png_through_the_same_call(tmp_path, package_2d, package_3d):
    vol = Image(
        np.random.default_rng(0).normal(size=(20, 18, 14)).astype(np.float32),
        spacing=(0.9, 1.1, 1.3),
        origin=(5.0, 6.0, 7.0),
    )
    write_image(vol, tmp_path / "v.nii.gz")
    nii = read_image(tmp_path / "v.nii.gz")
    out = Segmenter(package_3d, device="cpu")(tmp_path / "v.nii.gz")
    assert out.mask.shape == nii.shape and np.allclose(out.mask.affine, nii.affine)
    pic = Image(
        np.random.default_rng(1).integers(0, 255, (40, 30, 3)).astype(np.uint8),
        spacing=(1.0, 1.0),
        spatial_ndim=2,
    )
    write_image(pic, tmp_path / "p.png")
    png = read_image(tmp_path / "p.png")
    out2 = Segmenter(package_2d, device="cpu")(tmp_path / "p.png")
    assert out2.mask.shape == png.shape[:2]
    assert np.array_equal(out2.mask.affine, png.affine)


def test_wrong_dimensionality_is_refused(package_2d):
    with pytest.raises(InvalidInputError, match="3D"):
        Segmenter(package_2d, device="cpu")(Image(np.zeros((8, 8, 8), np.float32)))


def test_keep_largest_component_per_label():
    m = np.zeros((10, 10), np.int16)
    m[0:2, 0:2] = 1
    m[5:9, 5:9] = 1
    m[0:3, 7:9] = 2
    m[9, 0] = 2
    out = keep_largest_component(m, [1])
    assert (out == 1).sum() == 16 and (out == 2).sum() == 7  # label 2 untouched


def test_analysis_runner_gets_coded_measurements(package_2d, monkeypatch):
    # medsight analyze runs segmentation packages through Segmenter + measure_mask; the mask
    # is fixed here so that the finding and its measurements are certain to exist
    from medsight.analysis.runners import run_package
    from medsight.core.codes import AREA, LONG_AXIS, SQUARE_MILLIMETER, VOLUME
    from medsight.inference.segment import SegmentationResult
    from medsight.models import ModelPackage

    def fixed(self, image, probabilities=False, **_):
        m = np.zeros(image.shape, np.int16)
        m[4:10, 4:8] = 1  # 6 x 4 pixels of 0.5 mm
        return SegmentationResult(image.with_array(m), None, {1: "bright"})

    monkeypatch.setattr(Segmenter, "__call__", fixed)
    pkg = ModelPackage.load(package_2d)
    img = Image(np.full((16, 16), 100.0, np.float32), spacing=(0.5, 0.5))
    out = run_package(pkg, img, explain=False)
    (finding,) = out.findings
    area = finding.measurement(AREA)  # a 2D mask has an area, never a volume
    assert area.value == pytest.approx(24 * 0.25) and area.unit == SQUARE_MILLIMETER
    assert VOLUME not in [m.concept for m in finding.measurements]
    assert finding.measurement(LONG_AXIS).value == pytest.approx(np.hypot(3.0, 2.0))


def test_zoo_hippocampus_package_segments_a_held_out_case(shared_data):
    # hippocampus_060 is in the benchmark's test split (make_splits seed 0), not trained on
    from pathlib import Path

    import medsight
    from medsight.data import load_dataset
    from medsight.evaluation.segmentation import dice

    zoo = Path(medsight.__file__).parent / "zoo" / "hippocampus-dynunet"
    case = load_dataset(f"msd:{shared_data / 'hippocampus'}").case("hippocampus_060")
    out = Segmenter(zoo, device="cpu")(case.image())
    ref = np.asarray(case.mask().array)
    assert np.array_equal(out.mask.affine, case.image().affine)
    assert dice(out.mask.array == 1, ref == 1) > 0.8
    assert dice(out.mask.array == 2, ref == 2) > 0.8
