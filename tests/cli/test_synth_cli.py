"""``medsight train synth``, ``medsight synthesize`` and ``train classify --synthetic``."""

from __future__ import annotations

import json

import numpy as np

from medsight.cli.app import main
from medsight.data import load_dataset
from medsight.models import ModelPackage


def _toy(path, n=16):
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        y = np.arange(n) % 2
        x = rng.integers(0, 50, (n, 16, 16)).astype(np.uint8)
        x[y == 1, 4:10, 4:10] = 250
        arrays |= {f"{split}_images": x, f"{split}_labels": y[:, None]}
    np.savez(path, **arrays)
    return f"medmnist:{path}?task=binary"


def test_train_synth_synthesize_read_back_and_augment(tmp_path, capsys):
    data = _toy(tmp_path / "toy.npz")
    run = tmp_path / "synth"
    code = main(["train", "synth", "--data", data, "--out", str(run), "--steps", "2",
                 "--batch-size", "8", "--width", "8", "--width", "16", "--timesteps", "20",
                 "--threads", "1", "--device", "cpu"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "fake"
    for label, seed in (("1", 4), ("0", 5)):
        code = main(["synthesize", str(run), "--n", "3", "--label", label, "--out", str(out),
                     "--seed", str(seed), "--steps", "2"])  # fmt: skip
        assert code == 0, capsys.readouterr().err
    again = main(["synthesize", str(run), "--n", "1", "--label", "1", "--out", str(out),
                  "--seed", "4", "--steps", "2"])  # fmt: skip
    assert again == 2 and "seed 4" in capsys.readouterr().err  # nothing is overwritten
    code = main(["evaluate", str(run), "--data", data, "--out", str(tmp_path / "eval"),
                 "--n-resamples", "10"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "frechet_distance" in capsys.readouterr().out
    prov = json.loads((out / "synthetic.json").read_text())
    assert prov["synthetic"] is True and len(prov["images"]) == 6
    pkg = ModelPackage.load(run / "package")
    assert prov["models"][pkg.id]["sha256"] == pkg.sha256

    ds = load_dataset(f"folder:{out}")
    assert len(ds) == 6 and dict(ds.label_names) == {0: "0", 1: "1"}
    assert all(c.attributes["synthetic"] is True for c in ds)
    assert {c.attributes["source"] for c in ds} == {
        f"synthetic: {pkg.id}, seed 4",
        f"synthetic: {pkg.id}, seed 5",
    }
    assert "SYNTHETIC" in ds.source and not ds.layout_issues

    clf = tmp_path / "clf"
    code = main(["train", "classify", "--data", data, "--out", str(clf), "--epochs", "1",
                 "--batch-size", "8", "--threads", "1", "--no-progress", "--synthetic",
                 str(out), "--synthetic-ratio", "0.25"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    spec = ModelPackage.load(clf / "package").spec
    # 16 real training images x 0.25 = 4 synthetic ones, training split only
    assert spec.training_data.n_cases == {"train": 16, "val": 16, "train_synthetic": 4}
    assert spec.extra["synthetic"]["n_used"] == 4 and spec.extra["synthetic"]["models"] == [pkg.id]
    assert "4 SYNTHETIC training images" in spec.training_data.source
    assert "4 SYNTHETIC" in (clf / "package" / "MODEL_CARD.md").read_text()
    # class counts describe the real training images only (what the OOD reference is fitted on)
    assert sum(spec.training_data.class_counts.values()) == 16


def test_synthetic_class_names_must_match_the_real_labels(tmp_path, capsys):
    from medsight.core import Image
    from medsight.data.synthetic import add_provenance
    from medsight.io.raster import write_png

    data = _toy(tmp_path / "toy.npz")
    out = tmp_path / "fake"
    add_provenance(out, {"name": "m", "version": "1", "sha256": "x"}, {"cyst/a.png": {"seed": 0}})
    (out / "cyst").mkdir()
    write_png(Image(np.zeros((16, 16), np.uint8)), out / "cyst" / "a.png")
    code = main(["train", "classify", "--data", data, "--out", str(tmp_path / "c"), "--epochs",
                 "1", "--no-progress", "--synthetic", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "'cyst' are not labels of the real data ('0', '1')" in err
