"""Finalise the model zoo's classification packages for clinical use in ``medsight analyze``.

The packages themselves are trained and copied into ``src/medsight/zoo`` by
``benchmarks/classification_medmnist.py --zoo`` (the seed with the best validation AUC).  This
script then adds, in place and idempotently, what the analysis pipeline needs:

* readable label names with coded concepts (verified against pydicom's copy of DICOM PS3.16
  where a standard code exists, otherwise a local ``99MEDSIGHT`` code, said so in the card);
* the modalities and body parts the model accepts, its intended use and limitations;
* the plausibility reference: the distribution of the network-input statistics over the
  training images, used to warn about inputs unlike the training data.

Usage (from the project root, with ``../shared/data`` present)::

    .venv/bin/python scripts/finalize_zoo.py [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSIGHT_DATA", ROOT.parent / "shared" / "data"))
ZOO = ROOT / "src" / "medsight" / "zoo"

LOCAL = "99MEDSIGHT"
ENTRIES = {
    "retinamnist-smallcnn": {
        "data": "medmnist/retinamnist.npz",
        "labels": [
            ("DR grade 0 (no diabetic retinopathy)", None),
            ("DR grade 1 (mild)", None),
            ("DR grade 2 (moderate)", None),
            ("DR grade 3 (severe)", None),
            ("DR grade 4 (proliferative)", None),
        ],
        "input": {"modalities": ["OP", "XC"], "body_parts": ["EYE", "RETINA"]},
        "intended_use": (
            "Research demonstration: grading of diabetic retinopathy (5 ordinal grades) on a "
            "colour fundus photograph, downscaled to 28x28 pixels as in RetinaMNIST. Not for "
            "screening or diagnosis."
        ),
        "limitations": (
            "Trained on 1,080 RetinaMNIST images (28x28) from one source (DeepDRiD); the "
            "published best test AUC on this set is 0.750 and accuracy 0.531, so grades are "
            "often wrong. Fine lesions (microaneurysms) are invisible at 28 px. Grade codes are "
            "local (99MEDSIGHT): no verified SNOMED CT code for each grade was available."
        ),
        "site": ("5665001", "SCT", "Retina"),
    },
    "breastmnist-smallcnn": {
        "data": "medmnist/breastmnist.npz",
        "labels": [
            ("malignant", ("21594007", "SCT", "Malignant")),
            ("benign or normal", ("30807003", "SCT", "Benign")),
        ],
        "input": {"modalities": ["US"], "body_parts": ["BREAST"]},
        "intended_use": (
            "Research demonstration: malignant versus benign-or-normal breast ultrasound image "
            "(BreastMNIST, 28x28 grey). Not for diagnosis."
        ),
        "limitations": (
            "Trained on 546 BreastMNIST images from one hospital's scanner (BUSI); images are "
            "downscaled to 28x28, so small lesions are lost. Other body parts, Doppler colour "
            "overlays and annotated screenshots are out of distribution."
        ),
        "site": ("76752008", "SCT", "Breast"),
    },
    "pneumoniamnist-smallcnn": {
        "data": "medmnist/pneumoniamnist.npz",
        "labels": [("normal", None), ("pneumonia", None)],
        "input": {"modalities": ["CR", "DX"], "body_parts": ["CHEST"]},
        "intended_use": (
            "Research demonstration: pneumonia versus normal on a paediatric frontal chest "
            "radiograph (PneumoniaMNIST, 28x28 grey). Not for diagnosis."
        ),
        "limitations": (
            "Trained on 4,708 paediatric radiographs from one centre (Guangzhou), downscaled to "
            "28x28; adults, lateral views and other findings are out of distribution. The "
            "pneumonia code is local (99MEDSIGHT): no verified SNOMED CT code was available "
            "offline."
        ),
        "site": ("816094009", "SCT", "Thorax"),
    },
    "adrenalmnist3d-smallcnn": {
        "data": "medmnist/adrenalmnist3d.npz",
        "labels": [("normal adrenal gland", None), ("adrenal mass", ("4147007", "SCT", "Mass"))],
        "input": {"modalities": ["CT"], "body_parts": ["ABDOMEN"]},
        "intended_use": (
            "Research demonstration: adrenal mass versus normal gland on a 28x28x28 CT crop "
            "centred on the adrenal gland (AdrenalMNIST3D). Not for diagnosis."
        ),
        "limitations": (
            "Expects a crop centred on one adrenal gland as in AdrenalMNIST3D; a whole CT "
            "volume or a single slice is out of distribution. One centre (Zhongshan Hospital)."
        ),
        "site": ("23451007", "SCT", "Adrenal gland"),
    },
}


def _finalize(name: str, entry: dict) -> Path:
    import numpy as np

    from medsight.core import Split
    from medsight.core.codes import Code
    from medsight.data import load_dataset
    from medsight.models import ModelPackage
    from medsight.models.plausibility import input_statistics, reference_statistics
    from medsight.transforms.preprocess import to_network_input

    target = ZOO / name
    pkg = ModelPackage.load(target)
    spec = pkg.spec
    originals = spec.extra.get("original_label_names") or [lab.name for lab in spec.labels]
    site = Code(*entry["site"])
    labels = []
    for lab, (label_name, code) in zip(spec.labels, entry["labels"], strict=True):
        coded = Code(*code) if code else Code(f"{name}-{lab.index}", LOCAL, label_name)
        labels.append(lab.model_copy(update={"name": label_name, "code": coded}))
    renamed = dict(zip(originals, (lab.name for lab in labels), strict=True))
    thresholds = {renamed.get(k, k): v for k, v in spec.thresholds.items()}
    data = load_dataset(f"medmnist:{DATA / entry['data']}")
    stats = [
        input_statistics(to_network_input(case.image(), spec.preprocessing))
        for case in data
        if case.split == Split.TRAIN
    ]
    extra = dict(spec.extra)
    extra["input_reference"] = reference_statistics(stats)
    extra["finding_site"] = {"value": site.value, "scheme": site.scheme, "meaning": site.meaning}
    extra["finalized_by"] = "scripts/finalize_zoo.py"
    extra["original_label_names"] = originals
    new_spec = spec.model_copy(
        update={
            "labels": labels,
            "thresholds": thresholds,
            "input": spec.input.model_copy(update=entry["input"]),
            "intended_use": entry["intended_use"],
            "limitations": entry["limitations"],
            "extra": extra,
        }
    )
    new_spec = type(new_spec).model_validate(json.loads(new_spec.model_dump_json()))
    extras = {
        f.name: f.read_text(encoding="utf-8")
        for f in target.iterdir()
        if f.suffix in (".csv", ".json") and f.name != "model.json"
    }
    ModelPackage.save(target, new_spec, pkg.state_dict(), extra_files=extras, overwrite=True)
    print(
        f"zoo: {target.relative_to(ROOT)} ({len(stats)} training images in the reference; "
        f"mean input {np.round(extra['input_reference']['mean'], 3).tolist()})",
        flush=True,
    )
    return target


#: Segmentation packages (trained by benchmarks/segmentation_retrain.sh): only the plausibility
#: reference is added, over the training split the benchmark used (SplitConfig below, the same
#: near-duplicate grouping for BUSI); their labels and cards are kept as they are.
SEGMENTATION = {
    "hippocampus-dynunet": "hippocampus",
    "busi-lesion-dynunet": "busi",
}


def _segmentation_reference(name: str, which: str) -> Path:
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from segmentation_prepare import SPLIT, busi_dataset  # the benchmark's own split

    from medsight.core import Split
    from medsight.data import load_dataset, make_splits
    from medsight.models import ModelPackage
    from medsight.models.plausibility import input_statistics, reference_statistics
    from medsight.transforms.preprocess import normalize_intensity

    target = ZOO / name
    pkg = ModelPackage.load(target)
    spec = pkg.spec
    data = (
        load_dataset(f"msd:{DATA / 'hippocampus'}")
        if which == "hippocampus"
        else (busi_dataset(DATA))
    )
    data = make_splits(data, SPLIT).apply(data)
    stats = []
    for case in data:
        if case.split != Split.TRAIN:
            continue
        image = case.image()
        arr = np.asarray(image.array, dtype=np.float32)
        x = np.moveaxis(arr, -1, 0) if image.has_channels else arr[None]
        stats.append(input_statistics(normalize_intensity(x, spec.preprocessing)))
    extra = dict(spec.extra)
    extra["input_reference"] = reference_statistics(stats)
    extra["finalized_by"] = "scripts/finalize_zoo.py"
    new_spec = type(spec).model_validate(
        json.loads(spec.model_copy(update={"extra": extra}).model_dump_json())
    )
    extras = {
        f.name: f.read_text(encoding="utf-8")
        for f in target.iterdir()
        if f.suffix in (".csv", ".json") and f.name != "model.json"
    }
    card = (target / "MODEL_CARD.md").read_text(encoding="utf-8")
    note = "plausibility reference: finalised by `scripts/finalize_zoo.py`"
    if note not in card:
        card = card.rstrip("\n") + f"\n\n- {note} ({len(stats)} training images).\n"
    ModelPackage.save(
        target, new_spec, pkg.state_dict(), card=card, extra_files=extras, overwrite=True
    )
    print(f"zoo: {target.relative_to(ROOT)} ({len(stats)} training images in the reference)")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted([*ENTRIES, *SEGMENTATION]))
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"data folder {DATA} not found (set MEDSIGHT_DATA)", file=sys.stderr)
        return 2
    for name in [args.only] if args.only else [*ENTRIES, *SEGMENTATION]:
        if not (ZOO / name / "model.json").is_file():
            print(f"zoo: {name} not present (run its benchmark script with --zoo first)")
        elif name in SEGMENTATION:
            _segmentation_reference(name, SEGMENTATION[name])
        else:
            _finalize(name, ENTRIES[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
