"""Labels carry their clinical meaning (significance, urgency); old model.json files still load;
every zoo package states the meaning of every label."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from medsight.core.errors import InvalidInputError
from medsight.core.significance import Significance, Urgency, parse_label_meanings
from medsight.models.spec import (
    ArchitectureSpec,
    InputSpec,
    LabelSpec,
    ModelSpec,
    PreprocessingSpec,
    Task,
    apply_meanings,
)
from medsight.models.zoo import zoo_packages


def _spec(labels: list[LabelSpec]) -> ModelSpec:
    return ModelSpec(
        name="m",
        version="1",
        task=Task.BINARY,
        architecture=ArchitectureSpec(name="smallcnn"),
        input=InputSpec(spatial_ndim=2),
        preprocessing=PreprocessingSpec(),
        labels=labels,
    )


def test_round_trip_with_and_without_meaning():
    annotated = _spec(
        [
            LabelSpec(index=0, name="benign", significance=Significance.BENIGN),
            LabelSpec(index=1, name="malignant", significance="actionable", urgency="urgent"),
        ]
    )
    again = ModelSpec.model_validate_json(annotated.model_dump_json())
    assert again == annotated
    assert again.labels[1].significance is Significance.ACTIONABLE
    assert again.labels[1].urgency is Urgency.URGENT
    plain = _spec([LabelSpec(index=0, name="no"), LabelSpec(index=1, name="yes")])
    assert ModelSpec.model_validate_json(plain.model_dump_json()) == plain
    # a model.json written before labels had a meaning: the keys are simply absent
    old = json.loads(plain.model_dump_json())
    for lab in old["labels"]:
        del lab["significance"], lab["urgency"]
    loaded = ModelSpec.model_validate(old)
    assert [lab.significance for lab in loaded.labels] == [None, None]


def test_urgency_only_on_actionable_labels_and_meanings_by_name():
    with pytest.raises(ValidationError, match="only actionable"):
        LabelSpec(index=0, name="benign", significance="benign", urgency="urgent")
    with pytest.raises(ValidationError):
        LabelSpec(index=0, name="x", significance="serious")
    labels = [LabelSpec(index=0, name="normal"), LabelSpec(index=1, name="pneumonia")]
    meanings = parse_label_meanings(["pneumonia=actionable:urgent", "normal=normal"])
    done = apply_meanings(labels, meanings)
    assert [(lab.significance, lab.urgency) for lab in done] == [
        (Significance.NORMAL, None),
        (Significance.ACTIONABLE, Urgency.URGENT),
    ]
    with pytest.raises(InvalidInputError, match="pneumonai"):
        apply_meanings(labels, {"pneumonai": "actionable"})
    for bad in ("normal", "x=benign:urgent", "x=grave"):
        with pytest.raises(InvalidInputError):
            parse_label_meanings([bad])


def test_every_zoo_label_states_its_meaning():
    packages, problems = zoo_packages()
    assert not problems and len(packages) >= 6
    for pkg in packages:
        for lab in pkg.spec.labels:
            assert lab.significance is not None, f"{pkg.id}: label {lab.name!r} has no meaning"
            if lab.significance is Significance.ACTIONABLE:
                assert lab.urgency is not None, f"{pkg.id}: {lab.name!r} has no urgency"
        meanings = {lab.significance for lab in pkg.spec.labels}
        if pkg.spec.task is Task.SEGMENTATION:
            assert meanings <= {Significance.ANATOMY, Significance.ACTIONABLE}
        elif pkg.spec.task is Task.DETECTION:  # labels are the foreground (lesion) classes
            assert Significance.ACTIONABLE in meanings, pkg.id
        elif pkg.spec.task not in (Task.DENOISING, Task.SYNTHESIS):  # label-free image outputs
            # a classifier distinguishes something worth acting on from what is not
            assert Significance.ACTIONABLE in meanings and len(meanings) > 1, pkg.id


def test_binary_model_reports_its_actionable_class_whatever_its_index(tmp_path):
    """Like BreastMNIST (class 0 malignant): the finding is the actionable class, not the last."""
    from medsight.analysis.runners import run_package
    from medsight.core.codes import NEOPLASM
    from medsight.core.image import Image
    from medsight.models.demo import demo_classifier
    from medsight.models.package import ModelPackage

    demo = demo_classifier(tmp_path)
    labels = [
        LabelSpec(index=0, name="tumour", code=NEOPLASM, significance="actionable", urgency="stat"),
        LabelSpec(index=1, name="normal", significance="normal"),
    ]
    spec = demo.spec.model_copy(update={"labels": labels, "thresholds": {"normal": 0.5}})
    pkg = ModelPackage.save(tmp_path / "swapped", spec, demo.state_dict())
    rng = np.random.default_rng(0)
    image = Image(rng.normal(size=(16, 16)).astype(np.float32), modality="CT")
    (finding,) = run_package(pkg, image, explain=False).findings
    assert finding.note == "tumour" and finding.finding == NEOPLASM
    assert finding.significance is Significance.ACTIONABLE and finding.urgency is Urgency.STAT
    assert finding.actionable == bool(finding.positive)
