"""K-fold segmentation ensembles: out-of-fold once, one package averaging members, resume."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from tests.cli.test_segment_cli import _msd

from medsight.cli.app import main
from medsight.data import Splits, load_dataset
from medsight.inference.segment import Segmenter
from medsight.models import ModelPackage
from medsight.training import seg_folds
from medsight.training.seg_folds import OOF_FILE, load_oof, run_segmentation_folds
from medsight.training.seg_runner import SegmentationRun
from medsight.training.segmentation import (
    SegTrainConfig,
    _choose_postprocessing,
    _mean_dice,
    load_preprocessed,
)


def _run(tmp_path, **train) -> SegmentationRun:
    root = tmp_path / "blobs"
    if not root.exists():
        _msd(root)
    return SegmentationRun(
        data=f"msd:{root}",
        out=tmp_path / "run",
        modality="MR",
        name="blobs",
        max_filters=8,
        folds=2,
        train=SegTrainConfig(device="cpu", **({"max_steps": 2, "val_every": 1} | train)),
    )


def _snapshot(folder):
    return {
        p.relative_to(folder): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _pooled_oof(out):
    data = load_preprocessed(out / "preprocessed.npz")
    where = {c: i for i, c in enumerate(data.case_ids)}
    ids, preds = [], []
    for k in range(2):
        member_ids, member_preds, _ = load_oof(out / "members" / str(k))
        ids += member_ids
        preds += member_preds
    return data, ids, preds, [data.labels[where[c]] for c in ids]


def test_fold_ensemble_resumes_averages_members_and_chooses_on_oof(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = seg_folds.train_segmentation

    def killed_at_member_2(data, plan, config, out_dir, **kw):
        if out_dir.name == "1":
            raise KeyboardInterrupt("killed")
        return real(data, plan, config, out_dir, **kw)

    monkeypatch.setattr(seg_folds, "train_segmentation", killed_at_member_2)
    logs: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_segmentation_folds(_run(tmp_path, time_budget_s=600), log=logs.append)
    assert (out / "members" / "0" / OOF_FILE).is_file() and not (out / "package").exists()
    assert any("10 min for the whole 2-fold ensemble: 5 min per member" in x for x in logs)
    assert any(x.startswith("member 1/2: ") and "ETA" in x for x in logs), logs
    before = _snapshot(out / "members" / "0")

    # resume: member 0 is kept as it is, member 1 trains
    monkeypatch.setattr(seg_folds, "train_segmentation", real)
    logs.clear()
    pkg = run_segmentation_folds(_run(tmp_path, time_budget_s=600), log=logs.append)
    assert "member 1/2: finished, kept" in " ".join(logs)
    assert _snapshot(out / "members" / "0") == before
    assert any(x.startswith("member 2/2 (fold 1") and "ensemble ETA" in x for x in logs), logs
    member1 = ModelPackage.load(out / "members" / "1" / "package").spec.extra["training"]
    assert member1["time_budget_s"] is not None and member1["time_budget_s"] > 300

    # every pooled case is out-of-fold exactly once, by the member that held it out
    kfold = Splits.load(out / "splits" / "kfold.json")
    pooled = kfold.folds[0].train + kfold.folds[0].val
    data, ids, preds, refs = _pooled_oof(out)
    assert sorted(ids) == sorted(pooled) and len(ids) == len(set(ids))
    assert not set(ids) & set(kfold.test) and kfold.test  # the test part stays untouched
    for k in range(2):
        member_ids = load_oof(out / "members" / str(k))[0]
        assert sorted(member_ids) == sorted(kfold.folds[k].val)
        one = Splits.load(out / "splits" / f"fold_{k}.json")
        assert one.folds == [kfold.folds[k]] and not set(one.folds[0].train) & set(member_ids)

    # one package: ensemble of the two members; rules and metrics from out-of-fold
    spec = ModelPackage.load(pkg.path).spec
    assert spec.architecture.name == "ensemble" and spec.ensemble.method == "folds"
    assert [m.fold for m in spec.ensemble.members] == [0, 1]
    assert spec.extra["postprocessing"] == _choose_postprocessing(preds, refs, 2)
    oof_dice = _mean_dice(preds, refs, 2)
    [metric] = spec.metrics
    assert metric.name == "dice_blob" and metric.split == "val_oof" and metric.n == len(pooled)
    assert metric.value == pytest.approx(float(oof_dice[0]))
    card = (pkg.path / "MODEL_CARD.md").read_text()
    assert "K-fold ensemble: 2 members" in card and "val_oof" in card
    assert "pooled out-of-fold predictions" in card
    assert spec.extra["training"]["time_budget_s"] == 600
    assert [f["fold"] for f in spec.extra["folds"]] == [0, 1]

    # the Segmenter runs it unchanged: its probabilities are the mean of the members'
    image = load_dataset(f"msd:{tmp_path / 'blobs'}")[0].image()
    ens = Segmenter(pkg, device="cpu", crop=False)
    assert all(p >= s for p, s in zip(ens.plan.patch_size, image.shape, strict=True))  # 1 window
    got = ens(image, probabilities=True)
    parts = [
        Segmenter(out / "members" / str(k) / "package", device="cpu", crop=False)(
            image, probabilities=True
        ).probabilities
        for k in range(2)
    ]
    mean = np.mean(parts, axis=0)
    assert np.allclose(got.probabilities, mean, atol=1e-4)
    if not ens.lcc_labels:
        assert np.array_equal(got.mask.array, mean.argmax(-1))
    assert got.mask.shape == image.shape
    assert Segmenter(pkg, device="cpu", tta=True)(image).mask.shape == image.shape
    features = Segmenter(pkg, device="cpu")(image, features=True).features  # the OOD gate
    assert features is not None and features.ndim == 1

    # out-of-fold predictions with a stray voxel: the rerun trains nothing and its package
    # keeps the largest component, chosen on (and scored by) the out-of-fold predictions
    for k in range(2):
        folder = out / "members" / str(k)
        member_ids, _, meta = load_oof(folder)
        idx = [data.case_ids.index(c) for c in member_ids]
        strays = []
        for i in idx:
            p = data.labels[i].copy()
            p[(0,) * p.ndim] = 1
            strays.append(p)
        record = {key: v for key, v in meta.items() if key != "case_ids"}
        seg_folds._write_oof(folder, data, idx, strays, **record)
    logs.clear()
    again = run_segmentation_folds(_run(tmp_path, time_budget_s=600), log=logs.append)
    assert sum("finished, kept" in x for x in logs) == 2
    assert again.spec.extra["postprocessing"] == {"1": "largest_component"}
    _, _, strays, refs = _pooled_oof(out)
    assert again.spec.metrics[0].value == pytest.approx(float(_mean_dice(strays, refs, 2)[0]))
    assert again.spec.metrics[0].value < 1.0
    assert Segmenter(again, device="cpu").lcc_labels == (1,)


def test_cli_refuses_more_folds_than_patient_groups(tmp_path, capsys):
    data = f"msd:{_msd(tmp_path / 'blobs')}"
    args = ["train", "segment", "--data", data, "--out", str(tmp_path / "run"), "--device", "cpu"]
    assert main([*args, "--folds", "20"]) == 2
    err = capsys.readouterr().err
    assert "--folds" in err and "patient groups" in err and "or fewer" in err
    assert not (tmp_path / "run" / "members").exists()
    assert main([*args, "--folds", "1"]) == 2  # at least 2
    capsys.readouterr()
    steps = ["--max-steps", "1", "--val-every", "1", "--modality", "MR"]
    assert main([*args, *steps, "--folds", "2"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "member 2/2" in printed and "out-of-fold Dice blob" in printed
    pkg = ModelPackage.load(tmp_path / "run" / "package")
    assert pkg.spec.ensemble.method == "folds" and len(pkg.spec.ensemble.members) == 2


def test_another_number_of_folds_in_the_same_folder_is_refused(tmp_path):
    from medsight.core.errors import InvalidInputError

    run = _run(tmp_path)
    seg_folds._fold_splits(run, seg_folds._load_data(run), 2, lambda s: None)
    with pytest.raises(InvalidInputError, match="holds 2 folds, not --folds 3"):
        seg_folds._fold_splits(run, seg_folds._load_data(run), 3, lambda s: None)
