"""``medsight train pretrain``: SSL encoder from the CLI, then ``train classify --pretrained``."""

from __future__ import annotations

import torch

from medsight.cli.app import main


def test_pretrain_then_classify_from_the_encoder(tmp_path, write_npz, capsys):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary"
    run = tmp_path / "ssl"
    code = main(["train", "pretrain", "--data", data, "--out", str(run), "--epochs", "1",
                 "--batch-size", "8", "--seed", "1", "--threads", "1"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    encoder = run / "encoder.pt"
    assert "epoch 1/1: loss" in out and f"wrote {encoder}" in out
    payload = torch.load(encoder, map_location="cpu", weights_only=True)
    assert payload["encoder"] and payload["config"]["seed"] == 1
    assert payload["n_images"] == 36  # train + val only, never test
    code = main(["train", "classify", "--data", data, "--out", str(tmp_path / "cls"),
                 "--pretrained", str(encoder), "--epochs", "1", "--batch-size", "8",
                 "--device", "cpu", "--threads", "1", "--no-progress"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "wrote" in out and "validation" in out


def test_pretrain_rejects_bad_arch_args(tmp_path, write_npz, capsys):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary"
    args = ["train", "pretrain", "--data", data, "--out", str(tmp_path / "o")]
    assert main([*args, "--arch-args", "[1]"]) != 0
    assert "--arch-args" in capsys.readouterr().err
