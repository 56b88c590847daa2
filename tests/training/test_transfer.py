"""Transfer learning: init from a package, SSL pre-training, frozen encoder schedule."""

from __future__ import annotations

import pytest
import torch

from medsight.core import InvalidInputError
from medsight.models.smallcnn import SmallCNN
from medsight.training import classification as tc
from medsight.training.ssl import SSLConfig, nt_xent, pretrain
from medsight.training.transfer import copy_matching, init_from_ssl, set_encoder_frozen


def test_frozen_encoder_keeps_the_source_weights(tmp_path, write_npz, cfg_for):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary"
    src = tc.train_classifier(cfg_for(tmp_path / "src", data, epochs=1))
    # 4 classes in the new task: the head cannot be copied and starts fresh
    p4 = write_npz(tmp_path / "four.npz", n_classes=4)
    cfg = cfg_for(tmp_path / "dst", f"medmnist:{p4}?task=multiclass", epochs=2,
                  init=src.path, freeze_epochs=2)  # fmt: skip
    dst = tc.train_classifier(cfg)
    a, b = src.state_dict(), dst.state_dict()
    conv = [k for k in a if k.startswith("encoder") and k.endswith("conv.weight")]
    assert conv and all(torch.equal(a[k], b[k]) for k in conv)
    assert b["head.1.weight"].shape[0] == 4
    unfrozen = tc.train_classifier(cfg.model_copy(update={"out": tmp_path / "dst2",
                                                          "freeze_epochs": 0}))  # fmt: skip
    assert not torch.equal(a[conv[0]], unfrozen.state_dict()[conv[0]])


def test_ssl_checkpoint_initialises_the_classifier(tmp_path, write_npz, cfg_for):
    path = write_npz(tmp_path / "toy.npz")
    ckpt = pretrain(SSLConfig(data=[f"medmnist:{path}?task=binary"], out=tmp_path / "ssl.pt",
                              epochs=1, batch_size=8, threads=1,
                              arch_args={"channels": [4, 8]}))  # fmt: skip
    enc = torch.load(ckpt, weights_only=True)["encoder"]
    assert enc and not any(k.startswith("head") for k in enc)
    pkg = tc.train_classifier(cfg_for(tmp_path, f"medmnist:{path}?task=binary", epochs=1,
                                      pretrained=ckpt, freeze_epochs=1))  # fmt: skip
    w = pkg.state_dict()
    assert all(torch.equal(w[k], v) for k, v in enc.items() if k.endswith("conv.weight"))


def test_mismatched_architecture_is_refused(tmp_path):
    net = SmallCNN(2, 1, 2, channels=(4, 8))
    torch.save({"encoder": SmallCNN(2, 1, 2, channels=(6, 8)).encoder.state_dict()},
               tmp_path / "bad.pt")  # fmt: skip
    with pytest.raises(InvalidInputError, match="encoder tensors"):
        init_from_ssl(net, tmp_path / "bad.pt")
    _, skipped = copy_matching(net, SmallCNN(2, 1, 3, channels=(4, 8)).state_dict())
    assert skipped == ["head.1.weight", "head.1.bias"]
    assert set_encoder_frozen(net, True) == 2 and set_encoder_frozen(net, False) > 2


def test_nt_xent_prefers_matching_views():
    z = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    other = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    assert nt_xent(z, z, 0.2) < nt_xent(z, other, 0.2)
