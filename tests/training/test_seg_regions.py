"""Region-based segmentation training (nested labels, nnU-Net's recipe) and its conversion."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from medsight.core import Case, Image, Split
from medsight.core.errors import InvalidInputError
from medsight.data import Dataset
from medsight.inference.segment import Segmenter
from medsight.models import ModelPackage
from medsight.models.package import CARD_FILE
from medsight.models.seg_regions import (
    check_regions,
    label_probabilities,
    parse_regions,
    region_dice,
    region_labels,
    region_names,
    regions_to_labels,
)
from medsight.training.plan import plan_from_dataset
from medsight.training.seg_runner import SegmentationRun, run_segmentation
from medsight.training.segmentation import (
    SegTrainConfig,
    load_preprocessed,
    preprocess_dataset,
    train_segmentation,
)

from .seg_synthetic import tiny

#: labels nested from the inside out: 1 (innermost) inside 2 inside 3, so the regions are
#: {1, 2, 3} ⊃ {1, 2} ⊃ {1} and the labels they add (3, 2, 1) are not their positions + 1
NAMES = {0: "background", 1: "enhancing", 2: "core", 3: "edema"}
REGIONS = [[1, 2, 3], [1, 2], [1]]
RADII = {3: 7.0, 2: 4.5, 1: 2.0}  # label -> disc radius
#: image intensity per label; a voxel's label is the innermost disc it is in
LEVEL = {0: 0.0, 3: 40.0, 2: 80.0, 1: 120.0}


def nested_dataset(n: int = 6, size: int = 24, seed: int = 0) -> Dataset:
    """2D images with three concentric discs (labels 3 ⊃ 2 ⊃ 1 from the outside in)."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        grid = np.mgrid[0:size, 0:size]
        centre = rng.integers(9, size - 9, 2)
        dist = np.sqrt(((grid - centre.reshape(2, 1, 1)) ** 2).sum(0))
        mask = np.zeros((size, size), np.uint8)
        for label in (3, 2, 1):
            mask[dist <= RADII[label]] = label
        img = np.vectorize(LEVEL.get)(mask).astype(np.float32) + 100
        img += rng.normal(0, 2, img.shape).astype(np.float32)
        cases.append(
            Case(
                f"case{i}",
                images={"image": Image(img, spacing=(1.0, 1.0), modality="MR")},
                label=Image(mask, spacing=(1.0, 1.0)),
                split=Split.VAL if i % 3 == 2 else Split.TRAIN,
            )
        )
    return Dataset("nested2d", cases, task="segmentation", label_names=NAMES)


def _train(tmp_path, ds, regions, steps=3):
    plan = tiny(plan_from_dataset(ds))
    data = load_preprocessed(preprocess_dataset(ds, plan, tmp_path / "p.npz"))
    cfg = SegTrainConfig(max_steps=steps, val_every=steps, device="cpu", regions=regions)
    return plan, train_segmentation(data, plan, cfg, tmp_path / "run", name="nested")


# --- the conversion ------------------------------------------------------------------------


def test_regions_to_labels_paints_largest_first_with_the_label_each_region_adds():
    regions = check_regions(REGIONS, NAMES)
    assert region_labels(regions) == [3, 2, 1]
    # voxels: none, outer only, outer+middle, all three, exactly 0.5 (not above), an inner
    # region without the outer ones (nnU-Net paints it: the smaller region wins)
    p = np.array(
        [
            [0.1, 0.9, 0.9, 0.9, 0.5, 0.2],
            [0.1, 0.2, 0.8, 0.8, 0.5, 0.2],
            [0.1, 0.3, 0.4, 0.7, 0.5, 0.9],
        ]
    )
    assert regions_to_labels(p, regions).tolist() == [0, 3, 2, 1, 0, 1]
    assert regions_to_labels(p.T, regions, axis=1).tolist() == [0, 3, 2, 1, 0, 1]
    q = label_probabilities(p, regions, 4)
    assert np.allclose(q.sum(0), 1.0)
    assert np.allclose(q[:, 3], [0.1, 0.7, 0.1, 0.1])  # background, labels 1, 2, 3 of voxel 3
    with pytest.raises(InvalidInputError, match="2 region channels"):
        regions_to_labels(p[:2], regions)


def test_region_dice_judges_the_unions_not_the_labels():
    ref = np.zeros((8, 8), np.int16)
    ref[1:7, 1:7], ref[2:6, 2:6], ref[3:5, 3:5] = 3, 2, 1  # edema ⊃ core ⊃ enhancing
    swapped = ref.copy()
    swapped[ref == 3], swapped[ref == 2] = 2, 3  # edema and core confused, tumour found
    wt, tc, et = region_dice(swapped, ref, REGIONS)
    assert wt == 1.0 and et == 1.0  # the whole tumour and the enhancing part are right
    assert 0.0 < tc < 1.0  # the core region is not
    assert region_dice(np.zeros_like(ref), np.zeros_like(ref), REGIONS) == [1.0, 1.0, 1.0]
    assert region_dice(np.zeros_like(ref), ref, REGIONS) == [0.0, 0.0, 0.0]
    assert region_names(REGIONS, NAMES) == ["enhancing+core+edema", "enhancing+core", "enhancing"]


def test_parse_regions():
    assert parse_regions("1,2,3;1,2;1") == REGIONS
    with pytest.raises(InvalidInputError, match="--regions"):
        parse_regions("1,2;;1")
    with pytest.raises(InvalidInputError, match="not label values"):
        parse_regions("1,a")


@pytest.mark.parametrize(
    ("regions", "problem"),
    [
        ([[1], [1, 2], [1, 2, 3]], "largest to the smallest"),  # smallest first
        ([[1, 2, 3], [2, 3], [1]], "not nested"),  # {1} is not inside {2, 3}
        ([[1, 2, 3], [1, 2, 3]], "not nested"),  # the same region twice
        ([[1, 2, 3, 4], [1]], "label 4, which the data does not have"),
        ([[0, 1, 2, 3], [1]], "background"),
        ([[1, 2, 3], [1]], "adds labels 2, 3"),
        ([[1, 2], [1]], r"label 3 \(edema\) is in no region"),
        ([[1, 1, 2, 3]], "twice"),
        ([], "no regions"),
    ],
)
def test_bad_regions_are_refused(regions, problem):
    with pytest.raises(InvalidInputError, match=problem):
        check_regions(regions, NAMES)


def test_onnx_decisions_of_a_region_package_are_its_label_map():
    from medsight.inference.onnx_backend import _decisions
    from medsight.models.spec import Task

    pkg = SimpleNamespace(spec=SimpleNamespace(task=Task.SEGMENTATION, extra={"regions": REGIONS}))
    logits = np.array([[[-5.0, 5.0, 5.0], [-5.0, -5.0, 5.0], [-5.0, -5.0, 5.0]]], np.float32)
    assert _decisions(pkg, logits).tolist() == [[0, 3, 1]]
    old = SimpleNamespace(spec=SimpleNamespace(task=Task.SEGMENTATION, extra={}))
    assert _decisions(old, logits).tolist() == [[0, 0, 0]]  # argmax, as before


# --- training and the package --------------------------------------------------------------


def test_region_run_trains_saves_loads_and_predicts_the_original_labels(tmp_path):
    ds = nested_dataset()
    plan, res = _train(tmp_path, ds, REGIONS)
    pkg = ModelPackage.load(res.package)
    assert pkg.spec.extra["regions"] == REGIONS
    assert pkg.spec.architecture.args["out_channels"] == 3  # one output per region
    assert set(res.val_dice) == {"enhancing", "core", "edema"}  # Dice per label, as before
    names = ["dice_enhancing", "dice_core", "dice_edema"]  # per label, then per region
    names += ["dice_region_enhancing+core+edema", "dice_region_enhancing+core"]
    assert [m.name for m in pkg.spec.metrics] == [*names, "dice_region_enhancing"]
    assert all(0.0 <= m.value <= 1.0 and m.n == 2 for m in pkg.spec.metrics)
    card = (pkg.path / CARD_FILE).read_text(encoding="utf-8")
    assert "Region-based training" in card and "--regions 1,2,3;1,2;1" in card
    assert "{1 enhancing, 2 core, 3 edema} ⊃ {1 enhancing, 2 core} ⊃ {1 enhancing}" in card

    img = ds[0].image()
    seg = Segmenter(pkg, device="cpu")
    assert seg.regions == REGIONS
    out = seg(img, probabilities=True)
    assert out.mask.shape == img.shape
    assert out.region_probabilities.shape == (*img.shape, 3)
    assert out.probabilities.shape == (*img.shape, plan.n_classes)
    assert np.allclose(out.probabilities.sum(-1), 1.0, atol=1e-5)
    raw = Segmenter(pkg, device="cpu", postprocess=False)(img, probabilities=True)
    expected = regions_to_labels(np.moveaxis(raw.region_probabilities, -1, 0), REGIONS)
    assert np.array_equal(np.asarray(raw.mask.array), expected)

    # a network whose region outputs are exact (by the normalised intensity): the Segmenter
    # gives back the label map with the data's own label values
    import torch

    from medsight.transforms.seg_plan import prepare_image

    x0, ref = prepare_image(img, seg.plan).array[0], np.asarray(ds[0].mask().array)
    mean = {k: float(x0[ref == k].mean()) for k in LEVEL}
    cut = [(mean[a] + mean[b]) / 2 for a, b in ((0, 3), (3, 2), (2, 1))]

    def oracle(x):
        return torch.cat([(x[:, :1] - c) * 50.0 for c in cut], dim=1)

    seg.net = oracle
    seg.postprocess = False
    got = seg(img, probabilities=True)
    assert np.array_equal(np.asarray(got.mask.array), np.asarray(ds[0].mask().array))


def test_background_outside_the_crop_is_no_region(tmp_path):
    """The foreground crop fills a region network's outputs with probability 0 (not the
    softmax background's logit 0, which a sigmoid would read as p = 0.5)."""
    import torch

    ds = nested_dataset(n=3)
    _plan, res = _train(tmp_path, ds, REGIONS, steps=1)
    seg = Segmenter(ModelPackage.load(res.package), device="cpu", postprocess=False)
    seg.net = lambda x: torch.full((x.shape[0], 3, *x.shape[2:]), -3.0)
    small = ds[0].image()  # 24 x 24, the patch: zeros around it leave the corners uncropped
    img = Image(np.pad(np.asarray(small.array), 30), spacing=(1.0, 1.0), modality="MR")
    out = seg(img, probabilities=True)
    corner = out.region_probabilities[:4, :4]
    assert np.allclose(corner, 0.0)  # outside the crop (0.5 in region 0 without the fix)
    assert not np.asarray(out.mask.array).any()


def test_region_training_refuses_non_nested_regions_before_training(tmp_path):
    ds = nested_dataset(n=3)
    with pytest.raises(InvalidInputError, match="largest to the smallest"):
        _train(tmp_path, ds, [[1], [1, 2], [1, 2, 3]])
    assert not (tmp_path / "run" / "checkpoint_latest.pt").exists()
    with pytest.raises(InvalidInputError, match="data does not have"):
        _train(tmp_path, ds, [[1, 2, 3, 5], [1]])


def test_regions_with_folds_are_refused(tmp_path):
    run = SegmentationRun(
        data="msd:nowhere",
        out=tmp_path,
        folds=2,
        train=SegTrainConfig(regions=REGIONS),
    )
    with pytest.raises(InvalidInputError, match="--folds"):
        run_segmentation(run, log=lambda s: None)


def test_a_package_without_regions_is_unaffected(tmp_path):
    ds = nested_dataset(n=3)
    plan, res = _train(tmp_path, ds, None, steps=1)
    pkg = ModelPackage.load(res.package)
    assert "regions" not in pkg.spec.extra
    assert pkg.spec.architecture.args["out_channels"] == plan.n_classes
    assert "Region-based" not in (pkg.path / CARD_FILE).read_text(encoding="utf-8")
    seg = Segmenter(pkg, device="cpu", postprocess=False)
    assert seg.regions is None
    out = seg(ds[0].image(), probabilities=True)
    assert out.region_probabilities is None
    assert np.allclose(out.probabilities.sum(-1), 1.0, atol=1e-4)
    argmax = np.argmax(out.probabilities, axis=-1)
    assert np.array_equal(np.asarray(out.mask.array), argmax)


def test_cli_regions_flag_is_documented_and_parsed(tmp_path, capsys):
    from medsight.cli.app import main

    assert main(["train", "segment", "--help"]) == 0
    assert "--regions" in capsys.readouterr().out
    code = main(["train", "segment", "--data", "msd:x", "--out", str(tmp_path), "--regions", "1,a"])
    assert code != 0
    assert "not label values" in capsys.readouterr().err


def test_evaluate_reports_each_region_as_a_whole(tmp_path):
    from medsight.evaluation.segmentation import evaluate_segmenter

    ds = nested_dataset()
    _, res = _train(tmp_path, ds, REGIONS)
    pkg = ModelPackage.load(res.package)
    report = evaluate_segmenter(pkg, ds, tmp_path / "eval", split="val", n_resamples=50, tta=False)
    assert report["regions"] == REGIONS
    got = {m["name"]: m["value"] for m in report["metrics"]}
    seg = Segmenter(pkg, device="cpu", tta=False)
    val = [c for c in ds if c.split == Split.VAL]
    by_case = [
        region_dice(np.asarray(seg(c.image()).mask.array), np.asarray(c.mask().array), REGIONS)
        for c in val
    ]
    for name, want in zip(region_names(REGIONS, NAMES), np.mean(by_case, 0), strict=True):
        assert got[f"dice_region_{name}"] == pytest.approx(want)
    assert {"dice_enhancing", "dice_core", "dice_edema"} <= set(got)  # per label as before
    assert len(report["region_cases"]) == len(val) * len(REGIONS)
    assert "dice_region_enhancing+core" in (tmp_path / "eval" / "report.html").read_text()
