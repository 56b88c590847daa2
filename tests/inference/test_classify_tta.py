"""Classification test-time augmentation in the Predictor: the package's views, averaged.

Reference values are computed independently here: the per-view probabilities of the same
package run without TTA, flipped with ``numpy.flip``, averaged with ``numpy.mean``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsight.core import Image
from medsight.inference.cache import ModelCache
from medsight.inference.classify import Predictor
from medsight.inference.features import package_features
from medsight.models import ModelPackage
from medsight.models.demo import demo_classifier
from medsight.models.package import PackageError
from medsight.models.tta import TTASpec

ALL_FLIPS = ["identity", "flip:0", "flip:1", "flip:0,1"]


def _repackaged(pkg, folder, **update):
    """``pkg``'s weights with spec fields replaced (e.g. ``tta``, ``temperature``)."""
    spec = pkg.spec.model_copy(update=update)
    return ModelPackage.save(folder, spec, pkg.state_dict())


def _inputs(n=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, 16, 16)).astype(np.float32)


def _flip(x, name):
    axes = () if name == "identity" else tuple(int(a) for a in name.split(":")[1].split(","))
    return np.flip(x, axis=tuple(2 + a for a in axes)) if axes else x


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return demo_classifier(tmp_path_factory.mktemp("cls"))


def test_predictor_with_tta_is_the_mean_of_the_per_view_probabilities(base, tmp_path):
    tta = TTASpec(enabled=True, transforms=ALL_FLIPS, val_metric_with=0.9, val_metric_without=0.8)
    pkg = _repackaged(base, tmp_path / "tta", tta=tta)
    x = _inputs()
    plain = Predictor(pkg, tta=False)
    per_view = [plain.predict_arrays(np.ascontiguousarray(_flip(x, v))) for v in ALL_FLIPS]
    with_tta = Predictor(pkg)
    assert with_tta.views == [(), (0,), (1,), (0, 1)]
    assert np.allclose(with_tta.predict_arrays(x), np.mean(per_view, axis=0), atol=1e-12)
    # the views change the answer (the network is not flip-invariant), and the identity-only
    # Predictor is the package without the field, bit for bit
    assert not np.allclose(with_tta.predict_arrays(x), per_view[0], atol=1e-6)
    assert np.array_equal(plain.predict_arrays(x), Predictor(base).predict_arrays(x))
    # predict_many (analyze, batch) goes through the same average
    images = [Image(x[i, 0]) for i in range(2)]
    probs = np.stack([p.probabilities for p in with_tta.predict_many(images)])
    xs = np.stack([with_tta.preprocess(im) for im in images])
    assert np.allclose(probs, with_tta.predict_arrays(xs), atol=1e-12)


def test_calibration_is_applied_to_the_view_average(base, tmp_path):
    """A temperature calibrates the averaged probability (the trainer fits it there)."""
    tta = TTASpec(enabled=True, transforms=["identity", "flip:1"])
    pkg = _repackaged(base, tmp_path / "t", tta=tta, temperature=2.0)
    x = _inputs(seed=1)
    raw = _repackaged(base, tmp_path / "raw")  # no temperature, no TTA: softmax of the logits
    mean = np.mean([Predictor(raw).predict_arrays(_flip(x, v).copy()) for v in tta.transforms], 0)
    expected = np.exp(np.log(mean) / 2.0)
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.allclose(Predictor(pkg).predict_arrays(x), expected, atol=1e-9)


def test_disabled_or_missing_tta_runs_the_identity_only(base, tmp_path):
    off = TTASpec(enabled=False, transforms=ALL_FLIPS, val_metric_with=0.80, val_metric_without=0.8)
    pkg = _repackaged(base, tmp_path / "off", tta=off)
    x = _inputs(seed=2)
    assert Predictor(pkg).views == [()] and Predictor(base).views == [()]
    assert np.array_equal(Predictor(pkg).predict_arrays(x), Predictor(base).predict_arrays(x))


def test_model_cache_keeps_tta_and_identity_predictors_apart(base, tmp_path):
    tta = TTASpec(enabled=True, transforms=ALL_FLIPS)
    pkg = _repackaged(base, tmp_path / "tta", tta=tta)
    cache = ModelCache(4)
    with_tta = cache.get(Predictor, pkg)
    identity = cache.get(Predictor, pkg, tta=False)
    assert with_tta is not identity and cache.get(Predictor, pkg) is with_tta
    x = _inputs(seed=3)
    assert not np.allclose(with_tta.predict_arrays(x), identity.predict_arrays(x), atol=1e-6)
    # switching TTA off in model.json is a new package for the cache, not the old Predictor
    data = json.loads((pkg.path / "model.json").read_text())
    data["tta"]["enabled"] = False
    (pkg.path / "model.json").write_text(json.dumps(data, indent=2) + "\n")
    rebuilt = cache.get(Predictor, pkg.path)
    assert rebuilt is not with_tta and rebuilt.views == [()]


def test_features_for_the_ood_gate_stay_on_the_identity_view(base, tmp_path):
    pkg = _repackaged(base, tmp_path / "tta", tta=TTASpec(enabled=True, transforms=ALL_FLIPS))
    images = [Image(_inputs(3, seed=4)[i, 0]) for i in range(3)]
    assert np.array_equal(package_features(pkg, images), package_features(base, images))


def test_onnx_backend_averages_the_same_views(base, tmp_path):
    pytest.importorskip("onnxruntime")
    from medsight.inference.onnx_backend import export_onnx

    tta = TTASpec(enabled=True, transforms=ALL_FLIPS)
    pkg = ModelPackage.load(export_onnx(_repackaged(base, tmp_path / "tta", tta=tta)).package)
    x = _inputs(seed=5)
    onnx = Predictor(pkg, backend="onnx")
    assert onnx.backend == "onnx" and onnx.views == [(), (0,), (1,), (0, 1)]
    assert np.allclose(onnx.predict_arrays(x), Predictor(pkg, backend="torch").predict_arrays(x),
                       atol=1e-5)  # fmt: skip


def test_tta_spec_is_checked_against_the_input(base, tmp_path):
    pkg = _repackaged(base, tmp_path / "tta", tta=TTASpec(enabled=True, transforms=ALL_FLIPS))
    data = json.loads((pkg.path / "model.json").read_text())
    data["tta"]["transforms"] = ["identity", "flip:2"]  # a 2D input has spatial axes 0 and 1
    (pkg.path / "model.json").write_text(json.dumps(data))
    with pytest.raises(PackageError, match="tta flips spatial axes"):
        ModelPackage.load(pkg.path)
    data["tta"]["transforms"] = ["flip:0", "identity"]
    (pkg.path / "model.json").write_text(json.dumps(data))
    with pytest.raises(PackageError, match="must start with 'identity'"):
        ModelPackage.load(pkg.path)
    data["tta"]["transforms"] = ["identity", "rotate:90"]
    (pkg.path / "model.json").write_text(json.dumps(data))
    with pytest.raises(PackageError, match="neither 'identity' nor 'flip"):
        ModelPackage.load(pkg.path)


def test_analysis_reports_the_tta_probabilities(base, tmp_path):
    from medsight.analysis.classification import analyze_classification
    from medsight.analysis.output import RunOptions

    pkg = _repackaged(base, tmp_path / "tta", tta=TTASpec(enabled=True, transforms=ALL_FLIPS))
    image = Image(_inputs(1, seed=6)[0, 0])
    out = analyze_classification(pkg, image, RunOptions(explain=True))
    expected = Predictor(pkg).predict_arrays(Predictor(pkg).preprocess(image)[None])[0]
    identity = Predictor(pkg, tta=False).predict_arrays(Predictor(pkg).preprocess(image)[None])[0]
    assert out.probabilities["tumour"] == pytest.approx(expected[1], abs=1e-12)
    assert out.probabilities["tumour"] != pytest.approx(identity[1], abs=1e-6)
    assert out.heatmap is not None and out.heatmap.array.shape == image.array.shape
