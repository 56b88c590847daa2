"""`Denoiser`: geometry, units and source kept; any size; volumes slice-wise; scope refused."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.core.errors import InvalidInputError
from medsight.core.image import DicomReference, Image
from medsight.inference.denoise import Denoiser
from medsight.models.demo import demo_denoiser
from medsight.models.package import ModelPackage
from medsight.models.spec import Task


def tiny_denoiser(path, *, modalities=("MR",), identity=True, seed=0) -> ModelPackage:
    """A 2-level U-Net package; with ``identity`` its weights are zero (output = input)."""
    return demo_denoiser(path, modalities=modalities, identity=identity, seed=seed)


def test_volume_keeps_geometry_source_and_units(tmp_path):
    pkg = tiny_denoiser(tmp_path / "pkg")
    rng = np.random.default_rng(0)
    arr = (rng.random((20, 12, 5)) * 3000 - 500).astype(np.int16)
    src = DicomReference("1.2", "1.2.3", tuple(f"1.2.3.{k}" for k in range(5)))
    direction = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]], float)
    image = Image(
        arr,
        spacing=(0.8, 0.9, 3.0),
        origin=(5, -7, 30),
        direction=direction,
        modality="MR",
        source=src,
        meta={"series_description": "t1"},
    )
    out = Denoiser(pkg, device="cpu")(image)
    assert out.shape == image.shape and out.array.dtype == np.float32
    assert np.array_equal(out.affine, image.affine)
    assert out.modality == "MR" and out.source == src
    assert out.meta["derived"] == "denoised" and out.meta["derived_by"] == "tiny-denoiser@0.0.1"
    assert out.meta["series_description"] == "t1"
    np.testing.assert_allclose(out.array, arr, atol=1e-3 * 3500)  # identity net: same units


def test_any_size_and_a_channel_axis(tmp_path):
    den = Denoiser(tiny_denoiser(tmp_path / "pkg", identity=False), device="cpu")
    for shape in [(13, 7), (1, 9), (31, 30, 1)]:
        arr = np.random.default_rng(1).random(shape).astype(np.float32) * 100
        out = den(Image(arr, spatial_ndim=2, modality="MR"))
        assert out.array.shape == arr.shape and np.isfinite(out.array).all()


def test_outside_the_intended_use_is_refused_with_the_reason(tmp_path):
    den = Denoiser(tiny_denoiser(tmp_path / "pkg"), device="cpu")
    with pytest.raises(InvalidInputError, match=r"modality is CT.*MR images only"):
        den(Image(np.zeros((16, 16)), modality="CT"))
    rgb = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(InvalidInputError, match="3 channels"):
        den(Image(rgb, spatial_ndim=2, modality="MR"))
    den(Image(np.zeros((16, 16))))  # no modality (NIfTI, PNG): the user's responsibility


def test_only_denoising_packages_are_accepted(tmp_path):
    from medsight.models.spec import LabelSpec

    pkg = tiny_denoiser(tmp_path / "pkg")
    spec = pkg.spec.model_copy(
        update={"task": Task.SEGMENTATION, "labels": [LabelSpec(index=0, name="bg")]}
    )
    seg = ModelPackage.save(tmp_path / "seg", spec, pkg.state_dict())
    with pytest.raises(InvalidInputError, match="not a denoiser"):
        Denoiser(seg, device="cpu")


class _Shift:
    """A stand-in network whose residual is a constant: ``z + net(z) = z + shift``."""

    training = False

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def __call__(self, x):
        return x * 0 + self.shift


def test_magnitude_output_is_never_negative_but_signed_input_is_left_alone():
    from medsight.inference.denoise import denoise_slices

    rng = np.random.default_rng(0)
    magnitude = (rng.random((2, 16, 16)) * 100).astype(np.float32)  # >= 0, like MR magnitude
    net = _Shift(-0.5)  # half the robust range down: the dark half would go below 0
    raw = denoise_slices(net, magnitude, 1)
    assert (raw < 0).mean() > 0.3  # without the floor the overshoot is there ...
    kept = denoise_slices(net, magnitude, 1, nonnegative=True)
    assert kept.min() == 0.0 and np.array_equal(kept[raw >= 0], raw[raw >= 0])  # ... clipped
    signed = magnitude - 50.0  # a slice with negative values: not magnitude data, unclipped
    assert np.array_equal(
        denoise_slices(net, signed, 1, nonnegative=True), denoise_slices(net, signed, 1)
    )


def test_the_denoiser_clips_only_for_magnitude_noise_models(tmp_path):
    from medsight.inference.denoise import magnitude_noise

    pkg = tiny_denoiser(tmp_path / "pkg")
    assert magnitude_noise(pkg.spec)  # rician
    for model, clipped in [
        ("rician", True),
        ("speckle", True),
        ("gaussian", False),
        ("poisson", False),
    ]:
        extra = pkg.spec.extra | {"noise": {"model": model, "levels": [2.0, 10.0]}}
        spec = pkg.spec.model_copy(update={"extra": extra})
        den = Denoiser(ModelPackage.save(tmp_path / model, spec, pkg.state_dict()), device="cpu")
        den._net = _Shift(-0.5)
        out = den(Image((np.random.default_rng(1).random((16, 16)) * 100).astype(np.float32)))
        assert bool(out.array.min() >= 0) is clipped, model
