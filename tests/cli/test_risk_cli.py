"""``medsight train risk``: a tiny run writes a package that predicts; bad options fail clearly."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image as PILImage

from medsight.cli.app import main
from medsight.data import load_dataset
from medsight.inference.risk import RiskPredictor, timelines_for_package


def write_toy(root, n_patients=30, seed=0):
    """A CSV manifest of 1-2 tiny PNGs per patient; some rows without the outcome."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    lines = ["file,patient_id,offset,age,sex,died"]
    for p in range(n_patients):
        age = int(rng.integers(20, 90))
        for v in range(1 + p % 2):
            PILImage.fromarray(rng.integers(0, 255, (12, 12)).astype(np.uint8)).save(
                root / "images" / f"p{p}_{v}.png"
            )
            died = "" if p % 6 == 0 else ("Y" if age > 55 else "N")
            lines.append(f"p{p}_{v}.png,p{p},{2 * v},{age},{'FM'[p % 2]},{died}")
    (root / "meta.csv").write_text("\n".join(lines) + "\n")
    return f"csv:{root / 'meta.csv'}"


def test_train_risk_cli(tmp_path, capsys):
    torch.set_num_threads(1)
    data = write_toy(tmp_path / "toy", n_patients=30)
    args = [
        "train",
        "risk",
        "--data",
        data,
        "--target",
        "died",
        "--features",
        "age,sex:categorical",
        "--arch",
        "film",
        "--epochs",
        "20",
        "--n-resamples",
        "20",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "left out for lack of it" in out and "wrote" in out and "validation auc" in out
    predictor = RiskPredictor(tmp_path / "run" / "package")
    p = predictor.predict(list(timelines_for_package(predictor.package, load_dataset(data)))[:3])
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    # medsight evaluate dispatches to the risk family's evaluator (test part of its split)
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "run"),
                "--data",
                data,
                "--out",
                str(tmp_path / "eval"),
                "--n-resamples",
                "20",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test (" in out and "auc" in out and (tmp_path / "eval" / "report.html").is_file()


def test_train_risk_cli_refuses_two_outcomes(tmp_path, capsys):
    args = [
        "train",
        "risk",
        "--data",
        "csv:x.csv",
        "--target",
        "died",
        "--time",
        "days",
        "--event",
        "event",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(args) == 2
    assert "either target or time and event" in capsys.readouterr().err
