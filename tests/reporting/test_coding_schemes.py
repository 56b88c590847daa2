"""Coded outputs: standard codes where DICOM PS3.16 has them, a declared private scheme else."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.sr.codedict import codes

from medsight.analysis import functional_report
from medsight.clinical import longitudinal
from medsight.clinical.longitudinal import Response
from medsight.core import Finding, FindingKind, Measurement
from medsight.core.codes import LOCAL_SCHEME, MILLIMETER, NEOPLASM, PROBABILITY, Code
from medsight.io import read_image
from medsight.models.spec import LabelSpec
from medsight.reporting.coding_schemes import (
    declare_coding_schemes,
    undeclared_schemes,
    used_schemes,
)
from medsight.reporting.dicom_seg import build_segmentation
from medsight.reporting.dicom_sr import build_sr
from medsight.reporting.sources import source_datasets
from medsight.reporting.validate import dciodvfy


def _declared(ds):
    return {i.CodingSchemeDesignator: i for i in ds.get("CodingSchemeIdentificationSequence", [])}


def test_seg_with_an_uncoded_label_declares_the_private_scheme(pydicom_file, tmp_path, debian_tool):
    debian_tool("dciodvfy")
    img = read_image(pydicom_file("CT_small.dcm"))
    mask = np.zeros(img.shape, np.uint8)
    mask[10:20, 10:30] = 1
    labels = [LabelSpec(index=0, name="background"), LabelSpec(index=1, name="blob")]  # no code
    seg = build_segmentation(
        img.with_array(mask), img, labels, algorithm_name="t", algorithm_version="1"
    )
    seg.save_as(tmp_path / "seg.dcm")
    back = dcmread(tmp_path / "seg.dcm")
    assert LOCAL_SCHEME in used_schemes(back)
    assert undeclared_schemes(back) == []
    item = _declared(back)[LOCAL_SCHEME]
    assert item.CodingSchemeName and item.CodingSchemeResponsibleOrganization
    assert dciodvfy(tmp_path / "seg.dcm")[0] == []


def test_sr_uses_standard_codes_and_declares_what_is_local(pydicom_file, tmp_path, debian_tool):
    debian_tool("dciodvfy")
    img = read_image(pydicom_file("CT_small.dcm"))
    cls = Finding(
        NEOPLASM, "cls", "1", kind=FindingKind.CLASSIFICATION, probability=0.8, positive=True
    )
    change = Finding(
        Response.PR.code,
        "seg",
        "1",
        kind=FindingKind.CHANGE,
        measurements=(Measurement(longitudinal.CURRENT_SLD, 12.0, MILLIMETER),),
    )
    sr = build_sr([cls, change], source_datasets(img))
    sr.save_as(tmp_path / "sr.dcm")
    back = dcmread(tmp_path / "sr.dcm")
    assert undeclared_schemes(back) == []
    assert set(_declared(back)) == {LOCAL_SCHEME}  # the local size concept; nothing else
    text = str(back)
    assert "122157" in text and "AI probability" not in text  # DCM Probability
    assert "112042" in text  # DCM Target Lesion Partial Response
    assert dciodvfy(tmp_path / "sr.dcm")[0] == []


def test_an_sr_of_standard_codes_only_declares_nothing(pydicom_file):
    img = read_image(pydicom_file("CT_small.dcm"))
    cls = Finding(NEOPLASM, "cls", "1", kind=FindingKind.CLASSIFICATION, probability=0.3)
    sr = build_sr([cls], source_datasets(img))
    assert used_schemes(sr) <= {"DCM", "SCT", "UCUM", "RFC5646"}
    assert "CodingSchemeIdentificationSequence" not in sr


def test_another_private_scheme_is_declared_too(pydicom_file):
    img = read_image(pydicom_file("CT_small.dcm"))
    grade = Code("g1", "99ACME", "Grade 1")
    sr = build_sr(
        [Finding(grade, "m", "1", kind="classification", probability=0.4)], source_datasets(img)
    )
    assert set(_declared(sr)) == {"99ACME"}
    assert undeclared_schemes(declare_coding_schemes(sr)) == []


@pytest.mark.parametrize(
    ("ours", "keyword"),
    [
        (PROBABILITY, "Probability"),
        (Response.CR.code, "TargetLesionCompleteResponse"),
        (Response.PR.code, "TargetLesionPartialResponse"),
        (Response.SD.code, "TargetLesionStableDisease"),
        (Response.PD.code, "TargetLesionProgressiveDisease"),
    ],
)
def test_known_concepts_use_the_ps316_code(ours, keyword):
    ref = getattr(codes.DCM, keyword)  # pydicom's copy of DICOM PS3.16, an independent source
    assert (ours.value, ours.scheme, ours.meaning) == (ref.value, "DCM", ref.meaning)


def test_local_codes_have_no_standard_twin():
    """Every concept still on the private scheme has no PS3.16 DCM/SCT concept of that name."""
    local = [
        c
        for module in (longitudinal, functional_report)
        for c in vars(module).values()
        if isinstance(c, Code) and c.scheme == LOCAL_SCHEME
    ]
    assert len(local) >= 8
    standard = {
        getattr(d, name).meaning.lower() for d in (codes.DCM, codes.SCT) for name in d.dir()
    }
    assert [c.meaning for c in local if c.meaning.lower() in standard] == []
