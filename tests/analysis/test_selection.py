"""Matching packages to series: modality, dimensionality, description, body part."""

from __future__ import annotations

import numpy as np
import pydicom

from medsight.analysis.selection import select_series
from medsight.io import read_study
from medsight.models import (
    ArchitectureSpec,
    InputSpec,
    LabelSpec,
    ModelPackage,
    ModelSpec,
    PreprocessingSpec,
    Task,
)
from medsight.models.plausibility import assess, input_statistics, reference_statistics


class _FakePackage:
    """Only what selection reads: ``spec.input`` (no weights needed)."""

    def __init__(self, **input_args) -> None:
        self.spec = ModelSpec(
            name="p",
            version="1",
            task=Task.SEGMENTATION,
            architecture=ArchitectureSpec(name="unet"),
            input=InputSpec(**input_args),
            preprocessing=PreprocessingSpec(),
            labels=[LabelSpec(index=0, name="bg")],
        )


def _select(study, **input_args):
    pkg: ModelPackage = _FakePackage(**input_args)  # type: ignore[assignment]
    return select_series(study, [pkg])[0]


def test_brain_study_selection(shared_data):
    study = read_study(shared_data / "dicom/brain_mr_study1")
    hippo = _select(study, modalities=["MR"], spatial_ndim=3, series_description_pattern="hippo")
    assert hippo.series.description == "HippoCrop"
    largest = _select(study, modalities=["MR"], spatial_ndim=3)
    assert largest.runs and "chosen among 5" in largest.reason
    ct = _select(study, modalities=["CT"], spatial_ndim=3)
    assert not ct.runs and "modality MR is not one of CT" in ct.reason
    flat = _select(study, modalities=["MR"], spatial_ndim=2)
    assert not flat.runs and "needs 2D" in flat.reason


def test_single_slice_fits_a_2d_model_and_body_parts(pydicom_file, tmp_path):
    study = read_study(pydicom_file("CT_small.dcm"))
    sel = _select(study, modalities=["CT"], spatial_ndim=2, body_parts=["CHEST"])
    assert sel.runs and "does not state its body part" in sel.warnings[0]
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.BodyPartExamined = "ABDOMEN"
    ds.save_as(tmp_path / "abd.dcm")
    other = _select(
        read_study(tmp_path / "abd.dcm"), modalities=["CT"], spatial_ndim=2, body_parts=["CHEST"]
    )
    assert not other.runs and "body part ABDOMEN" in other.reason


def test_plausibility_flags_an_image_unlike_the_training_data():
    rng = np.random.default_rng(0)
    train = [rng.normal(0.4, 0.1, (28, 28)).clip(0, 1) for _ in range(50)]
    ref = reference_statistics(input_statistics(x) for x in train)
    assert assess(input_statistics(rng.normal(0.4, 0.1, (28, 28)).clip(0, 1)), ref).plausible
    inverted = 1 - rng.normal(0.4, 0.1, (28, 28)).clip(0, 1)
    verdict = assess(input_statistics(inverted), ref)
    assert not verdict.plausible and verdict.score > 4
    assert assess(input_statistics(train[0]), None).score is None  # no reference, no claim
