"""Denoising metrics against scikit-image, and the evaluation report with its CIs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medsight.core import Case, Image, Split
from medsight.core.errors import InvalidInputError
from medsight.data.dataset import Dataset
from medsight.evaluation.denoise import evaluate_denoiser, image_psnr, image_ssim, psnr, ssim
from medsight.models.demo import demo_denoiser
from medsight.models.package import ModelPackage


def _identity_package(path) -> ModelPackage:
    return demo_denoiser(path, name="identity", version="1")


def test_psnr_and_ssim_match_scikit_image():
    # reference values: scikit-image 0.26 peak_signal_noise_ratio / structural_similarity
    rng = np.random.default_rng(0)
    ref = rng.random((32, 32)) * 200
    test = ref + rng.normal(0, 10, ref.shape)
    assert psnr(test, ref, data_range=200) == pytest.approx(
        peak_signal_noise_ratio(ref, test, data_range=200)
    )
    assert ssim(test, ref, data_range=200) == pytest.approx(
        structural_similarity(test, ref, data_range=200, win_size=7)
    )
    assert image_psnr(test, ref) == pytest.approx(
        peak_signal_noise_ratio(ref, test, data_range=ref.max() - ref.min())
    )
    vol = np.stack([ref, ref[::-1]], axis=2)
    assert image_ssim(vol + 1, vol) == pytest.approx(
        np.mean([ssim(vol[:, :, k] + 1, vol[:, :, k], data_range=np.ptp(vol)) for k in range(2)])
    )
    assert psnr(ref, ref, data_range=1) == float("inf")


def test_evaluate_writes_json_html_and_figure_with_cis(tmp_path):
    pkg = _identity_package(tmp_path / "pkg")
    rng = np.random.default_rng(1)
    cases = []
    for i in range(4):
        arr = np.zeros((24, 20, 3), np.float32)
        arr[4:18, 5:15] = rng.uniform(100, 200)
        img = Image(arr, spacing=(1, 1, 2), modality="MR")
        cases.append(
            Case(
                f"c{i}",
                patient_id=f"p{i // 2}",
                images={"image": img},
                split=Split.TEST,
                attributes={"site": "ab"[i % 2]},
            )
        )
    ds = Dataset("boxes", cases)
    report = evaluate_denoiser(pkg, ds, tmp_path / "eval", n_resamples=50, by=["site"])
    on_disk = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert on_disk["noise"] == {"model": "rician", "levels": [2.0, 6.0, 10.0], "seed": 0}
    assert report["split"] == "test" and report["n_cases"] == 4 and len(report["cases"]) == 12
    by_name = {m["name"]: m for m in on_disk["metrics"]}
    gain = by_name["psnr_gain@6"]
    assert gain["value"] == pytest.approx(0.0, abs=0.05)  # the identity changes nothing
    noisy = by_name["psnr_noisy@2"]
    assert noisy["low"] <= noisy["value"] <= noisy["high"] and noisy["n_valid"] == 50
    assert by_name["psnr_noisy@2"]["value"] > by_name["psnr_noisy@10"]["value"]
    assert set(report["subgroups"]) == {"site=a", "site=b"}
    assert (tmp_path / "eval" / "report.html").read_text().count("psnr_gain@") == 3
    assert (
        report["figure"] == "before_after.png"
        and (tmp_path / "eval" / "before_after.png").stat().st_size > 0
    )
    again = evaluate_denoiser(pkg, ds, tmp_path / "eval2", n_resamples=50)
    assert again["cases"] == [{k: v for k, v in r.items() if k != "site"} for r in report["cases"]]


def _disc(size: int = 64, radius: float = 10.0) -> np.ndarray:
    i, j = np.mgrid[:size, :size]
    return (i - size / 2) ** 2 + (j - size / 2) ** 2 <= radius**2


def test_lesion_cnr_on_a_noisy_disc_matches_the_closed_form():
    from medsight.evaluation.denoise import lesion_contrast

    disc = _disc()
    clean = np.where(disc, 100.0, 50.0)
    noisy = clean + np.random.default_rng(0).normal(0, 10, clean.shape)
    r = lesion_contrast(noisy, disc, ring=5)
    # independent value: contrast 50 over noise sqrt(10^2 + 10^2) (the CNR's definition)
    assert r.cnr == pytest.approx(50 / np.sqrt(200), rel=0.08)
    assert r.contrast == pytest.approx(50, abs=2) and r.n_inside == disc.sum()
    # the ring is background only: its mean is the background's, not pulled up by the disc
    assert r.ring_mean == pytest.approx(50, abs=2)
    # removing 70 % of the noise keeps the contrast and raises the CNR 1 / 0.3 times;
    # painting the lesion away lowers both
    cleaner = lesion_contrast(clean + 0.3 * (noisy - clean), disc, ring=5)
    assert cleaner.cnr == pytest.approx(r.cnr / 0.3, rel=0.1)
    assert cleaner.contrast == pytest.approx(r.contrast, rel=0.05)
    faded = lesion_contrast(np.where(disc, 0.2 * noisy + 0.8 * 50, noisy), disc, ring=5)
    assert faded.contrast < 0.3 * r.contrast and faded.cnr < r.cnr
    # no lesion: noise alone gives a CNR near 0
    assert lesion_contrast(np.random.default_rng(1).normal(50, 10, disc.shape), disc).cnr < 0.2


def test_lesion_cnr_refuses_an_empty_or_mismatched_mask():
    from medsight.evaluation.denoise import lesion_contrast

    img = np.zeros((16, 16))
    with pytest.raises(InvalidInputError, match="empty"):
        lesion_contrast(img, np.zeros((16, 16), bool))
    with pytest.raises(InvalidInputError, match="differs"):
        lesion_contrast(img, np.ones((8, 8), bool))
    with pytest.raises(InvalidInputError, match="covers the image"):
        lesion_contrast(img, np.ones((16, 16), bool))
