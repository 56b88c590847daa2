"""ONNX export of denoising, detection and synthesis packages: parity recorded with each
family's decision check, the family's predictor on the ONNX backend equal to torch, tampering
refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from medsight.core import Image
from medsight.core.errors import InvalidInputError
from medsight.inference.denoise import Denoiser
from medsight.inference.detect import Detector
from medsight.inference.onnx_backend import OPSET, export_onnx, use_backend
from medsight.inference.onnx_families import _matched, boxes_iou
from medsight.inference.synth import Synthesizer, build_diffusion_unet, synthesis_spec_for_tests
from medsight.models import ModelPackage
from medsight.models.demo import demo_denoiser

pytest.importorskip("onnxruntime")


def _tampered(pkg: ModelPackage, tmp_path) -> ModelPackage:
    copy = tmp_path / f"tampered-{pkg.path.name}"
    shutil.copytree(pkg.path, copy)
    with open(copy / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    return ModelPackage.load(copy)


def _check_record(rec: dict, min_inputs: int) -> dict:
    """The common part of every export record; returns the parity record."""
    onnx = rec["onnx"]
    assert onnx["opset"] == OPSET and onnx["sha256"] and onnx["file"] == "model.onnx"
    par = onnx["parity"]
    assert 0.0 <= par["max_abs_diff"] <= par["allowed_abs_diff"] == 1e-4 * par["output_scale"]
    assert rec["default"] == ("onnx" if rec["timing"]["onnx_share_of_torch"] <= 0.9 else "torch")
    assert rec["timing"]["inputs"] >= min_inputs
    return par


# --- denoising ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    """A random-weight (not identity) denoiser exported to a new folder, timed with the thread
    count a CPU predictor runs with (``select_device("cpu")`` sets it)."""
    from medsight.models.device import select_device

    select_device("cpu")
    pkg = demo_denoiser(tmp_path_factory.mktemp("den") / "den", identity=False)
    out = export_onnx(pkg, tmp_path_factory.mktemp("den-x") / "exported")
    return pkg, ModelPackage.load(out.package)


def test_denoiser_export_has_dynamic_height_and_width_checked_on_two_sizes(denoiser):
    original, pkg = denoiser
    assert "backends" not in original.spec.extra
    rec = pkg.spec.extra["backends"]
    par = _check_record(rec, 6)
    assert rec["onnx"]["dynamic_axes"]["input"] == {
        "0": "batch",
        "2": "spatial (multiple of 2)",
        "3": "spatial (multiple of 2)",
    }
    assert par["decision_agreement"] is None and "denoised output" in par["decision"]
    assert par["shapes"] == [[4, 1, 64, 64], [2, 1, 48, 80]]
    assert Denoiser(pkg, device="cpu").backend == rec["default"]  # the measured default


def test_denoiser_on_onnx_equals_torch_on_odd_sizes_and_volumes(denoiser):
    _, pkg = denoiser
    rng = np.random.default_rng(3)
    slice_ = Image(rng.normal(100, 20, (30, 37)).astype(np.float32), modality="MR")
    volume = Image(rng.normal(100, 20, (22, 26, 9)).astype(np.float32), modality="MR")
    for image in (slice_, volume):  # padded to 30x38 / 22x26: sizes the export never saw
        a = Denoiser(pkg, device="cpu", backend="torch")(image).array
        b = Denoiser(pkg, device="cpu", backend="onnx")(image).array
        assert np.abs(a - image.array).max() > 1.0  # the network changes the image
        np.testing.assert_allclose(a, b, atol=1e-3 * float(np.abs(a).max()))
    with use_backend("onnx"):
        assert Denoiser(pkg, device="cpu").backend == "onnx"


def test_tampered_denoiser_export_is_refused(denoiser, tmp_path):
    with pytest.raises(InvalidInputError, match="does not match its sha256"):
        Denoiser(_tampered(denoiser[1], tmp_path), device="cpu", backend="onnx")
    with pytest.raises(InvalidInputError, match="has no onnx export"):
        Denoiser(denoiser[0], device="cpu", backend="onnx")
    with pytest.raises(InvalidInputError, match="int8 is offered for classification"):
        export_onnx(denoiser[0], quantize="int8")


# --- detection ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """A random RetinaNet at the images' own size (no resize), its class bias raised so that
    boxes score above the package threshold, exported in place."""
    from medsight.models.registry import build_network
    from medsight.models.spec import (
        ArchitectureSpec,
        InputSpec,
        Intensity,
        LabelSpec,
        ModelSpec,
        PreprocessingSpec,
        Task,
    )

    arch = ArchitectureSpec(
        name="retinanet",
        args={
            "spatial_dims": 2,
            "in_channels": 1,
            "num_classes": 1,
            "anchor_shapes": [[8, 8], [16, 16]],
            "block_inplanes": [8, 16, 32],
            "fpn_channels": 16,
        },
    )
    torch.manual_seed(0)
    net = build_network(arch)
    with torch.no_grad():  # MONAI's prior makes every score ~0.01: centre them on 0.5
        net.classification_head.cls_logits.bias.fill_(0.0)
    spec = ModelSpec(
        name="tiny-det",
        version="0.0.1",
        task=Task.DETECTION,
        architecture=arch,
        input=InputSpec(modalities=["OT"], spatial_ndim=2, channels=1, grey_only=True),
        preprocessing=PreprocessingSpec(intensity=Intensity.ZSCORE),
        labels=[LabelSpec(index=0, name="disc")],
        thresholds={"score": 0.5},
        extra={"detector": {"score_floor": 0.3, "nms_iou": 0.22, "max_detections": 20}},
    )
    pkg = ModelPackage.save(tmp_path_factory.mktemp("det") / "det", spec, net.state_dict())
    export_onnx(pkg)
    return ModelPackage.load(pkg.path)


def test_detector_export_compares_boxes_above_the_threshold_after_nms(detector):
    rec = detector.spec.extra["backends"]
    par = _check_record(rec, 4)
    assert par["boxes_compared"] > 0 and par["decision_agreement"] == 1.0
    assert par["score_threshold"] == 0.5 and par["iou_tolerance"] == 1e-3
    onnx = rec["onnx"]
    assert onnx["outputs"][:1] == ["classification_0"] and len(onnx["outputs"]) == 8
    assert onnx["dynamic_axes"]["input"]["2"] == "spatial (multiple of 32)"


def test_detector_on_onnx_finds_the_same_boxes_as_torch(detector):
    rng = np.random.default_rng(5)
    image = Image(rng.normal(100, 20, (50, 70)).astype(np.float32), spatial_ndim=2)  # -> 64x96
    a = Detector(detector, device="cpu", backend="torch").detect(image)
    onnx = Detector(detector, device="cpu", backend="onnx")
    b = onnx.detect(image)
    assert onnx.backend == "onnx" and len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.label == y.label and abs(x.score - y.score) < 1e-4
        np.testing.assert_allclose(x.region.center, y.region.center, atol=1e-3)
        np.testing.assert_allclose(x.region.size, y.region.size, atol=1e-3)


def test_box_matching_needs_the_same_class_and_near_identical_boxes():
    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    assert boxes_iou(box, box)[0, 0] == 1.0
    same = {"boxes": box, "labels": np.array([0])}
    assert _matched(same, same) == 1
    shifted = {"boxes": box + np.array([0.5, 0.0, 0.5, 0.0]), "labels": np.array([0])}  # IoU 0.905
    assert _matched(same, shifted) == 0
    assert _matched(same, {"boxes": box, "labels": np.array([1])}) == 0
    assert _matched(same, {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}) == 0


def test_tampered_detector_export_is_refused(detector, tmp_path):
    with pytest.raises(InvalidInputError, match="does not match its sha256"):
        Detector(_tampered(detector, tmp_path), device="cpu", backend="onnx")


# --- synthesis ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ddpm(tmp_path_factory):
    spec = synthesis_spec_for_tests(["benign", "malignant"], size=[16, 16])
    torch.manual_seed(0)
    net = build_diffusion_unet(spec.architecture.args)
    with torch.no_grad():  # MONAI zero-initialises the output layer: make the network act
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pkg = ModelPackage.save(tmp_path_factory.mktemp("syn") / "synth", spec, net.state_dict())
    export_onnx(pkg)
    return ModelPackage.load(pkg.path)


def test_ddpm_export_is_one_step_with_timestep_and_class_inputs(ddpm):
    rec = ddpm.spec.extra["backends"]
    par = _check_record(rec, 4)
    assert rec["onnx"]["inputs"] == ["x", "timesteps", "class_labels"]
    assert all(rec["onnx"]["dynamic_axes"][k] == {"0": "batch"} for k in rec["onnx"]["inputs"])
    assert par["decision_agreement"] == 1.0 and par["sampling_steps"] == 3
    assert par["sampling_max_abs_diff"] < 1e-4


def test_ddpm_samples_on_onnx_equal_torch_with_the_same_seed(ddpm, tmp_path):
    kw = {"seed": 4, "steps": 4, "guidance": 2.0}
    a = np.stack([im.array for im in Synthesizer(ddpm, backend="torch").sample(3, 1, **kw)])
    onnx = Synthesizer(ddpm, backend="onnx")
    b = np.stack([im.array for im in onnx.sample(3, 1, **kw)])
    assert onnx.backend == "onnx" and a.dtype == b.dtype == np.uint8
    assert np.abs(a.astype(int) - b).max() <= 1 and (a == b).mean() >= 0.99
    assert len(np.unique(a)) > 10  # the samples are images, not a constant
    # features hook the torch U-Net's middle block: the same on either backend
    imgs = Synthesizer(ddpm, backend="torch").sample(2, 0, seed=1, steps=2)
    np.testing.assert_allclose(onnx.features(imgs), Synthesizer(ddpm).features(imgs))
    with pytest.raises(InvalidInputError, match="does not match its sha256"):
        Synthesizer(_tampered(ddpm, tmp_path), backend="onnx")


def test_gan_generator_exports_and_samples_the_same_images(tmp_path):
    from medsight.inference.synth_gan import GAN_ARCH, build_gan_generator, gan_generator_args
    from medsight.models.spec import ArchitectureSpec

    base = synthesis_spec_for_tests(["a", "b"], size=[16, 16])
    args = gan_generator_args(1, 2, [8, 16], size=[16, 16], latent_dim=8)
    spec = base.model_copy(
        update={"architecture": ArchitectureSpec(name=GAN_ARCH, args=args), "extra": {}}
    )
    spec = spec.model_copy(update={"extra": {"output_dtype": "uint8"}})
    torch.manual_seed(0)
    pkg = ModelPackage.save(tmp_path / "gan", spec, build_gan_generator(args).state_dict())
    rec = export_onnx(pkg).record
    par = _check_record(rec, 4)
    assert rec["onnx"]["inputs"] == ["z", "labels"] and par["decision_agreement"] == 1.0
    pkg = ModelPackage.load(pkg.path)
    a = np.stack([im.array for im in Synthesizer(pkg, backend="torch").sample(5, "b", seed=2)])
    b = np.stack([im.array for im in Synthesizer(pkg, backend="onnx").sample(5, "b", seed=2)])
    assert np.abs(a.astype(int) - b).max() <= 1 and len(np.unique(a)) > 10
