"""``medsight train segment`` and ``medsight evaluate`` on a tiny MSD-layout data set."""

from __future__ import annotations

import json

import numpy as np

from medsight.cli.app import main
from medsight.core import Image
from medsight.io import write_image
from medsight.models import ModelPackage


def _msd(root):
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(8):
        mask = np.zeros((12, 12, 10), np.uint8)
        a = rng.integers(2, 6)
        mask[a : a + 5, 3:8, 2:7] = 1
        img = rng.normal(50, 5, mask.shape) + 40 * mask
        write_image(
            Image(img.astype(np.float32), spacing=(1, 1, 1.5)),
            root / "imagesTr" / f"blob_{i:03d}.nii.gz",
        )
        write_image(Image(mask, spacing=(1, 1, 1.5)), root / "labelsTr" / f"blob_{i:03d}.nii.gz")
    (root / "dataset.json").write_text(
        json.dumps(
            {"name": "blobs", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "blob"}}
        )
    )
    return root


def test_train_segment_then_evaluate(tmp_path, capsys):
    data = f"msd:{_msd(tmp_path / 'blobs')}"
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "segment",
            "--data",
            data,
            "--out",
            str(run),
            "--max-steps",
            "2",
            "--val-every",
            "1",
            "--device",
            "cpu",
            "--modality",
            "MR",
            "--name",
            "blobs",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "validation Dice blob" in capsys.readouterr().out
    for stage in ("splits.json", "plan.json", "preprocessed.npz", "checkpoint_latest.pt"):
        assert (run / stage).is_file()
    pkg = ModelPackage.load(run / "package")
    assert pkg.spec.input.spatial_ndim == 3 and pkg.spec.labels[0].name == "blob"
    # an edited plan.json is respected on the next run (here: it is re-read, not re-planned)
    plan = json.loads((run / "plan.json").read_text())
    assert plan["normalization"] == "zscore_nonzero"
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            str(run / "package"),
            "--data",
            data,
            "--out",
            str(out),
            "--splits",
            str(run / "splits.json"),
            "--n-resamples",
            "20",
        ]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "segmentation" and report["split"] == "test"
    names = {m["name"] for m in report["metrics"]}
    assert {"dice_blob", "hd95_blob", "asd_blob", "volume_diff_ml_blob"} <= names
    assert (out / "report.html").is_file()
    assert report["tta"] is True  # mirror TTA by default
    e2 = str(tmp_path / "e2")
    code = main(["evaluate", str(run / "package"), "--data", data, "--out", e2, "--splits",
                 str(run / "splits.json"), "--n-resamples", "20", "--no-tta"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "e2" / "report.json").read_text())["tta"] is False
