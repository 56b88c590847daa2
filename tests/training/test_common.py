"""Training helpers: a resumed run reproduces an uninterrupted one exactly."""

from __future__ import annotations

import torch

from medsight.training.common import (
    EarlyStopping,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    select_device,
)


def _train(model, opt, steps):
    for _ in range(steps):
        x = torch.randn(8, 4)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _fresh():
    model = torch.nn.Linear(4, 1)
    return model, torch.optim.Adam(model.parameters(), lr=0.01)


def test_resume_reproduces_uninterrupted_training(tmp_path):
    seed_everything(0)
    m1, o1 = _fresh()
    _train(m1, o1, 10)

    seed_everything(0)
    m2, o2 = _fresh()
    _train(m2, o2, 4)
    stop = EarlyStopping(patience=3)
    stop.step(0.5)
    save_checkpoint(tmp_path / "ckpt.pt", model=m2, optimizer=o2, stopper=stop, epoch=4)

    seed_everything(123)  # different state: everything must come from the checkpoint
    m3, o3 = _fresh()
    stop3 = EarlyStopping(patience=3)
    rest = load_checkpoint(tmp_path / "ckpt.pt", model=m3, optimizer=o3, stopper=stop3)
    assert rest["epoch"] == 4 and stop3.best == 0.5
    _train(m3, o3, 6)
    for a, b in zip(m1.parameters(), m3.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_select_device_cpu():
    assert select_device("cpu").type == "cpu"
