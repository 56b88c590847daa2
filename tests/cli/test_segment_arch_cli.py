"""``medsight train segment --arch`` and an edited plan.json the network cannot take."""

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
    for i in range(6):
        mask = np.zeros((12, 12, 10), np.uint8)
        a = rng.integers(2, 6)
        mask[a : a + 5, 3:8, 2:7] = 1
        img = rng.normal(50, 5, mask.shape) + 40 * mask
        write_image(Image(img.astype(np.float32)), root / "imagesTr" / f"b_{i:03d}.nii.gz")
        write_image(Image(mask), root / "labelsTr" / f"b_{i:03d}.nii.gz")
    (root / "dataset.json").write_text(
        json.dumps({"name": "b", "modality": {"0": "MRI"}, "labels": {"0": "bg", "1": "blob"}})
    )
    return f"msd:{root}"


def _args(data, run, *extra):
    return ["train", "segment", "--data", data, "--out", str(run), "--max-steps", "1",
            "--val-every", "1", "--device", "cpu", *extra]  # fmt: skip


def test_arch_sets_the_network_and_a_valid_patch(tmp_path, capsys):
    data, run = _msd(tmp_path / "b"), tmp_path / "run"
    assert main(_args(data, run, "--arch", "segresnet")) == 0, capsys.readouterr().err
    assert "network segresnet" in capsys.readouterr().out
    plan = json.loads((run / "plan.json").read_text())
    assert plan["network"] == "segresnet" and all(s % 8 == 0 for s in plan["patch_size"])
    assert ModelPackage.load(run / "package").spec.architecture.name == "segresnet"
    # a later run with another --arch does not silently re-plan
    assert main(_args(data, run, "--arch", "unetr")) != 0
    err = capsys.readouterr().err
    assert "plan.json" in err and "unetr" in err and "Traceback" not in err


def test_an_edited_plan_with_an_invalid_patch_fails_up_front(tmp_path, capsys):
    data, run = _msd(tmp_path / "b"), tmp_path / "run"
    run.mkdir()
    assert main(_args(data, run)) == 0, capsys.readouterr().err  # plans (and trains 1 step)
    plan = json.loads((run / "plan.json").read_text())
    plan["network"] = "swinunetr"
    (run / "plan.json").write_text(json.dumps(plan))
    capsys.readouterr()
    assert main(_args(data, run)) != 0
    err = capsys.readouterr().err
    assert "plan.json" in err and "swinunetr" in err and "multiple of 32" in err
    assert "Traceback" not in err
