"""Give every zoo package its intended-use limits and its out-of-distribution reference.

For each package in ``src/medsight/zoo`` this script, in place and idempotently:

* sets the intended-use fields of ``input`` that the analysis gate checks
  (:mod:`medsight.models.scope`): ``grey_only`` for models trained on grey-scale images (a
  colour Doppler ultrasound is outside their use) and the size range (``max_size``: twice the
  largest training image, so a whole scan never reaches a model made for crops);
* fits the Mahalanobis OOD reference on the network's own features
  (:mod:`medsight.models.ood`): class means and shared covariance from the **training** split,
  threshold at a 5% false-rejection rate on the **validation** split, and writes it as
  ``ood.safetensors`` with its sha256 in ``model.json`` ``extra["ood"]``.

Splits: the MedMNIST official ones; for the segmentation sets the benchmark's patient-level
split (``benchmarks/segmentation_prepare.py``: seed 0, 10% validation, 20% test), so the
test images stay unseen for ``benchmarks/ood_detection.py``.  Segmentation references use at
most ``--max-train`` training images (seeded choice) to bound CPU time; all validation images
set the threshold.

Usage (from the project root, with ``../shared/data`` present)::

    .venv/bin/python scripts/zoo_scope.py [--only NAME] [--max-train 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSIGHT_DATA", ROOT.parent / "shared" / "data"))
ZOO = ROOT / "src" / "medsight" / "zoo"
sys.path.insert(0, str(ROOT / "benchmarks"))

#: package -> (data spec kind, file under DATA, grey_only)
PACKAGES = {
    "breastmnist-smallcnn": ("medmnist", "medmnist/breastmnist.npz", True),
    "pneumoniamnist-smallcnn": ("medmnist", "medmnist/pneumoniamnist.npz", True),
    "retinamnist-smallcnn": ("medmnist", "medmnist/retinamnist.npz", False),
    "adrenalmnist3d-smallcnn": ("medmnist", "medmnist/adrenalmnist3d.npz", True),
    "hippocampus-dynunet": ("msd", "hippocampus", True),
    "busi-lesion-dynunet": ("busi", "busi", True),
}


def split_cases(kind: str, rel: str) -> dict[str, list]:
    """Cases of the package's data set by split (train / val / test)."""
    from medsight.data import load_dataset, make_splits

    if kind == "medmnist":
        ds = load_dataset(f"medmnist:{DATA / rel}")
        return {s: [c for c in ds if c.split.value == s] for s in ("train", "val", "test")}
    if kind == "msd":
        ds = load_dataset(f"msd:{DATA / rel}")
    else:
        from segmentation_prepare import busi_dataset

        ds = busi_dataset(DATA)
    from segmentation_prepare import SPLIT

    splits = make_splits(ds, SPLIT)
    fold = splits.folds[0]
    ids = {"train": set(fold.train), "val": set(fold.val), "test": set(splits.test)}
    return {s: [c for c in ds if c.case_id in ids[s]] for s in ids}


def _rewrite(folder: Path, update: dict) -> None:
    path = folder / "model.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, value in update.items():
        target = data
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _card(path: Path, section: list[str]) -> None:
    """Replace (or add) the card's "Scope and abstention" section."""
    text = path.read_text(encoding="utf-8")
    head = "## Scope and abstention"
    if head in text:
        before, _, after = text.partition(head)
        rest = after.split("\n## ", 1)
        text = before + ("## " + rest[1] if len(rest) > 1 else "")
    text = text.rstrip("\n") + "\n\n" + "\n".join(section).rstrip("\n") + "\n"
    path.write_text(text, encoding="utf-8")


def finish(name: str, max_train: int) -> dict:
    from medsight.inference.features import package_features
    from medsight.models.ood import fit_reference
    from medsight.models.package import ModelPackage, scope_section
    from medsight.training.plan import register_segmentation_networks

    register_segmentation_networks()
    kind, rel, grey = PACKAGES[name]
    folder = ZOO / name
    t0 = time.time()
    cases = split_cases(kind, rel)
    train, val = cases["train"], cases["val"]
    package = ModelPackage.load(folder)
    segmentation = package.spec.task.value == "segmentation"
    if segmentation and len(train) > max_train:
        pick = np.random.default_rng(0).choice(len(train), max_train, replace=False)
        train = [train[i] for i in sorted(pick)]
    sizes = np.array([c.image().shape[: package.spec.input.spatial_ndim] for c in train])
    update = {
        "input.grey_only": grey,
        "input.max_size": (sizes.max(axis=0) * 2).astype(int).tolist() if segmentation else None,
    }
    if kind == "msd":  # a crop model: the smallest side of a crop, halved
        update["input.min_size"] = np.maximum(sizes.min(axis=0) // 2, 8).astype(int).tolist()
    labels = None if segmentation else np.array([int(np.ravel(c.label)[0]) for c in train])
    f_train = package_features(package, (c.image() for c in train))
    f_val = package_features(package, (c.image() for c in val))
    layer = "bottleneck (mean, log sd)" if segmentation else "penultimate (input of last linear)"
    ref = fit_reference(f_train, f_val, train_labels=labels, layer=layer)
    update["extra.ood"] = ref.save(folder)
    _rewrite(folder, update)
    spec = ModelPackage.load(folder).spec  # still valid
    _card(folder / "MODEL_CARD.md", scope_section(spec))
    out = {
        "package": name,
        "n_train": len(train),
        "n_val": len(val),
        "threshold": ref.threshold,
        "val_rejection_rate": ref.val_rejection_rate,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(out))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(PACKAGES))
    parser.add_argument("--max-train", type=int, default=200)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"data folder {DATA} not found (set MEDSIGHT_DATA)", file=sys.stderr)
        return 2
    for name in [args.only] if args.only else list(PACKAGES):
        finish(name, args.max_train)
    return 0


if __name__ == "__main__":
    sys.exit(main())
