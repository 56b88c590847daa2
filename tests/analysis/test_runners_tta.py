"""``medsight analyze --tta`` reaches the Segmenter; off by default."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from medsight.analysis import runners
from medsight.cli.app import main
from medsight.core import Image
from medsight.inference import segment
from medsight.io import write_image
from medsight.models import ModelPackage


@pytest.fixture
def seen_tta(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    seen: list[bool] = []
    original = segment.Segmenter.__init__

    def spy(self, package, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("tta", False))
        original(self, package, **kwargs)

    monkeypatch.setattr(segment.Segmenter, "__init__", spy)
    return seen


def test_run_package_passes_tta(seen_tta: list[bool]) -> None:
    pkg = ModelPackage.load(Path(str(files("medsight") / "zoo" / "busi-lesion-dynunet")))
    rng = np.random.default_rng(0)
    image = Image(rng.uniform(0, 255, (48, 40)).astype(np.float32), spacing=(0.1, 0.1))
    scores = []
    for tta in (False, True):
        out = runners.run_package(pkg, image, explain=False, tta=tta)
        # uniform noise is nothing like a breast ultrasound: withheld, with or without TTA
        assert out.withheld and out.mask is None and out.findings == []
        scores.append(out.ood_score)
    assert seen_tta == [False, True]
    assert scores[0] == pytest.approx(scores[1], rel=1e-5), "OOD uses the un-mirrored pass only"


def test_analyze_cli_tta_flag(seen_tta: list[bool], tmp_path: Path) -> None:
    path = tmp_path / "us.png"
    rng = np.random.default_rng(1)
    write_image(Image(rng.uniform(0, 255, (48, 40)).astype(np.uint8)), path)
    busi = str(files("medsight") / "zoo" / "busi-lesion-dynunet")
    code = main(["analyze", str(path), "--modality", "US", "--model", busi, "--no-dicom",
                 "--out", str(tmp_path / "out"), "--tta"])  # fmt: skip
    assert code == 0
    assert seen_tta == [True]
