"""Outside a model's intended use, its output is withheld: no finding anywhere (safety issue)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from medsight.analysis.pipeline import analyze
from medsight.analysis.runners import run_package
from medsight.core.image import Image
from medsight.inference.features import package_features
from medsight.models.ood import OodReference, fit_reference
from medsight.models.package import ModelPackage
from medsight.models.scope import scope_problems


def _with(pkg: ModelPackage, **changes) -> ModelPackage:
    """The package with ``input`` / ``extra`` fields changed in its model.json."""
    path = pkg.path / "model.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        section, field = key.split("__")
        data[section][field] = value
    path.write_text(json.dumps(data, indent=2))
    return ModelPackage.load(pkg.path)


def _smooth(rng, n=1):
    """In-distribution images of the test: smooth blobs on a grey ramp, 16x16."""
    out = []
    for _ in range(n):
        y, x = np.mgrid[0:16, 0:16]
        cy, cx = rng.uniform(4, 12, 2)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / rng.uniform(6, 20))
        out.append(Image((blob + 0.02 * x + 0.05 * rng.normal(size=(16, 16))).T, spatial_ndim=2))
    return out


def _with_ood(pkg: ModelPackage) -> ModelPackage:
    rng = np.random.default_rng(0)
    ref = fit_reference(
        package_features(pkg, _smooth(rng, 200)), package_features(pkg, _smooth(rng, 100))
    )
    return _with(pkg, extra__ood=ref.save(pkg.path))


def test_colour_doppler_ultrasound_is_withheld_for_a_grey_model(
    tmp_path, pydicom_file, tiny_classifier
):
    pkg = _with(tiny_classifier("grey-us", modalities=("US",)), input__grey_only=True)
    out = tmp_path / "out"
    result = analyze(pydicom_file("examples_rgb_color.dcm"), out, [pkg])  # power Doppler
    run = result.report.models[0]
    assert run.status == "withheld"
    assert "Doppler" in run.reason and "grey-scale" in run.reason
    assert result.report.findings == []
    assert "Withheld" in result.report.impression and "grey-us" in result.report.impression
    assert not list(out.glob("overlay_*.png")), "no evidence picture of a withheld output"
    assert not (out / "dicom").exists(), "no SR / SEG / SC of a withheld output"
    bundle = json.loads((out / "fhir_bundle.json").read_text())
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert "Observation" not in kinds
    html = (out / "report.html").read_text()
    assert "Withheld: no answer given" in html and "Doppler" in html


def test_grey_ultrasound_stored_as_rgb_still_runs(tmp_path, pydicom_file, tiny_classifier):
    ds = pydicom.dcmread(pydicom_file("examples_rgb_color.dcm"))
    arr = ds.pixel_array.astype(np.float32)
    grey = arr @ np.array([0.299, 0.587, 0.114], np.float32)
    ds.PixelData = np.repeat(grey[..., None], 3, axis=-1).astype(np.uint8).tobytes()
    ds.save_as(tmp_path / "bmode.dcm")
    pkg = _with(tiny_classifier("grey-us", modalities=("US",)), input__grey_only=True)
    result = analyze(tmp_path / "bmode.dcm", tmp_path / "out", [pkg])
    assert result.report.models[0].status == "ran"


def test_declared_doppler_regions_and_palette_colour_are_out_of_scope(pydicom_file):
    from medsight.models.spec import InputSpec

    spec = InputSpec(modalities=["US"], spatial_ndim=2, grey_only=True)
    grey = Image(np.zeros((8, 8)), spatial_ndim=2)
    ds = pydicom.dcmread(pydicom_file("examples_palette.dcm"), stop_before_pixels=True)
    assert any("palette" in p for p in scope_problems(spec, grey, ds))
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.SequenceOfUltrasoundRegions[0].RegionDataType = 2
    assert any("colour flow Doppler" in p for p in scope_problems(spec, grey, ds))
    assert scope_problems(InputSpec(spatial_ndim=2), grey, ds) == []


def test_size_outside_the_intended_range_is_withheld(tiny_classifier):
    pkg = _with(tiny_classifier(), input__max_size=[64, 64], input__min_size=[8, 8])
    big = run_package(pkg, Image(np.zeros((200, 100)), spatial_ndim=2))
    assert big.withheld and "larger than the model is made for" in big.withheld[0]
    small = run_package(pkg, Image(np.zeros((4, 40)), spatial_ndim=2))
    assert small.withheld and "smaller" in small.withheld[0]
    assert run_package(pkg, Image(np.zeros((32, 32)), spatial_ndim=2)).withheld == ()


def test_features_unlike_the_training_data_are_withheld(tiny_classifier):
    pkg = _with_ood(tiny_classifier())
    inside = [run_package(pkg, im) for im in _smooth(np.random.default_rng(7), 40)]
    kept = [o for o in inside if not o.withheld]
    assert len(kept) >= 30, "in-distribution images mostly pass (5% target false rejection)"
    assert all(o.findings and o.ood_score is not None for o in kept)
    checker = Image(np.kron(np.indices((4, 4)).sum(0) % 2, np.ones((4, 4))) * 50.0, spatial_ndim=2)
    odd = run_package(pkg, checker)
    assert odd.withheld and "unlike the model's training data" in odd.withheld[0]
    assert odd.findings == [] and odd.heatmap is None and odd.ood_score > odd.ood_threshold


def test_ood_reference_is_checked_on_load(tiny_classifier):
    pkg = _with_ood(tiny_classifier())
    meta = pkg.spec.extra["ood"]
    ref = OodReference.load(pkg.path, meta)
    assert ref.means.shape[1] == meta["feature_dim"] and 0 < ref.val_rejection_rate <= 0.1
    (pkg.path / meta["file"]).write_bytes(b"changed")
    with pytest.raises(Exception, match="sha256"):
        OodReference.load(pkg.path, meta)
