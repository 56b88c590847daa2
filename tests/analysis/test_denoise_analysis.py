"""`run_package` on a denoising package: no findings, the denoised image; scope withheld."""

from __future__ import annotations

import numpy as np

from medsight.analysis.runners import run_package
from medsight.core.image import Image
from medsight.models.demo import demo_denoiser
from medsight.models.package import ModelPackage


def _identity(path) -> ModelPackage:
    return demo_denoiser(path, name="mr-identity", version="1")


def test_run_package_returns_the_denoised_image_and_withholds_out_of_scope(tmp_path):
    pkg = _identity(tmp_path / "pkg")
    arr = np.random.default_rng(0).normal(100, 10, (16, 12)).astype(np.float32)
    out = run_package(pkg, Image(arr, spacing=(0.5, 0.5), modality="MR"))
    assert out.findings == [] and not out.withheld and out.plausibility is not None
    assert out.derived is not None and out.derived.meta["derived_by"] == "mr-identity@1"
    np.testing.assert_allclose(out.derived.array, arr, atol=0.01)
    ct = run_package(pkg, Image(arr, modality="CT"))
    assert ct.derived is None and "modality is CT" in ct.withheld[0]


def test_a_2d_denoiser_takes_a_volume_slice_by_slice(tmp_path):
    pkg = _identity(tmp_path / "pkg")
    vol = np.random.default_rng(1).normal(100, 10, (16, 12, 3)).astype(np.float32)
    out = run_package(pkg, Image(vol, spacing=(0.5, 0.5, 2.0), modality="MR"))
    assert not out.withheld and out.derived is not None
    assert out.derived.shape == vol.shape
    np.testing.assert_allclose(out.derived.affine, Image(vol, spacing=(0.5, 0.5, 2.0)).affine)


def test_analyze_shows_before_after_and_writes_the_denoised_volume(tmp_path):
    from medsight.analysis.pipeline import analyze
    from medsight.io import read_image, write_image

    pkg = _identity(tmp_path / "pkg")
    vol = np.random.default_rng(2).normal(100, 10, (16, 12, 4)).astype(np.float32)
    src = write_image(Image(vol, spacing=(0.5, 0.5, 2.0), modality="MR"), tmp_path / "mr.nii.gz")
    result = analyze(src, tmp_path / "out", [pkg], modality="MR", dicom_outputs=False)
    report = result.report
    assert [r.status for r in report.models] == ["ran"] and report.findings == []
    assert any(img.file.startswith("denoised_") for img in report.images)
    denoised = read_image(tmp_path / "out" / report.outputs["denoised mr-identity@1"])
    assert denoised.shape == vol.shape
    assert "before" in (tmp_path / "out" / "report.html").read_text()


def test_the_default_zoo_runs_denoisers_only_when_asked(tmp_path, monkeypatch):
    from medsight.analysis import pipeline
    from medsight.models import zoo

    den = _identity(tmp_path / "pkg")
    others = list(zoo.zoo_packages()[0][:1])
    monkeypatch.setattr(zoo, "zoo_packages", lambda: ([*others, den], []))
    assert den not in pipeline._resolve_packages(None)[0]
    assert den in pipeline._resolve_packages(None, denoise=True)[0]
    assert others[0] in pipeline._resolve_packages(None)[0]
