"""The model cache: one built predictor per package and options, safe to share between threads.

The thread tests run one cached predictor from several threads at once on different inputs
and compare with what each input gets from a predictor of its own; the interpreter's switch
interval is shortened so that the threads interleave inside every call.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medsight.core import Image, InvalidInputError
from medsight.inference import cache as model_cache
from medsight.inference.cache import ModelCache, cached_model, model_lock


class _Built:
    def __init__(self, package: Any, **options: Any) -> None:
        self.package = package
        self.options = options


@contextlib.contextmanager
def _interleaved() -> Iterator[None]:
    """Threads switch every few microseconds (the default 5 ms hides most races)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _run_threads(work: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(work)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = work[i]()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    with _interleaved():
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    if errors:
        raise errors[0]
    return results


def _package_folder(tmp_path: Path, name: str = "pkg") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.json").write_text('{"threshold": 0.5}')
    (folder / "weights.safetensors").write_bytes(b"\0" * 64)
    return folder


def test_same_package_and_options_give_the_same_object(tmp_path: Path) -> None:
    folder = _package_folder(tmp_path)
    cache = ModelCache(size=4)
    a = cache.get(_Built, folder, device="cpu", tta=False)
    assert cache.get(_Built, str(folder), tta=False, device="cpu") is a  # path spelling, order
    assert cache.get(_Built, folder, device="cpu", tta=True) is not a  # other options
    assert cache.get(_Built, tmp_path / "pkg" / ".." / "pkg", device="cpu", tta=False) is a
    assert (cache.builds, cache.hits, len(cache)) == (2, 2, 2)


def test_factories_with_the_same_name_are_kept_apart(tmp_path: Path) -> None:
    folder = _package_folder(tmp_path)
    cache = ModelCache(size=4)
    factories = [lambda p, tag=tag: (tag, p) for tag in ("a", "b")]  # same __qualname__
    assert [cache.get(f, folder)[0] for f in factories] == ["a", "b"]


def test_a_package_rewritten_in_place_is_built_anew(tmp_path: Path) -> None:
    folder = _package_folder(tmp_path)
    cache = ModelCache(size=4)
    first = cache.get(_Built, folder)
    other_options = cache.get(_Built, folder, tta=True)
    # the same length, at once: the modification time may not even have ticked
    (folder / "model.json").write_text('{"threshold": 0.7}')
    second = cache.get(_Built, folder)
    assert second is not first
    assert cache.get(_Built, folder) is second
    assert len(cache) == 1, "the stale predictor of the other options is dropped too"
    (folder / "model.onnx").write_bytes(b"\1" * 300_000)  # re-exported: a new large file
    assert cache.get(_Built, folder, tta=True) is not other_options


def test_least_recently_used_is_evicted(tmp_path: Path) -> None:
    a, b, c = (_package_folder(tmp_path, n) for n in "abc")
    cache = ModelCache(size=2)
    built_a = cache.get(_Built, a)
    built_b = cache.get(_Built, b)
    assert cache.get(_Built, a) is built_a  # a is now the most recent
    cache.get(_Built, c)  # evicts b
    assert len(cache) == 2
    assert cache.get(_Built, a) is built_a
    assert cache.get(_Built, b) is not built_b
    cache.resize(1)
    assert len(cache) == 1


def test_size_zero_builds_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _package_folder(tmp_path)
    monkeypatch.setenv(model_cache.ENV_SIZE, "0")
    cache = ModelCache()
    assert cache.size == 0
    assert cache.get(_Built, folder) is not cache.get(_Built, folder)
    assert len(cache) == 0
    monkeypatch.setenv(model_cache.ENV_SIZE, "lots")
    with pytest.raises(InvalidInputError, match="MEDSIGHT_MODEL_CACHE"):
        ModelCache()
    with pytest.raises(InvalidInputError, match="whole number"):
        ModelCache(size=-1)


def test_unhashable_options_and_missing_folders_build_uncached(tmp_path: Path) -> None:
    folder = _package_folder(tmp_path)
    cache = ModelCache(size=4)
    assert cache.get(_Built, folder, sizes=[1, 2]) is not cache.get(_Built, folder, sizes=[1, 2])
    assert cache.get(_Built, tmp_path / "gone") is not cache.get(_Built, tmp_path / "gone")
    in_memory = types.SimpleNamespace(path=None)  # a stand-in package without a folder
    assert cache.get(_Built, in_memory) is not cache.get(_Built, in_memory)
    assert len(cache) == 0


def test_two_threads_asking_at_once_build_once(tmp_path: Path) -> None:
    folder = _package_folder(tmp_path)
    cache = ModelCache(size=4)
    calls: list[int] = []

    def slow(package: Any) -> object:
        calls.append(1)
        time.sleep(0.2)
        return object()

    got = _run_threads([lambda: cache.get(slow, folder) for _ in range(4)])
    assert len(calls) == 1
    assert all(g is got[0] for g in got)


def test_a_failed_build_is_not_cached_and_is_retried(tmp_path: Path) -> None:
    folder = _package_folder(tmp_path)
    cache = ModelCache(size=4)
    attempts: list[int] = []

    def flaky(package: Any) -> object:
        attempts.append(1)
        if len(attempts) == 1:
            raise InvalidInputError("weights", "are being rewritten")
        return object()

    with pytest.raises(InvalidInputError):
        cache.get(flaky, folder)
    built = cache.get(flaky, folder)
    assert cache.get(flaky, folder) is built and len(attempts) == 2


def test_model_lock_is_one_per_model() -> None:
    net = torch.nn.Linear(2, 2)
    assert model_lock(net) is model_lock(net)
    assert model_lock(net) is not model_lock(torch.nn.Linear(2, 2))


# -- one shared predictor, several threads ------------------------------------------------


def _images(n: int) -> list[Image]:
    rng = np.random.default_rng(7)
    # different contents and sizes (each is resized to the package's 16 x 16)
    return [Image(rng.normal(100, 30, (16 + 4 * k, 20)).astype(np.float32)) for k in range(n)]


def _features_and_cam(predictor: Any, image: Image) -> tuple[np.ndarray, ...]:
    """What the classification analysis does with its predictor: features, then Grad-CAM."""
    from medsight.explain import explain_classifier
    from medsight.inference.features import capture

    x = predictor.preprocess(image)
    with capture(predictor.network, "classifier") as grab:
        proba = predictor.predict_arrays(x[None])[0]
    heat = explain_classifier(predictor.network, torch.from_numpy(x)[None], image, 1)
    return proba, grab.vectors(), np.asarray(heat.array)


def test_threads_sharing_a_predictor_get_exactly_their_own_results(tiny_classifier) -> None:
    from medsight.inference.classify import Predictor

    package = tiny_classifier()
    images = _images(4)
    alone = [_features_and_cam(Predictor(package), im) for im in images]
    shared = cached_model(Predictor, package)
    assert cached_model(Predictor, package) is shared
    barrier = threading.Barrier(len(images), timeout=60)

    def rounds(k: int) -> list[tuple[np.ndarray, ...]]:
        out = []
        try:
            for _ in range(25):
                barrier.wait()
                out.append(_features_and_cam(shared, images[k]))
        except BaseException:
            barrier.abort()  # the other threads stop waiting for this one
            raise
        return out

    results = _run_threads([lambda k=k: rounds(k) for k in range(len(images))])
    for k, per_round in enumerate(results):
        for proba, features, heat in per_round:
            np.testing.assert_array_equal(proba, alone[k][0])
            assert features.shape == alone[k][1].shape, "a hook recorded another thread's pass"
            np.testing.assert_array_equal(features, alone[k][1])
            np.testing.assert_array_equal(heat, alone[k][2])
    net = shared.network
    left = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in net.modules())
    assert left == 0, "every hook is removed when its call ends"


def test_analyses_sharing_a_cached_predictor_match_their_solo_runs(tiny_classifier) -> None:
    from medsight.analysis.classification import analyze_classification
    from medsight.analysis.output import RunOptions

    package = tiny_classifier()
    images = _images(3)
    options = RunOptions(explain=True)

    def analyse(image: Image) -> tuple[dict[str, float], np.ndarray]:
        out = analyze_classification(package, image, options)
        assert out.heatmap is not None
        return out.probabilities, np.asarray(out.heatmap.array)

    model_cache.configure(0)  # every solo run builds its own predictor
    try:
        alone = [analyse(im) for im in images]
    finally:
        model_cache.configure(model_cache.DEFAULT_SIZE)
    builds = model_cache.default_cache().builds
    work = [lambda im=im: [analyse(im) for _ in range(15)] for im in images]
    results = _run_threads(work)
    for k, per_round in enumerate(results):
        for probabilities, heat in per_round:
            assert probabilities == alone[k][0]
            np.testing.assert_array_equal(heat, alone[k][1])
    assert model_cache.default_cache().builds == builds + 1  # one predictor for them all


def test_grad_cam_is_monai_s_arithmetic_without_its_hooks(tiny_classifier) -> None:
    # reference: MONAI's GradCAM on a network of its own (its hooks stay on that network)
    from monai.visualize import GradCAM

    from medsight.explain.cam import grad_cam, last_conv_layer
    from medsight.inference.classify import Predictor

    package = tiny_classifier()
    x = torch.from_numpy(np.random.default_rng(3).normal(0, 1, (1, 1, 16, 16)).astype("f4"))
    reference_net = Predictor(package).network
    layer = last_conv_layer(reference_net)
    cam = GradCAM(reference_net, target_layers=layer, postprocessing=lambda t: t)
    expected = cam(x.clone().requires_grad_(True), class_idx=1).detach()
    net = Predictor(package).network
    got = grad_cam(net, x, 1, layer)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert all(p.grad is None for p in net.parameters()), "no gradient left on the weights"
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in net.modules()) == 0


def _random_detector(tmp_path: Path) -> Path:
    """A random-weight 2D detection package without a fixed input size (any image shape)."""
    from medsight.models.package import ModelPackage
    from medsight.models.registry import build_network
    from medsight.models.spec import (
        ArchitectureSpec,
        InputSpec,
        LabelSpec,
        ModelSpec,
        PreprocessingSpec,
        Task,
    )

    torch.manual_seed(0)
    arch = ArchitectureSpec(
        name="retinanet",
        args={
            "spatial_dims": 2,
            "in_channels": 1,
            "num_classes": 1,
            "anchor_shapes": [[8, 8], [16, 12]],
            "block_inplanes": [4, 8, 8],
            "fpn_channels": 8,
        },
    )
    spec = ModelSpec(
        name="tiny-det",
        version="0.0.1",
        task=Task.DETECTION,
        architecture=arch,
        input=InputSpec(spatial_ndim=2, channels=1),
        preprocessing=PreprocessingSpec(),
        labels=[LabelSpec(index=0, name="disc")],
        thresholds={"score": 0.0},
        extra={"detector": {"score_floor": 0.0, "max_detections": 20}},
    )
    return ModelPackage.save(tmp_path / "det", spec, build_network(arch).state_dict()).path


def test_threads_sharing_a_detector_of_different_image_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MONAI's detector stores the anchors of the image it runs on itself, then reads them back
    # for the boxes; a pause between the two (a thread switch) is made certain here
    from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector

    from medsight.inference.detect import Detector

    folder = _random_detector(tmp_path)
    rng = np.random.default_rng(5)
    images = [Image(rng.uniform(0, 255, s).astype(np.float32)) for s in ((64, 64), (96, 80))]

    def boxes(detector: Detector, image: Image) -> list[tuple[Any, ...]]:
        return [(d.region.center, d.region.size, d.score) for d in detector.detect(image)]

    alone = [boxes(Detector(folder, device="cpu"), im) for im in images]
    assert all(alone), "the random detector reports boxes above a floor of 0"
    store_anchors = RetinaNetDetector.generate_anchors

    def then_pause(self: Any, *args: Any) -> None:
        store_anchors(self, *args)
        time.sleep(0.2)

    monkeypatch.setattr(RetinaNetDetector, "generate_anchors", then_pause)
    shared = cached_model(Detector, folder, device="cpu")
    work = [lambda im=im: [boxes(shared, im) for _ in range(5)] for im in images]
    for k, per_round in enumerate(_run_threads(work)):
        assert all(r == alone[k] for r in per_round)


def test_serve_settings_size_the_process_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from medsight.service.app import create_app
    from medsight.service.settings import ServiceSettings

    monkeypatch.setenv(model_cache.ENV_SIZE, "3")  # MEDSIGHT_MODEL_CACHE, as the cache reads it
    settings = ServiceSettings(home=tmp_path / "home", run_worker=False)
    assert settings.model_cache == 3
    try:
        create_app(settings)
        assert model_cache.default_cache().size == 3
        create_app(settings.model_copy(update={"model_cache": 0}))
        folder = _package_folder(tmp_path)
        assert cached_model(_Built, folder) is not cached_model(_Built, folder)
    finally:
        model_cache.configure(model_cache.DEFAULT_SIZE)
    with pytest.raises(ValidationError):
        ServiceSettings(home=tmp_path / "home", model_cache=-1)


def test_threads_sharing_a_risk_encoder_embed_their_own_images() -> None:
    # RiskNet.embed hooks its encoder's last linear layer for the call
    from medsight.models.fusion import RiskNet

    torch.manual_seed(0)
    encoder = {
        "name": "classifier",
        "args": {"in_shape": [1, 16, 16], "classes": 2, "channels": [4, 8], "strides": [2, 2]},
    }
    net = RiskNet(arch="image", embed_dim=128, clin_dim=1, hidden=4, encoder=encoder).eval()
    rng = np.random.default_rng(1)
    inputs = [torch.from_numpy(rng.normal(0, 1, (1 + k, 1, 16, 16)).astype("f4")) for k in range(4)]
    alone = [net.embed(x) for x in inputs]
    work = [lambda x=x: [net.embed(x) for _ in range(40)] for x in inputs]
    for k, per_round in enumerate(_run_threads(work)):
        for got in per_round:
            torch.testing.assert_close(got, alone[k], rtol=0, atol=0)
