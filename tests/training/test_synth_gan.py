"""GAN synthesis (``train synth --method gan``): trains, saves, loads, samples with provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.training.test_synth import toy_npz

from medsight.cli.app import main
from medsight.core import InvalidInputError
from medsight.inference.synth import Synthesizer
from medsight.models import ModelPackage
from medsight.training.synth import SynthConfig, train_synthesizer


def _cfg(data, out, **kw):
    base = dict(data=data, out=out, method="gan", steps=4, batch_size=8, widths=[8, 16],
                val_every=2, threads=1, device="cpu", ema=0.0)  # fmt: skip
    return SynthConfig(**(base | kw))


def test_gan_trains_saves_loads_and_samples_the_asked_label(tmp_path):
    data = toy_npz(tmp_path / "toy.npz")
    lines: list[str] = []
    pkg = train_synthesizer(_cfg(data, tmp_path / "run"), log=lines.append)
    assert any("val D loss" in line for line in lines)
    again = ModelPackage.load(tmp_path / "run" / "package")
    assert again.sha256 == pkg.sha256 and again.spec.name == "toy-gan"
    assert again.spec.extra["gan"]["method"] == "gan" and "diffusion" not in again.spec.extra
    assert {m.name for m in again.spec.metrics} == {"val_d_loss", "val_fake_std"}
    synth = Synthesizer(again)
    assert synth.method == "gan"
    a = synth.sample(3, "1", seed=5)
    assert [im.shape for im in a] == [(16, 16)] * 3 and a[0].array.dtype == np.uint8
    assert a[0].meta["synthetic"] and a[0].meta["label"] == "1" and a[0].meta["seed"] == 5
    # deterministic by seed, different across seeds and across labels
    assert all(
        (x.array == y.array).all() for x, y in zip(a, synth.sample(3, 1, seed=5), strict=True)
    )
    assert not (synth.sample(1, 1, seed=6)[0].array == a[0].array).all()
    assert not (synth.sample(1, 0, seed=5)[0].array == a[0].array).all()
    with pytest.raises(InvalidInputError, match="GAN"):
        synth.sample(1, 0, steps=10)
    with pytest.raises(InvalidInputError, match="encoder"):
        synth.features(a)


def test_gan_resume_reproduces_the_uninterrupted_run(tmp_path):
    data = toy_npz(tmp_path / "toy.npz")
    whole = train_synthesizer(_cfg(data, tmp_path / "a"), log=lambda _: None)
    train_synthesizer(_cfg(data, tmp_path / "b", steps=2), log=lambda _: None)
    resumed = train_synthesizer(_cfg(data, tmp_path / "b", resume=True), log=lambda _: None)
    assert resumed.sha256 == whole.sha256


def test_gan_learns_the_class_condition(tmp_path):
    """Class 1 is a bright square on dark noise: after training, its samples are brighter in the
    square than class 0's (an untrained generator gives no such difference)."""
    data = toy_npz(tmp_path / "toy.npz", n=32)
    cfg = _cfg(data, tmp_path / "run", steps=150, batch_size=16, lr=2e-3, val_every=150)
    synth = Synthesizer(train_synthesizer(cfg, log=lambda _: None))
    sq = np.s_[4:10, 4:10]
    one = np.mean([im.array[sq].mean() for im in synth.sample(16, "1", seed=0)])
    zero = np.mean([im.array[sq].mean() for im in synth.sample(16, "0", seed=0)])
    assert one - zero > 60, (one, zero)


def test_cli_train_synth_gan_then_synthesize_writes_provenance(tmp_path, capsys):
    data = toy_npz(tmp_path / "toy.npz")
    args = ["train", "synth", "--data", data, "--out", str(tmp_path / "run"), "--method", "gan"]
    args += ["--steps", "2", "--batch-size", "4", "--width", "8", "--width", "16"]
    assert main([*args, "--val-every", "1", "--threads", "1", "--device", "cpu"]) == 0, (
        capsys.readouterr().err
    )
    out = tmp_path / "synthetic"
    code = main(
        ["synthesize", str(tmp_path / "run"), "--n", "3", "--label", "1", "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    assert len(list((out / "1").glob("*.png"))) == 3
    prov = json.loads((out / "synthetic.json").read_text())
    assert "toy-gan" in json.dumps(prov) and len(json.dumps(prov)) > 50
    code = main(["synthesize", str(tmp_path / "run"), "--n", "1", "--label", "1", "--out",
                 str(tmp_path / "x"), "--guidance", "2"])  # fmt: skip
    assert code != 0 and "GAN" in capsys.readouterr().err
    assert main([*args[:-2], "--method", "vae"]) != 0
    assert "not one of: ddpm, gan" in capsys.readouterr().err


def test_evaluate_synthesizer_takes_a_gan_package_with_a_classifier_encoder(tmp_path):
    """A GAN has no sampling steps and no encoder of its own: evaluation samples it in one
    forward pass, takes a classifier's features and refuses DDIM steps (it used to pass them)."""
    from medsight.data import load_dataset
    from medsight.evaluation.synth import evaluate_synthesizer
    from medsight.training.classification import train_classifier
    from medsight.training.config import ClassifyConfig

    data = toy_npz(tmp_path / "toy.npz")
    gan = train_synthesizer(_cfg(data, tmp_path / "gan"), log=lambda _: None)
    clf = train_classifier(
        ClassifyConfig(data=data, out=tmp_path / "clf", epochs=1, batch_size=8, progress=False,
                       threads=1, n_resamples=10, arch_args={"channels": [4, 8]})
    )  # fmt: skip
    ds = load_dataset(data)
    report = evaluate_synthesizer(gan, ds, tmp_path / "eval", encoder=clf, n_resamples=10)
    assert report["n_synthetic"] == report["n_cases"] == 16
    assert report["sampling"] == {"seed": 0, "sampler": "GAN generator (one forward pass)"}
    assert "GAN generator" in (tmp_path / "eval" / "report.html").read_text()
    with pytest.raises(InvalidInputError, match="GAN"):
        evaluate_synthesizer(gan, ds, tmp_path / "eval2", encoder=clf, n_resamples=10, steps=5)
