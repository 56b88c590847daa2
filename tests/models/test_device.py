"""select_device: the CPU thread count is chosen once per process and respects the user's."""

from __future__ import annotations

import pytest
import torch

from medsight.models import device as device_mod


@pytest.fixture
def fresh(monkeypatch):
    """A process that has not chosen its thread count yet; torch's count restored after."""
    before = torch.get_num_threads()
    monkeypatch.setattr(device_mod, "_cpu_threads_chosen", False)
    monkeypatch.setattr(device_mod.os, "cpu_count", lambda: 3)
    yield
    torch.set_num_threads(before)


def test_the_first_cpu_selection_uses_every_core_and_later_ones_keep_a_callers_choice(
    fresh, monkeypatch
):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert device_mod.select_device("cpu").type == "cpu"
    assert torch.get_num_threads() == 3
    torch.set_num_threads(1)  # e.g. a config's threads=1, set after the first selection
    device_mod.select_device("cpu")  # e.g. the predictor evaluation builds
    assert torch.get_num_threads() == 1


def test_omp_num_threads_is_the_users_choice(fresh, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    device_mod.select_device("cpu")
    assert torch.get_num_threads() == 1
