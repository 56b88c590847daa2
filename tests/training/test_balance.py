"""Training-time mitigation: (group, label) cell weights, the group-balanced sampler, and a
tiny run with each ``--balance`` option (plus ``--group-thresholds``)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from medsight.core import InvalidInputError
from medsight.models import ModelPackage
from medsight.training.balance import Balance, cell_keys, cell_weights, group_sample_order
from medsight.training.classification import train_classifier


def test_cell_weights_on_a_tiny_table():
    groups = ["F", "F", "F", "M", "M", None]
    y = np.array([0, 0, 1, 1, 1, 0])
    w = cell_weights(groups, y)
    # cells: (F,0) x2, (F,1) x1, (M,1) x2, ("",0) x1 -> raw 1/2, 1/2, 1, 1/2, 1/2, 1; mean 1
    assert w == pytest.approx(np.array([0.5, 0.5, 1, 0.5, 0.5, 1]) * 6 / 4)
    assert w.mean() == pytest.approx(1.0)
    totals = Counter()
    for k, wi in zip(cell_keys(groups, y), w, strict=True):
        totals[k] += wi
    assert len(set(np.round(list(totals.values()), 12))) == 1  # every cell weighs the same


def test_sampler_draws_cells_evenly_and_reproducibly():
    groups = ["F"] * 700 + ["M"] * 200 + ["F"] * 80 + ["M"] * 20
    y = np.array([0] * 900 + [1] * 100)
    w = cell_weights(groups, y)
    keys = cell_keys(groups, y)
    drawn = Counter()
    for epoch in range(20):
        order = group_sample_order(w, torch.Generator().manual_seed(epoch))
        assert len(order) == 1000
        drawn.update(keys[i] for i in order)
    freq = np.array(list(drawn.values())) / 20_000
    assert len(drawn) == 4 and np.abs(freq - 0.25).max() < 0.02  # sd ~0.003
    a = group_sample_order(w, torch.Generator().manual_seed(5))
    b = group_sample_order(w, torch.Generator().manual_seed(5))
    assert (a == b).all()
    # unweighted, the rarest cell would be drawn 2% of the time
    assert Counter(keys)[("M", 1)] / 1000 == 0.02


def _group_csv(root, n=60, size=12):
    """A learnable toy manifest: positives have a bright square; F three times as common."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    rows = ["file,patient_id,finding,sex"]
    for i in range(n):
        label = int(rng.integers(0, 2))
        arr = rng.integers(0, 60, (size, size)).astype(np.uint8)
        if label:
            arr[2:5, 2:5] = 250
        PILImage.fromarray(arr).save(root / "img" / f"c{i}.png")
        sex = "M" if i % 4 == 0 else "F"
        rows.append(f"img/c{i}.png,p{i},{'pos' if label else 'neg'},{sex}")
    (root / "meta.csv").write_text("\n".join(rows))
    return f"csv:{root / 'meta.csv'}"


@pytest.mark.parametrize("balance", [Balance.NONE, Balance.REWEIGHT, Balance.GROUP_SAMPLE])
def test_tiny_run_with_each_balance_option(tmp_path, cfg_for, balance):
    data = _group_csv(tmp_path)
    cfg = cfg_for(tmp_path, data, group="sex", balance=balance, group_thresholds=True, epochs=2)
    pkg = train_classifier(cfg)
    spec = ModelPackage.load(pkg.path).spec
    assert spec.task.value == "binary" and spec.label_names == ["neg", "pos"]
    if balance is Balance.NONE:
        assert "balance" not in spec.extra
    else:
        rec = spec.extra["balance"]
        assert rec["method"] == balance.value and rec["group"] == "sex"
        assert sum(rec["cells"].values()) == spec.training_data.n_cases["train"]
        assert set(rec["cells"]) <= {"F|0", "F|1", "M|0", "M|1"}
    gt = spec.group_thresholds  # fitted on validation, stored and validated in model.json
    assert gt is not None and gt.attribute == "sex" and gt.label == "pos"
    assert gt.global_threshold == spec.thresholds["pos"]
    assert set(gt.thresholds) | set(gt.skipped) == set(gt.counts)
    saved = (pkg.path / "config.json").read_text()
    assert f'"balance": "{balance.value}"' in saved and '"group": "sex"' in saved


def test_balance_needs_a_known_group(tmp_path, cfg_for):
    data = _group_csv(tmp_path, n=20)
    with pytest.raises(ValueError, match="need group"):
        cfg_for(tmp_path, data, balance=Balance.REWEIGHT)
    with pytest.raises(InvalidInputError, match="no training case has this attribute"):
        train_classifier(cfg_for(tmp_path, data, group="site", balance=Balance.REWEIGHT))


def test_cli_refuses_balance_without_group(tmp_path):
    from medsight.cli.train import classify

    with pytest.raises(InvalidInputError, match="need --group"):
        classify(data="medmnist:x.npz", out=tmp_path / "run", balance=Balance.REWEIGHT)
