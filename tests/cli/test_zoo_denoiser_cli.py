"""``medsight denoise`` without ``--model``: the shipped zoo MR denoiser, and CT refused."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
import pydicom
from tests.cli.test_denoise_cli import dicom_series

from medsight.cli.app import main
from medsight.core import Image
from medsight.io import read_image, write_image
from medsight.models.package import ModelPackage

ZOO_ID = "mr-denoiser-unet@0.1.0"


def _phantom(n: int = 40) -> np.ndarray:
    """A noisy disc on a dark background, like a small MR magnitude slice."""
    i, j = np.mgrid[:n, :n]
    disc = ((i - n / 2) ** 2 + (j - n / 2) ** 2 < (n / 3) ** 2) * 400.0 + 20.0
    noise = np.random.default_rng(0).normal(0, 25, (n, n))
    return np.abs(disc + noise)


def _series(folder: Path, modality: str, n: int = 2) -> Path:
    plane = np.round(_phantom()).astype(np.uint16)
    return dicom_series(folder, modality, [plane] * n, spacing=1.0, description="t1")


def test_the_zoo_package_is_a_small_verified_mr_denoiser():
    folder = Path(str(files("medsight") / "zoo" / "mr-denoiser-unet"))
    pkg = ModelPackage.load(folder)
    assert pkg.id == ZOO_ID and pkg.spec.task.value == "denoising"
    assert pkg.spec.input.modalities == ["MR"]
    assert pkg.spec.extra["noise"]["model"] == "rician"
    assert pkg.spec.training_data.license == "CC BY-SA 4.0"
    assert sum(f.stat().st_size for f in folder.iterdir()) < 5 * 2**20
    assert "scripts/train_zoo_denoiser.py" in (folder / "MODEL_CARD.md").read_text()


def test_mr_without_model_uses_the_zoo_denoiser(tmp_path, capsys):
    write_image(Image(_phantom().astype(np.float32)[:, :, None]), tmp_path / "mr.nii.gz")
    out = tmp_path / "out.nii.gz"
    args = ["denoise", str(tmp_path / "mr.nii.gz"), "--out", str(out), "--device", "cpu"]
    assert main([*args, "--modality", "MR"]) == 0
    assert ZOO_ID in capsys.readouterr().out
    before, after = read_image(tmp_path / "mr.nii.gz").array, read_image(out).array
    assert after.shape == before.shape and np.isfinite(after).all()
    assert not np.array_equal(after, before)
    # without --modality a NIfTI has no modality: refused, naming the zoo denoiser
    assert main([*args[:-2], "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown modality" in err and ZOO_ID in err

    mr = _series(tmp_path / "mr_dicom", "MR")
    assert main(["denoise", str(mr), "--out", str(tmp_path / "den"), "--device", "cpu"]) == 0
    assert ZOO_ID in capsys.readouterr().out
    written = sorted(p for p in (tmp_path / "den").iterdir() if p.is_file())
    assert len(written) == 2
    assert ZOO_ID in pydicom.dcmread(written[0]).DerivationDescription


def test_ct_without_model_is_refused(tmp_path, capsys):
    ct = _series(tmp_path / "ct", "CT")
    code = main(["denoise", str(ct), "--out", str(tmp_path / "x"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "no default denoiser for CT" in err and ZOO_ID in err
    assert not (tmp_path / "x").exists()
