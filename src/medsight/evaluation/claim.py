"""The CLAIM checklist of a validation run, and its failure cases as thumbnails.

CLAIM is the Checklist for Artificial Intelligence in Medical Imaging (Mongan, Moy and Kahn,
Radiology: Artificial Intelligence 2020; 2(2):e200029), 42 items.  The item numbers and the
paraphrased wording below follow the 2020 list; the 2024 update (Tejani et al.) revises the
wording of several items and is not mirrored here.

Each item is ``answered`` (the run knows it: from the package's ``model.json`` and the
evaluation itself), ``partial`` (the run gives what it knows; authors complete it) or ``open``
(to be answered by the authors: study design, eligibility, annotators, registration...).  The
checklist never guesses: what a package does not record stays open.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.io.atomic import atomic_path

__all__ = ["CLAIM_ITEMS", "claim_checklist", "failure_cases"]

OPEN = "to be answered by the authors"

#: CLAIM 2020 items: number -> (section, paraphrased wording).
CLAIM_ITEMS: dict[int, tuple[str, str]] = {
    1: ("Title / abstract", "Identifies the study as AI methodology and names the technique"),
    2: ("Title / abstract", "Structured summary of design, methods, results and conclusions"),
    3: ("Introduction", "Scientific and clinical background, intended use and clinical role"),
    4: ("Introduction", "Study objectives and hypotheses"),
    5: ("Study design", "Prospective or retrospective study"),
    6: ("Study design", "Study goal (model creation, feasibility, non-inferiority ...)"),
    7: ("Data", "Data sources"),
    8: ("Data", "Eligibility criteria: how, where and when participants were identified"),
    9: ("Data", "Data pre-processing steps"),
    10: ("Data", "Selection of data subsets, if applicable"),
    11: ("Data", "Definitions of data elements, with references to common data elements"),
    12: ("Data", "De-identification methods"),
    13: ("Data", "How missing data were handled"),
    14: ("Ground truth", "Definition of the reference standard, in enough detail to replicate"),
    15: ("Ground truth", "Rationale for choosing the reference standard"),
    16: ("Ground truth", "Source of annotations; qualifications and preparation of annotators"),
    17: ("Ground truth", "Annotation tools"),
    18: ("Ground truth", "Inter- and intra-rater variability; how discrepancies were resolved"),
    19: ("Data partitions", "Intended sample size and how it was determined"),
    20: ("Data partitions", "How data were assigned to partitions; their proportions"),
    21: ("Data partitions", "Level at which partitions are disjoint (image, patient ...)"),
    22: ("Model", "Detailed description of the model: inputs, outputs, layers"),
    23: ("Model", "Software libraries, frameworks and packages"),
    24: ("Model", "Initialisation of model parameters (random, transfer learning)"),
    25: ("Training", "Training details: augmentation, hyper-parameters, models trained"),
    26: ("Training", "Method of selecting the final model"),
    27: ("Training", "Ensembling techniques, if applicable"),
    28: ("Evaluation", "Metrics of model performance"),
    29: ("Evaluation", "Statistical measures of significance and uncertainty (CIs)"),
    30: ("Evaluation", "Robustness or sensitivity analysis"),
    31: ("Evaluation", "Explainability / interpretability methods and their validation"),
    32: ("Evaluation", "Validation or testing on external data"),
    33: ("Results", "Flow of participants or cases (inclusion and exclusion)"),
    34: ("Results", "Demographic and clinical characteristics of cases in each partition"),
    35: ("Results", "Performance metrics of the final model on all data partitions"),
    36: ("Results", "Estimates of diagnostic accuracy and their precision (95% CIs)"),
    37: ("Results", "Failure analysis of incorrectly classified cases"),
    38: ("Discussion", "Limitations: bias, statistical uncertainty, generalisability"),
    39: ("Discussion", "Implications for practice, intended use and clinical role"),
    40: ("Other", "Registration number and name of registry"),
    41: ("Other", "Where the full study protocol can be accessed"),
    42: ("Other", "Sources of funding and other support; role of funders"),
}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _thumbnail(x: NDArray[np.float32]) -> bytes:
    """A PNG of a network input ``(C, *spatial)``: the first channel (the middle slice of a
    volume), min-max scaled to 8 bit."""
    from PIL import Image as PILImage

    a = np.asarray(x[0], dtype=np.float64)
    while a.ndim > 2:
        a = a[a.shape[0] // 2]
    lo, hi = float(a.min()), float(a.max())
    a8 = np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) / (hi - lo) * 255).astype(np.uint8)
    img = PILImage.fromarray(a8)
    if max(img.size) < 96:  # small (MedMNIST) images: enlarged so a reader can see them
        scale = 96 // max(img.size) + 1
        img = img.resize((img.size[0] * scale, img.size[1] * scale), PILImage.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def failure_cases(
    task: str,
    case_ids: Sequence[str],
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    proba: NDArray[np.float64],
    decisions: NDArray[np.int64],
    names: Sequence[str],
    out: str | Path,
    k: int = 4,
) -> dict[str, Any]:
    """The worst misclassified cases, each with a PNG thumbnail written under ``out``.

    Binary: the ``k`` false positives with the highest and the ``k`` false negatives with the
    lowest positive-class probability.  Multi-class / ordinal: the ``k`` wrong decisions with
    the most confident wrong class.  Multi-label: not listed (several labels per case).

    Returns
    -------
    dict
        ``{"groups": {name: [case rows]}, "rule": text}``; each row has the case id, truth,
        decision, probability and the thumbnail's file name (relative to ``out``).
    """
    root = Path(out) / "failures"
    groups: dict[str, list[int]] = {}
    if task == "binary":
        p1 = proba[:, 1]
        fp = np.flatnonzero((decisions == 1) & (y == 0))
        fn = np.flatnonzero((decisions == 0) & (y == 1))
        groups["false_positives"] = [int(i) for i in fp[np.argsort(-p1[fp])][:k]]
        groups["false_negatives"] = [int(i) for i in fn[np.argsort(p1[fn])][:k]]
        rule = (
            f"up to {k} false positives with the highest and {k} false negatives with the "
            f"lowest {names[1]!r} probability, at the operating threshold"
        )
    elif task == "multilabel":
        return {"groups": {}, "rule": "not listed for multi-label models"}
    else:
        wrong = np.flatnonzero(decisions != y)
        conf = proba[wrong, decisions[wrong]]
        groups["misclassified"] = [int(i) for i in wrong[np.argsort(-conf)][:k]]
        rule = f"up to {k} wrong decisions with the most confident wrong class"
    rows: dict[str, list[dict[str, Any]]] = {}
    for group, idx in groups.items():
        rows[group] = []
        for i in idx:
            name = f"failures/{group}_{len(rows[group])}.png"
            root.mkdir(parents=True, exist_ok=True)
            with atomic_path(Path(out) / name) as tmp:
                tmp.write_bytes(_thumbnail(x[i]))
            rows[group].append(
                {
                    "case_id": str(case_ids[i]),
                    "truth": names[int(y[i])],
                    "decision": names[int(decisions[i])],
                    "probability": float(proba[i, int(decisions[i])]),
                    "image": name,
                }
            )
    return {"groups": rows, "rule": rule}


def _item(n: int, status: str, answer: str) -> dict[str, Any]:
    section, text = CLAIM_ITEMS[n]
    return {"item": n, "section": section, "text": text, "status": status, "answer": answer}


def claim_checklist(spec: Any, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The 42 CLAIM items for an evaluation ``report`` of a package with ``spec``.

    ``report`` is the classification evaluation report (metrics, subgroups, calibration,
    failure cases); ``spec`` the package's :class:`~medsight.models.spec.ModelSpec`.
    """
    td = spec.training_data
    arch = spec.architecture
    answers: dict[int, tuple[str, str]] = {}
    answers[1] = ("answered", f"deep-learning {spec.task.value} classifier ({arch.name})")
    if spec.intended_use:
        answers[3] = ("partial", f"intended use from the package: {spec.intended_use}")
    src = f"training: {td.dataset}; {td.source}; license {td.license or 'not stated'}" if td else ""
    answers[7] = (
        "answered" if td and td.license else "partial",
        f"{src}; evaluation: {report.get('data')}",
    )
    answers[9] = ("answered", f"preprocessing {spec.preprocessing.model_dump(mode='json')}")
    answers[10] = (
        "partial",
        f"evaluated on the {report.get('split')} split: {report.get('n_cases')} cases",
    )
    coded = [lab.name for lab in spec.labels if lab.code is not None]
    answers[11] = (
        "partial",
        f"labels {spec.label_names}" + (f"; coded: {coded}" if coded else "; not coded"),
    )
    if td:
        excluded = td.n_cases.get("excluded_no_label", 0)
        answers[13] = ("partial", f"{excluded} training cases without a label were left out")
        answers[14] = (
            "partial",
            f"labels as given by the data set {td.dataset}; their definition is the authors'",
        )
        answers[19] = ("partial", f"cases per partition: {td.n_cases} (not how it was sized)")
        answers[20] = (
            "answered",
            f"{td.source}; training partitions {td.n_cases}; evaluation "
            f"{report.get('split')} {report.get('n_cases')} cases",
        )
        official = "official splits" in td.source
        answers[21] = (
            "partial",
            "the data set's official splits (disjointness as the data set defines it)"
            if official
            else "generated by medsight: patient-grouped (no patient in two partitions)",
        )
    answers[22] = (
        "answered",
        f"{arch.name} {arch.args}; input {spec.input.model_dump(mode='json')}",
    )
    answers[23] = (
        "answered",
        ", ".join(f"{d} {_version(d)}" for d in ("medsight", "torch", "monai", "numpy")),
    )
    init = spec.extra.get("init") or spec.extra.get("pretrained")
    answers[24] = ("answered", f"from {init}" if init else "random initialisation (seeded)")
    answers[25] = ("partial", "the package's config.json holds the training configuration")
    search = spec.extra.get("arch_search")
    select = "the epoch with the best validation AUC (early stopping)"
    if search:
        select += f"; architecture {search['chosen']} chosen on validation ({search['criterion']})"
    answers[26] = ("answered", select)
    ens = spec.ensemble
    answers[27] = (
        "answered",
        f"{len(ens.members)}-member {ens.method} ensemble, calibrated probabilities averaged; "
        f"threshold on the {ens.threshold_fitted_on}"
        if ens
        else "no ensemble",
    )
    names = [m["name"] for m in report.get("metrics", [])]
    answers[28] = ("answered", ", ".join(names))
    boot = report.get("bootstrap", {})
    answers[29] = (
        "answered",
        f"95% percentile bootstrap CIs over {boot.get('level')}s, "
        f"{boot.get('n_resamples')} resamples",
    )
    subs = report.get("subgroups") or {}
    if subs:
        answers[30] = ("partial", f"subgroup results by {sorted(subs)}")
        answers[34] = ("partial", f"case counts by {sorted(subs)} in the evaluation partition")
    answers[31] = (
        "partial",
        "Grad-CAM / occlusion heat maps are available (medsight analyze); not validated here",
    )
    same = td is not None and td.dataset == report.get("data")
    answers[32] = (
        ("answered", "no: the evaluation data is a partition of the training data set")
        if same
        else (
            "partial",
            f"evaluated on {report.get('data')}; whether it is external is the authors' to confirm",
        )
    )
    answers[33] = (
        "partial",
        f"{report.get('n_cases')} cases from {report.get('n_patients')} patients evaluated",
    )
    val = [
        f"{m.name} {m.value:.3f} ({m.split})"
        for m in spec.metrics
        if m.name in ("auc", "auc_macro")
    ]
    test = [f"{m['name']} {m['value']:.3f}" for m in report.get("metrics", [])[:1]]
    answers[35] = (
        "answered",
        f"validation: {val or 'not recorded'}; {report.get('split')}: {test}",
    )
    answers[36] = ("answered", "every metric with its 95% CI (see Metrics)")
    fails = report.get("failure_cases") or {}
    n_fail = sum(len(v) for v in fails.get("groups", {}).values())
    answers[37] = (
        ("answered", f"{n_fail} failure cases with images: {fails.get('rule')}")
        if n_fail
        else ("partial", f"no failure cases listed ({fails.get('rule', 'none found')})")
    )
    if spec.limitations:
        answers[38] = ("partial", spec.limitations)
    return [_item(n, *answers.get(n, ("open", OPEN))) for n in sorted(CLAIM_ITEMS)]
