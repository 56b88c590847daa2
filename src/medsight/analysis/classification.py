"""The classification family's findings builder: a package and an Image -> Findings.

One Finding per reported label (the positive class of a binary model, the predicted grade or
class of an ordinal / multi-class model, every label of a multi-label model) with its
calibrated probability and the decision at the package's operating threshold (carried on the
Finding for the finding's own label, per-group where one decided), and a Grad-CAM heat map
for it.  A binary model reports its actionable class (a label of unknown meaning otherwise,
else the last), whatever its index: BreastMNIST's class 0 is "malignant".  A multi-label
label whose calibration gives every image the same probability reports no finding (a
warning says why).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from medsight.analysis.output import ModelOutput, RunOptions, label_code, ood_check, report_rank
from medsight.core.codes import Code
from medsight.core.findings import Finding, FindingKind
from medsight.core.image import Image
from medsight.models.calibration import constant_outputs
from medsight.models.package import ModelPackage
from medsight.models.plausibility import assess, input_statistics
from medsight.models.scope import package_problems
from medsight.models.spec import Task

__all__ = ["analyze_classification"]


def analyze_classification(
    package: ModelPackage, image: Image, options: RunOptions | None = None
) -> ModelOutput:
    """Classify ``image`` (already inside the package's intended use) into Findings."""
    options = options or RunOptions()
    import torch

    from medsight.explain import explain_classifier
    from medsight.inference.cache import cached_model
    from medsight.inference.classify import Predictor
    from medsight.inference.features import capture
    from medsight.models.reliability import is_weak, reliability_statement

    spec = package.spec
    predictor = cached_model(Predictor, package)  # built once per package (service reuse)
    x = predictor.preprocess(image)
    plaus = assess(input_statistics(x), spec.extra.get("input_reference"))
    with capture(predictor.network, "classifier") as grab:
        proba = predictor.predict_arrays(x[None])[0]
    # the identity view runs first (Predictor.predict_arrays): its row is the image's own
    # features, as the OOD reference was fitted; test-time views add rows after it
    features = grab.vectors()[:1]
    operating = ""  # per-group thresholds only for a group the caller named, never guessed
    names = spec.label_names
    # the binary threshold on the second label (index 1), as predict_labels applies it
    cut = spec.thresholds.get(names[1], 0.5) if spec.task is Task.BINARY else None
    if spec.group_thresholds is not None:
        attribute = spec.group_thresholds.attribute
        value = options.attributes.get(attribute)
        if value is None and options.clinical is not None and attribute == "sex":
            # the record's sex, spelled as the groups are (F/M, female/male); else unknown
            from medsight.analysis.risk import record_from_context

            cats = {"sex": tuple(spec.group_thresholds.thresholds)}
            value = record_from_context(options.clinical, cats).get("sex")
        decided, used = predictor.decide_by_group(proba[None], [value])
        decision, operating = decided[0], f"; decided at the {used[0]}"
        group_cut = spec.group_thresholds.threshold_for(value)
        cut = group_cut if group_cut is not None and spec.task is Task.BINARY else cut
    else:
        decision = predictor.decide(proba[None])[0]
    labels = sorted(spec.labels, key=lambda lab: lab.index)
    if spec.task is Task.BINARY:  # the class worth reporting: actionable first, else the last
        target = max(labels, key=lambda lab: (report_rank(lab), lab.index))
        reported = [(target, bool(decision == target.index))]
    elif spec.task is Task.MULTILABEL:
        reported = [(lab, bool(decision[lab.index])) for lab in labels]
    else:  # multi-class / ordinal: the predicted class or grade
        reported = [(labels[int(decision)], True)]
    # a multi-label label whose calibration gives every image one probability is no finding
    # (a wholly constant map is withheld before the network runs: run_package)
    flat = constant_outputs(spec.calibration, spec.task, len(labels))
    if flat:
        reported = [(lab, pos) for lab, pos in reported if lab.index not in flat]
        plaus = dataclasses.replace(
            plaus,
            warnings=(
                *plaus.warnings,
                *(
                    f"the finding for {lab.name} is withheld: the model's calibration maps every "
                    f"image to p={flat[lab.index]:.3g} for it; it cannot rank cases on this "
                    "label (see its model card); retrain with more data or without calibration"
                    for lab in labels
                    if lab.index in flat
                ),
            ),
        )
    if not reported:
        why = package_problems(spec) or [
            "the model's calibration gives every image the same probabilities; it cannot rank cases"
        ]
        return ModelOutput([], plausibility=plaus).withhold(*why)
    site = spec.extra.get("finding_site")

    def own_threshold(index: int) -> float | None:
        """The operating threshold for label ``index`` itself (None: arg-max decision)."""
        if spec.task is Task.BINARY and cut is not None:
            return float(cut) if index == 1 else 1.0 - float(cut)  # p0 > 1 - t <=> p1 < t
        if spec.task is Task.MULTILABEL:
            return float(spec.thresholds.get(names[index], 0.5))
        return None

    findings = [
        Finding(
            finding=label_code(lab, package),
            model_id=spec.name,
            model_version=spec.version,
            kind=FindingKind.CLASSIFICATION,
            probability=float(proba[lab.index]),
            positive=positive,
            site=Code(**site) if site else None,
            source=image.source,
            note=lab.name + operating,
            significance=lab.significance,
            urgency=lab.urgency,
            reliability=reliability_statement(spec, float(proba[lab.index]), lab.index),
            weak_model=is_weak(spec),
            threshold=own_threshold(lab.index),
        )
        for lab, positive in reported
    ]
    heat = None
    if options.explain:  # explain the first reported label's output unit
        from medsight.analysis.timings import stage

        tensor = torch.from_numpy(np.ascontiguousarray(x))[None]
        with stage(f"explain {package.id}"):  # timed apart from the model (analyze timings)
            heat = explain_classifier(predictor.network, tensor, image, reported[0][0].index)
    probabilities = {lab.name: float(proba[lab.index]) for lab in labels if lab.index not in flat}
    output = ModelOutput(findings, heatmap=heat, probabilities=probabilities, plausibility=plaus)
    ood_check(output, package, features)
    return output
