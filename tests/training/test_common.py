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


def test_open_run_folder_refuses_an_earlier_run_unless_resumed_with_the_same_settings(tmp_path):
    import pydantic
    import pytest

    from medsight.core.errors import InvalidInputError
    from medsight.training.common import open_run_folder

    class Cfg(pydantic.BaseModel):
        out: str
        resume: bool = False
        lr: float = 0.1
        steps: int = 10

    folder = tmp_path / "run"
    out, ckpt = open_run_folder(Cfg(out=str(folder)))
    assert out == folder and out.is_dir() and ckpt == folder / "checkpoint.pt"
    ckpt.write_bytes(b"x")
    (folder / "config.json").write_text(Cfg(out=str(folder)).model_dump_json())
    with pytest.raises(InvalidInputError, match="earlier run"):
        open_run_folder(Cfg(out=str(folder)))
    assert open_run_folder(Cfg(out=str(folder), resume=True, steps=20), {"steps", "resume"})
    with pytest.raises(InvalidInputError, match="lr"):
        open_run_folder(Cfg(out=str(folder), resume=True, lr=0.2), {"steps", "resume"})
    assert open_run_folder(Cfg(out=str(folder)), checkpoint="other.pt")[1].name == "other.pt"
