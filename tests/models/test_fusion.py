"""Risk networks: shapes, padding, and that planted signals are learned in a few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.evaluation.classification import roc_auc
from medsight.models.clinical_encoding import ClinicalEncoder
from medsight.models.fusion import ARCHS, RiskNet
from medsight.models.registry import build_network
from medsight.models.spec import ArchitectureSpec


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one torch thread is faster than many on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(n=200, t=4, e=8, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb, clin = torch.randn(n, t, e, generator=g), torch.randn(n, t, c, generator=g)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    gaps = torch.rand(n, t, generator=g) * 10 * mask
    return emb, clin, gaps, mask


def _fit(net, inputs, y, steps=150, lr=0.05):
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        net.train()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(*inputs), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        return net(*inputs).numpy()


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_and_padding_is_ignored(arch):
    net = build_network(
        ArchitectureSpec(name="risk_fusion", args={"arch": arch, "embed_dim": 8, "clin_dim": 3})
    )
    net.eval()
    emb, clin, gaps, mask = _data(n=6)
    out = net(emb, clin, gaps, mask)
    assert out.shape == (6,)
    junk = ~mask[..., None]
    with torch.no_grad():  # whatever sits in padded steps changes nothing
        again = net(emb + 50 * junk, clin - 9 * junk, gaps + 99 * ~mask, mask)
    assert torch.allclose(out, again, atol=1e-5)


@pytest.mark.parametrize("arch", ["late", "film", "gru", "attention", "clinical"])
def test_planted_clinical_signal_is_learned(arch):
    emb, clin, gaps, mask = _data()
    last = clin[torch.arange(len(clin)), mask.sum(1) - 1]
    y = (last[:, 1] > 0).float()  # outcome = sign of one clinical variable at the last visit
    score = _fit(
        RiskNet(arch=arch, embed_dim=8, clin_dim=3, hidden=8, dropout=0.0),
        (emb, clin, gaps, mask),
        y,
    )
    assert roc_auc(y.numpy().astype(int), score) > 0.95


@pytest.mark.parametrize("arch", ["late", "film", "image", "lstm"])
def test_planted_image_signal_is_learned(arch):
    emb, clin, gaps, mask = _data(seed=1)
    last = emb[torch.arange(len(emb)), mask.sum(1) - 1]
    y = (last[:, 3] > 0).float()
    score = _fit(
        RiskNet(arch=arch, embed_dim=8, clin_dim=3, hidden=8, dropout=0.0),
        (emb, clin, gaps, mask),
        y,
    )
    assert roc_auc(y.numpy().astype(int), score) > 0.95
    if arch == "image":  # the clinical-only baseline cannot see it
        base = _fit(
            RiskNet(arch="clinical", embed_dim=8, clin_dim=3, dropout=0.0),
            (emb, clin, gaps, mask),
            y,
        )
        assert roc_auc(y.numpy().astype(int), base) < 0.7


def test_sequence_models_see_earlier_visits_and_time_gaps():
    emb, clin, gaps, mask = _data(n=300, seed=2)
    mask[:, :2] = True  # every patient has at least two visits
    y = (emb[:, 0, 0] > 0).float()  # planted in the FIRST visit's image only
    inputs = (emb, clin, gaps, mask)
    gru = _fit(RiskNet(arch="gru", embed_dim=8, clin_dim=3, hidden=8, dropout=0.0), inputs, y)
    late = _fit(RiskNet(arch="late", embed_dim=8, clin_dim=3, dropout=0.0), inputs, y)
    yy = y.numpy().astype(int)
    assert roc_auc(yy, gru) > 0.9 and roc_auc(yy, late) < 0.7
    # an outcome given by the time since the previous visit: only a gap-aware model sees it
    last_gap = gaps[torch.arange(len(gaps)), mask.sum(1) - 1]
    y2 = (last_gap > 5).float()
    gru2 = _fit(RiskNet(arch="gru", embed_dim=8, clin_dim=3, hidden=8, dropout=0.0), inputs, y2)
    assert roc_auc(y2.numpy().astype(int), gru2) > 0.9


def test_encoder_inside_gives_penultimate_features():
    spec = {
        "name": "smallcnn",
        "args": {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "channels": [4, 8]},
    }
    net = RiskNet(arch="late", embed_dim=8, clin_dim=1, encoder=spec)
    x = torch.randn(3, 1, 16, 16)
    emb = net.embed(x)
    assert emb.shape == (3, 8)
    assert all(not p.requires_grad for p in net.encoder.parameters())


def test_clinical_encoding_missing_and_unknown():
    enc = ClinicalEncoder.fit(
        [{"age": 50.0, "sex": "F", "icu": 1}, {"age": 70.0, "sex": "M", "icu": 0}],
        [("age", "numeric"), ("sex", "categorical"), ("icu", "binary")],
    )
    x = enc.transform([{"age": 90.0, "sex": "M", "icu": None}, {"age": None, "sex": "?"}])
    cols = enc.columns
    assert x[0, cols.index("age")] == pytest.approx(3.0)  # (90 - 60) / 10
    assert x[0, cols.index("icu:missing")] == 1 and x[1, cols.index("age:missing")] == 1
    assert x[1, cols.index("age")] == 0  # missing -> the training mean, flagged
    assert x[1, [cols.index("sex=F"), cols.index("sex=M"), cols.index("sex:missing")]].tolist() == [
        0,
        0,
        0,
    ]  # an unseen category is not "missing"
    assert np.array_equal(
        ClinicalEncoder.from_dict(enc.to_dict()).transform([{}]), enc.transform([{}])
    )
