"""``analyze --attribute KEY=VALUE`` and ``--fhir BUNDLE``: the patient's facts reach the
families (group thresholds, risk variables), and another patient's record is never applied."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image as PILImage

from medsight.analysis.pipeline import analyze
from medsight.analysis.record import parse_attributes
from medsight.cli.app import main
from medsight.core import InvalidInputError
from medsight.core.findings import FindingKind
from medsight.models.package import ModelPackage

CT = "CT_small.dcm"  # Patient ID "1CT1", Patient's Sex "O", study date 2004-01-19


def _bundle(path, *, value: str | None = "1CT1", gender="female", birth="1950-01-01", two=True):
    patient = {"resourceType": "Patient", "id": "p1", "gender": gender, "birthDate": birth}
    if value is not None:
        patient["identifier"] = [{"system": "urn:oid:1.2.3", "value": value}]
    other = {"resourceType": "Patient", "id": "p2", "gender": "male",
             "identifier": [{"value": "SOMEONE-ELSE"}]}  # fmt: skip
    entries = [{"resource": patient}, {"resource": other}][: 2 if two else 1]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    return path


@pytest.fixture
def grouped(tiny_classifier):
    """The tiny classifier with group thresholds sex=F -> 0 (always positive), M -> 1 (never)."""
    pkg = tiny_classifier()
    meta = json.loads((pkg.path / "model.json").read_text())
    meta["group_thresholds"] = {
        "attribute": "sex", "label": "tumour", "target_sensitivity": 0.8,
        "global_threshold": meta["thresholds"]["tumour"], "thresholds": {"F": 0.0, "M": 1.0},
    }  # fmt: skip
    (pkg.path / "model.json").write_text(json.dumps(meta))
    return ModelPackage.load(pkg.path)


@pytest.fixture(scope="module")
def risk_package(tmp_path_factory):
    """A tiny clinical risk model on age and sex (3 epochs; its value is not the point)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
    from test_risk import write_toy

    from medsight.training.risk import RiskConfig, train_risk

    root = tmp_path_factory.mktemp("risk")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = RiskConfig(data=write_toy(root / "toy", n_patients=30), out=root / "run",
                         target="died", features=["age", "sex"], arch="clinical", epochs=3,
                         patience=3, n_resamples=10, threads=1, seed=0)  # fmt: skip
        return train_risk(cfg, log=None)
    finally:
        torch.set_num_threads(before)


def test_parse_attributes_refuses_malformed_and_conflicting():
    assert parse_attributes(["sex=F", "age = 71", "sex=F"]) == {"sex": "F", "age": "71"}
    for bad in (["sex"], ["=F"], ["sex="]):
        with pytest.raises(InvalidInputError, match="KEY=VALUE"):
            parse_attributes(bad)
    with pytest.raises(InvalidInputError, match="twice"):
        parse_attributes(["sex=F", "sex=M"])


def test_group_threshold_from_attribute_or_record_and_the_report_says_which(
    tmp_path, pydicom_file, grouped
):
    ct = pydicom_file(CT)
    seen = {}
    cases = {
        "F": {"attributes": {"sex": "F"}},
        "M": {"attributes": {"sex": "M"}},
        "none": {},
        "fhir": {"fhir": _bundle(tmp_path / "b.json")},  # the record says female
    }
    for who, kw in cases.items():
        out = tmp_path / who
        result = analyze(ct, out, [grouped], explain=False, dicom_outputs=False, **kw)
        finding = result.report.findings[0]
        seen[who] = (finding.positive, finding.note)
        assert "decided at the" in (out / "report.html").read_text()
    assert seen["F"] == (True, "tumour; decided at the group threshold sex=F (0.000)")
    assert seen["M"] == (False, "tumour; decided at the group threshold sex=M (1.000)")
    assert seen["none"][1] == "tumour; decided at the global threshold (sex not known)"
    assert seen["fhir"] == seen["F"]


def test_risk_runs_with_every_variable_else_withheld_naming_the_missing(
    tmp_path, pydicom_file, risk_package
):
    ct = pydicom_file(CT)

    def run(name, **kw):
        res = analyze(ct, tmp_path / name, [risk_package], explain=False, dicom_outputs=False, **kw)
        return res.report

    bare = run("bare")
    assert bare.models[0].status == "withheld" and not bare.findings
    assert "needs the clinical variables age, sex" in bare.models[0].reason
    half = run("half", attributes={"sex": "F"})
    assert half.models[0].status == "withheld" and not half.findings
    assert "needs the clinical variables age, which" in half.models[0].reason
    full = run("full", attributes={"sex": "F", "age": "71"})
    assert full.models[0].status == "ran" and full.findings[0].kind is FindingKind.RISK
    record = run("fhir", fhir=_bundle(tmp_path / "b.json"))  # age 54 on the 2004 study date
    assert record.models[0].status == "ran" and 0 <= record.findings[0].probability <= 1
    assert any("matched on identifier = DICOM Patient ID '1CT1'" in w for w in record.warnings)
    shown = {row["fact"]: row for row in record.clinical_context}  # in the report, with source
    assert shown["age"]["value"].startswith("54 years") and "b.json" in shown["age"]["source"]
    assert shown["sex"]["value"] == "female" and "Patient/" in shown["sex"]["source"]
    page = (tmp_path / "fhir" / "report.html").read_text()
    assert "Clinical context from the patient's record" in page and "54 years" in page
    assert bare.clinical_context == []
    same = run("same", attributes={"sex": "F", "age": "54"})
    assert same.findings[0].probability == pytest.approx(record.findings[0].probability)
    with pytest.raises(InvalidInputError, match="contradicts the patient's record"):
        run("contradict", attributes={"age": "71"}, fhir=tmp_path / "b.json")


def test_another_patients_record_is_refused(tmp_path, pydicom_file, tiny_classifier):
    pkg = tiny_classifier()
    ct = pydicom_file(CT)
    refusals = {
        "other": (_bundle(tmp_path / "o.json", value="2CT2"), "not this patient's record"),
        "no identifier": (
            _bundle(tmp_path / "n.json", value=None, two=False),
            "carry no identifier",
        ),
    }
    for name, (bundle, why) in refusals.items():
        with pytest.raises(InvalidInputError, match=why):
            analyze(ct, tmp_path / name, [pkg], fhir=bundle)
        assert not (tmp_path / name).exists()  # refused before anything is written
    male = pydicom.dcmread(ct)
    male.PatientSex, male.PatientBirthDate = "M", "19500101"
    male.save_as(tmp_path / "male.dcm")
    with pytest.raises(InvalidInputError, match="gender differs"):
        analyze(tmp_path / "male.dcm", tmp_path / "m", [pkg], fhir=_bundle(tmp_path / "f.json"))
    with pytest.raises(InvalidInputError, match="birth date differs"):
        analyze(tmp_path / "male.dcm", tmp_path / "d", [pkg],
                fhir=_bundle(tmp_path / "d.json", gender="male", birth="1951-01-01"))  # fmt: skip
    png = tmp_path / "x.png"
    PILImage.fromarray(np.zeros((40, 50), np.uint8)).save(png)
    with pytest.raises(InvalidInputError, match="no DICOM Patient ID"):
        analyze(png, tmp_path / "png", [pkg], fhir=tmp_path / "f.json")


def test_cli_attribute_and_fhir(tmp_path, pydicom_file, grouped, capsys):
    ct = str(pydicom_file(CT))
    args = ["analyze", ct, "--model", str(grouped.path), "--no-dicom", "--no-explain"]
    assert main([*args, "--out", str(tmp_path / "a"), "--attribute", "sex=M"]) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert "group threshold sex=M" in report["findings"][0]["note"]
    other = _bundle(tmp_path / "o.json", value="2CT2")
    assert main([*args, "--out", str(tmp_path / "b"), "--fhir", str(other)]) == 2
    assert "not this patient's record" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "c"), "--attribute", "sex"]) == 2
