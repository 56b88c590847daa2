"""``medsight train classify`` and ``medsight evaluate`` on a tiny subset of real BreastMNIST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsight.cli.app import main
from medsight.cli.evaluate import evaluator_for
from medsight.core import InvalidInputError
from medsight.models import ModelPackage


def test_train_then_evaluate_breastmnist(shared_data, tmp_path, capsys):
    data = f"medmnist:{shared_data / 'medmnist' / 'breastmnist.npz'}"
    run = tmp_path / "run"
    code = main(["train", "classify", "--data", data, "--out", str(run), "--epochs", "2",
                 "--max-cases", "40", "--batch-size", "16", "--threads", "1", "--seed", "3",
                 "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "validation auc" in capsys.readouterr().out
    pkg = ModelPackage.load(run / "package")
    assert pkg.spec.training_data.license.startswith("CC BY 4.0")
    assert pkg.spec.training_data.n_cases == {"train": 40, "val": 40}
    assert pkg.spec.seed == 3 and set(pkg.spec.thresholds) == {"normal, benign"}
    out = tmp_path / "eval"
    code = main(["evaluate", str(run), "--data", data, "--out", str(out),
                 "--n-resamples", "50"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "test" and report["n_cases"] == 156  # the official test split
    assert {"auc", "sensitivity", "specificity", "ppv", "npv", "f1"} <= {
        m["name"] for m in report["metrics"]
    }
    assert (out / "report.html").is_file()
    # mirror TTA is a segmentation option: a classifier refuses it with a one-line error
    code = main(["evaluate", str(run), "--data", data, "--out", str(tmp_path / "e2"), "--tta"])
    assert code == 2 and "--tta does not apply to classification models" in capsys.readouterr().err
    # an existing checkpoint without --resume is refused with a one-line error
    again = main(["train", "classify", "--data", data, "--out", str(run), "--no-progress"])
    assert again == 2 and "--resume" in capsys.readouterr().err


def test_evaluate_dispatches_on_task():
    assert evaluator_for("binary").__module__ == "medsight.evaluation.classification_eval"
    assert evaluator_for("detection").__module__ == "medsight.evaluation.detection_eval"
    with pytest.raises(InvalidInputError, match="has no task family"):
        evaluator_for("none")


def test_open_package_finds_the_package_of_new_and_legacy_run_folders(tmp_path):
    import shutil
    from importlib.resources import files

    from medsight.cli.evaluate import open_package

    zoo = Path(str(files("medsight") / "zoo" / "breastmnist-smallcnn"))
    for sub in ("package", "model"):  # model/: classification runs of earlier versions
        run = tmp_path / sub
        shutil.copytree(zoo, run / sub)
        assert open_package(run).spec.name == ModelPackage.load(zoo).spec.name
    with pytest.raises(InvalidInputError, match=r"package/model\.json or model/model\.json"):
        open_package(tmp_path)
