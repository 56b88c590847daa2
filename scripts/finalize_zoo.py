"""Finalise the model zoo's classification packages for clinical use in ``medsight analyze``.

The packages themselves are trained and copied into ``src/medsight/zoo`` by
``benchmarks/classification_medmnist.py --zoo`` (the seed with the best validation AUC).  This
script then adds, in place and idempotently, what the analysis pipeline needs:

* readable label names with coded concepts (verified against pydicom's copy of DICOM PS3.16
  where a standard code exists, otherwise a local ``99MEDSIGHT`` code, said so in the card)
  and their clinical meaning (significance, urgency: :mod:`medsight.core.significance`), which
  the worklist triages by;
* the modalities and body parts the model accepts, its intended use and limitations;
* the plausibility reference: the distribution of the network-input statistics over the
  training images, used to warn about inputs unlike the training data;
* the calibration (:func:`_calibrate`): refitted on the validation split from the packaged
  network's logits (weights unchanged), with its out-of-fold reliability bins; where it changes
  the probabilities, the operating threshold is re-chosen as in training and the stored
  validation and test metrics are recomputed so they describe what the package now does.

Usage (from the project root, with ``../shared/data`` present)::

    .venv/bin/python scripts/finalize_zoo.py [--only NAME] [--step calibration]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medsight.models import ModelPackage

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSIGHT_DATA", ROOT.parent / "shared" / "data"))
ZOO = ROOT / "src" / "medsight" / "zoo"

LOCAL = "99MEDSIGHT"
ENTRIES = {
    "retinamnist-smallcnn": {
        "data": "medmnist/retinamnist.npz",
        "labels": [
            # referable DR (ICDR): moderate NPDR or worse; severe NPDR and PDR: prompt referral
            ("DR grade 0 (no diabetic retinopathy)", None, "normal"),
            ("DR grade 1 (mild)", None, "benign"),  # non-referable: rescreen as usual
            ("DR grade 2 (moderate)", None, "actionable:routine"),
            ("DR grade 3 (severe)", None, "actionable:urgent"),
            ("DR grade 4 (proliferative)", None, "actionable:urgent"),
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
            ("malignant", ("21594007", "SCT", "Malignant"), "actionable:urgent"),
            ("benign or normal", ("30807003", "SCT", "Benign"), "benign"),
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
        "labels": [("normal", None, "normal"), ("pneumonia", None, "actionable:urgent")],
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
        "labels": [
            ("normal adrenal gland", None, "normal"),
            # an adrenal incidentaloma needs work-up (mostly benign adenomas), not an emergency
            ("adrenal mass", ("4147007", "SCT", "Mass"), "actionable:routine"),
        ],
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
    for lab, (label_name, code, meaning) in zip(spec.labels, entry["labels"], strict=True):
        coded = Code(*code) if code else Code(f"{name}-{lab.index}", LOCAL, label_name)
        labels.append(
            lab.model_copy(update={"name": label_name, "code": coded}).with_meaning(meaning)
        )
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


def _zoo_logits(pkg: ModelPackage, cases: list) -> tuple:
    """Raw logits (no calibration), labels and patient ids of ``cases`` under ``pkg``."""
    import numpy as np
    import torch

    from medsight.inference.classify import Predictor, logits_of
    from medsight.transforms.arrays import encode_label

    predictor = Predictor(pkg)
    spec = pkg.spec
    x = np.stack([predictor.preprocess(c.image()) for c in cases])
    with torch.no_grad():
        z = np.concatenate(
            [
                logits_of(predictor.network(torch.from_numpy(x[i : i + 256]))).float().numpy()
                for i in range(0, len(x), 256)
            ]
        ).astype(np.float64)
    multilabel = spec.task.value == "multilabel"
    y = np.array([encode_label(c, len(spec.labels), multilabel) for c in cases])
    return z, y, [str(c.patient_id) for c in cases]


def _card_with(card: str, rendered: str) -> str:
    """``card`` with its calibration line and metrics section taken from ``rendered``."""
    import re

    line = re.compile(r"^- (Temperature \(calibration\)|Calibration): .*$", re.M)
    new_line = line.search(rendered)
    if new_line:
        card = line.sub(lambda _: new_line.group(0), card, count=1)
    section = re.compile(r"^## Metrics .*?(?=^## )", re.M | re.S)
    new_section = section.search(rendered)
    if new_section and section.search(card):
        card = section.sub(lambda _: new_section.group(0), card, count=1)
    return card


def _calibrate(name: str, entry: dict) -> Path:
    """Fit and store a zoo classifier's calibration and its validation reliability.

    The network is the packaged one (weights unchanged).  Its validation logits go through
    :func:`medsight.evaluation.calibration.fit_calibration` (temperature, vector scaling or
    isotonic, chosen by held-out NLL; a temperature at its search bound is a failed fit).  When
    the chosen map changes the probabilities, the threshold is re-chosen with the package's
    threshold method and the validation metrics (and the test ``auc`` / ``accuracy`` the
    benchmark stored) are recomputed with the same bootstrap settings.  Only ``temperature``,
    ``calibration`` and, then, ``thresholds`` and ``metrics`` of ``model.json`` are rewritten;
    running it again changes nothing.
    """
    import dataclasses

    import numpy as np

    from medsight.core import Split
    from medsight.data import load_dataset
    from medsight.evaluation.calibration import fit_calibration
    from medsight.models import ModelPackage
    from medsight.models.calibration import calibrated_probabilities
    from medsight.models.package import render_model_card
    from medsight.models.spec import ModelSpec
    from medsight.training.classification import operating_thresholds, validation_metrics

    target = ZOO / name
    pkg = ModelPackage.load(target)
    spec = pkg.spec
    data = load_dataset(f"medmnist:{DATA / entry['data']}")
    val = [c for c in data if c.split == Split.VAL]
    shape = list(np.shape(val[0].image().array))[: spec.input.spatial_ndim]
    if shape != list(spec.preprocessing.size or shape):
        expected = spec.preprocessing.size
        raise SystemExit(f"{name}: {entry['data']} holds {shape} images, not {expected}")
    z, y, groups = _zoo_logits(pkg, val)
    cal = fit_calibration(z, y, spec.task, seed=spec.seed or 0)
    t_old = spec.temperature
    if (
        cal.method.value == "temperature"
        and t_old
        and abs(cal.params["temperature"] / t_old - 1) < 1e-4
    ):
        cal = dataclasses.replace(cal, params={"temperature": t_old})  # same fit: keep it exact
    proba = cal.probabilities(z)
    old = calibrated_probabilities(z, spec.task, spec.calibration, spec.temperature)
    names = spec.label_names
    thresholds, metrics = spec.thresholds, spec.metrics
    if not np.allclose(proba, old, rtol=0, atol=1e-9):  # re-derive what depends on them
        config = json.loads((target / "config.json").read_text(encoding="utf-8"))
        method = spec.extra.get("threshold_method", config.get("threshold", "youden"))
        thresholds = operating_thresholds(method, spec.task, y, proba, names)
        # per-class metric names stay as training wrote them (before the labels were renamed)
        m_names = spec.extra.get("original_label_names") or names
        m_thresholds = {m_names[names.index(k)]: v for k, v in thresholds.items()}
        n_resamples = config.get("n_resamples", 1000)
        metrics = validation_metrics(
            spec.task, y, proba, m_thresholds, m_names, groups, n_resamples, spec.seed
        )
        if any(m.split == "test" for m in spec.metrics):
            test = [c for c in data if c.split == Split.TEST]
            zt, yt, gt = _zoo_logits(pkg, test)
            pt = cal.probabilities(zt)  # the benchmark's test bootstrap: 1000 resamples
            on_test = validation_metrics(
                spec.task, yt, pt, m_thresholds, m_names, gt, 1000, spec.seed, split="test"
            )
            computed = {m.name: m for m in on_test}
            for m in spec.metrics:
                if m.split == "test":
                    new = computed.get(m.name) or computed.get(f"{m.name}_macro")
                    metrics.append(new.model_copy(update={"name": m.name}) if new else m)
    new_spec = spec.model_copy(
        update={
            "temperature": cal.params.get("temperature"),
            "calibration": cal.to_spec(),
            "thresholds": thresholds,
            "metrics": metrics,
        }
    )
    new_spec = ModelSpec.model_validate(json.loads(new_spec.model_dump_json()))
    dumped = new_spec.model_dump(mode="json")
    path = target / "model.json"
    before = json.loads(path.read_text(encoding="utf-8"))
    doc = {}
    for key, value in before.items():  # keep every other key (and the order) as it is
        if key == "calibration":
            continue
        doc[key] = dumped[key] if key in ("temperature", "thresholds", "metrics") else value
        if key == "temperature":
            doc["calibration"] = dumped["calibration"]
    if doc != before:
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        card = target / "MODEL_CARD.md"
        card.write_text(
            _card_with(card.read_text(encoding="utf-8"), render_model_card(new_spec)),
            encoding="utf-8",
        )
    ModelPackage.load(target)  # still a valid package
    c = new_spec.calibration
    print(
        f"zoo: {target.relative_to(ROOT)} calibration {c.method.value} "
        f"(converged {c.converged}); val ECE {c.ece_before:.4f} uncalibrated -> "
        f"{c.ece_after:.4f} in-sample, {c.reliability.ece:.4f} out-of-fold; "
        f"NLL {c.nll_before:.4f} -> {c.nll_after:.4f}; {c.note}",
        flush=True,
    )
    return target


#: Segmentation packages (trained by benchmarks/segmentation_retrain.sh): only the plausibility
#: reference is added, over the training split the benchmark used (SplitConfig below, the same
#: near-duplicate grouping for BUSI); their labels (with their clinical meaning: hippocampus
#: "anatomy", BUSI lesion "actionable:routine") and cards are kept as they are.
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
    parser.add_argument(
        "--step", choices=["all", "calibration"], default="all", help="run only this step"
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"data folder {DATA} not found (set MEDSIGHT_DATA)", file=sys.stderr)
        return 2
    for name in [args.only] if args.only else [*ENTRIES, *SEGMENTATION]:
        if not (ZOO / name / "model.json").is_file():
            print(f"zoo: {name} not present (run its benchmark script with --zoo first)")
        elif args.step == "calibration":
            if name in ENTRIES:
                _calibrate(name, ENTRIES[name])
        elif name in SEGMENTATION:
            _segmentation_reference(name, SEGMENTATION[name])
        else:
            _finalize(name, ENTRIES[name])
            _calibrate(name, ENTRIES[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
