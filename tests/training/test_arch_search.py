"""``--arch auto``: the architecture chosen on validation AUC within a budget (tiny runs)."""

from __future__ import annotations

import json

import pytest

from medsight.cli.app import main
from medsight.core import InvalidInputError
from medsight.training import arch_search


def test_best_validation_auc_wins_and_ties_go_to_the_smaller():
    tol = arch_search.TIE_TOLERANCE
    scores = [
        {"arch": "big", "val_auc": 0.90, "params": 1000},
        {"arch": "small", "val_auc": 0.90 - tol / 2, "params": 10},  # tied: the smaller wins
        {"arch": "worse", "val_auc": 0.80, "params": 1},
        {"arch": "unfit", "val_auc": None, "note": "cannot take this input"},
    ]
    assert arch_search.pick(scores) == "small"
    scores[1]["val_auc"] = 0.90 - 2 * tol  # no longer tied: the best AUC wins
    assert arch_search.pick(scores) == "big"
    with pytest.raises(InvalidInputError, match="no candidate"):
        arch_search.pick(scores[3:])


def test_search_refuses_empty_candidates_and_zero_budget(tmp_path, write_npz, cfg_for):
    cfg = cfg_for(tmp_path, f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary")
    with pytest.raises(InvalidInputError, match="empty"):
        arch_search.choose_architecture(cfg, 1.0, ())
    with pytest.raises(InvalidInputError, match="positive"):
        arch_search.choose_architecture(cfg, 0.0)


def test_cli_arch_auto_then_seed_ensemble_records_the_search(tmp_path, write_npz, capsys):
    data = f"medmnist:{write_npz(tmp_path / 'toy.npz')}?task=binary"
    out = tmp_path / "auto"
    argv = ["train", "classify", "--data", data, "--out", str(out), "--arch", "auto",
            "--candidates", "smallcnn,densenet121", "--budget-minutes", "0.01", "--seeds", "2",
            "--epochs", "1", "--batch-size", "8", "--threads", "1", "--no-progress"]  # fmt: skip
    code = main(argv)
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "candidate smallcnn: validation AUC" in printed and "chosen architecture:" in printed
    assert "(seeds ensemble)" in printed
    spec = json.loads((out / "package" / "model.json").read_text())
    search = spec["extra"]["arch_search"]
    assert [c["arch"] for c in search["candidates"]] == ["smallcnn", "densenet121"]
    assert spec["architecture"]["name"] == "ensemble" and len(spec["ensemble"]["members"]) == 2
    assert {m["name"] for m in spec["architecture"]["args"]["members"]} == {search["chosen"]}
    card = (out / "package" / "MODEL_CARD.md").read_text()
    assert "Architecture choice (validation data)" in card and "- Ensemble: 2 members" in card
