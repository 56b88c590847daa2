"""``analyze`` applies the guidelines its findings provide: report section, SR container, FHIR.

A tiny package declares its label a solid lung nodule (``extra.guideline_items``); its run is
replaced by a fake detection output (a 9 mm circle), as the zoo has no lung nodule model.
"""

from __future__ import annotations

import json

import pydicom
import pytest

from medsight.analysis import pipeline
from medsight.analysis.output import ModelOutput, label_code
from medsight.analysis.pipeline import analyze
from medsight.core.codes import DIAMETER, MILLIMETER
from medsight.core.findings import Finding, FindingKind, Measurement, Region
from medsight.models.package import ModelPackage

CT = "CT_small.dcm"  # Patient ID "1CT1", study date 2004-01-19, 128 x 128
SCREEN = {"ct_indication": "screening", "screening_round": "baseline"}
LOINC, SCT = "http://loinc.org", "http://snomed.info/sct"


@pytest.fixture(scope="module")
def packages(make_tiny_classifier, tmp_path_factory):
    """Two tiny packages: one declaring its label 'tumour' a solid nodule, one plain."""
    folder = tmp_path_factory.mktemp("pkgs")
    plain = make_tiny_classifier(folder, "plain-ct")
    pkg = make_tiny_classifier(folder, "nodule-ct")
    meta = json.loads((pkg.path / "model.json").read_text())
    meta["extra"]["guideline_items"] = {"tumour": {"item": "lung-nodule", "type": "solid"}}
    (pkg.path / "model.json").write_text(json.dumps(meta))
    return ModelPackage.load(pkg.path), plain


@pytest.fixture
def nodule_package(packages, monkeypatch):
    """The declaring package; its run 'detects' one nodule of 9 mm."""
    pkg = packages[0]
    label = next(lab for lab in pkg.spec.labels if lab.name == "tumour")

    def fake_run(package, image, **_kw):
        nodule = Finding(
            finding=label_code(label, package),
            model_id=package.spec.name,
            model_version=package.spec.version,
            kind=FindingKind.DETECTION,
            probability=0.8,
            positive=True,
            measurements=(Measurement(DIAMETER, 9.0, MILLIMETER, qualifier="in mm"),),
            source=image.source,
            note="tumour #1",
            region=Region((60.0, 60.0), (14.0, 14.0), "ellipse"),
        )
        return ModelOutput([nodule])

    monkeypatch.setattr(pipeline, "run_package", fake_run)
    return pkg


def _bundle(path, *, smoker: bool):
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01",
               "identifier": [{"system": "urn:oid:1.2.3", "value": "1CT1"}]}  # fmt: skip
    entries = [{"resource": patient}]
    if smoker:
        entries.append({"resource": {
            "resourceType": "Observation", "id": "smoke", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2003-06-01",
            "valueCodeableConcept": {"coding": [{"system": SCT, "code": "8517006"}]},
            "component": [{"code": {"coding": [{"system": LOINC, "code": "401201-6"}]},
                           "valueQuantity": {"value": 35, "code": "{PackYears}"}}]}})  # fmt: skip
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    return path


def test_lung_rads_suggestion_in_report_sr_and_fhir(
    nodule_package, pydicom_file, tmp_path, debian_tool
):
    out = tmp_path / "out"
    res = analyze(pydicom_file(CT), out, [nodule_package], explain=False, attributes=SCREEN)
    [g] = res.report.guidelines
    assert g.applied and g.ruleset == "lung-rads" and g.result.category == "4A"
    stored = json.loads((out / "report.json").read_text())["guidelines"][0]
    assert stored["result"]["recommendation"] == g.result.recommendation
    html = (out / "report.html").read_text()
    assert "Guideline suggestion (decision support, not a diagnosis)" in html
    assert "LR-SOLID-BASE-4A" in html and "Christensen" in html  # rule fired, citation
    assert "nodules[0].mean_diameter_mm = 9.0" in html and "--attribute screening_round" in html
    # SR: a separate Qualitative Evaluations container with the suggestion's text
    sr = pydicom.dcmread(out / res.report.outputs["DICOM SR"])
    root = sr.ContentSequence
    container = [c for c in root if c.ConceptNameCodeSequence[0].CodeValue == "C0034375"]
    assert len(container) == 1
    [item] = container[0].ContentSequence
    assert item.ValueType == "TEXT" and "category 4A" in item.TextValue
    assert item.TextValue.startswith("Guideline suggestion (decision support, not a diagnosis)")
    debian_tool("dciodvfy")
    assert not any("sr_" in k for k in res.dicom_errors), res.dicom_errors
    # FHIR: a separate survey Observation, derived from the finding's Observation
    bundle = json.loads((out / "fhir_bundle.json").read_text())
    resources = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    [obs] = [r for r in resources.values() if r.get("code", {}).get("coding", [{}])[0].get(
        "system") == "urn:medsight:guideline"]  # fmt: skip
    assert obs["category"][0]["coding"][0]["code"] == "survey"
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "4A"
    assert "not a diagnosis" in obs["note"][0]["text"]
    derived = [resources[d["reference"]] for d in obs["derivedFrom"]]
    assert {r["resourceType"] for r in derived} == {"Observation", "ImagingStudy"}
    report = next(r for r in resources.values() if r["resourceType"] == "DiagnosticReport")
    assert all(resources[x["reference"]] is not obs for x in report["result"])


def test_fleischner_with_the_record_of_a_fhir_bundle(nodule_package, pydicom_file, tmp_path):
    facts = {"ct_indication": "incidental", "known_cancer": "no", "immunocompromised": "no"}
    res = analyze(
        pydicom_file(CT), tmp_path / "o", [nodule_package], explain=False,
        dicom_outputs=False, attributes=facts, fhir=_bundle(tmp_path / "r.json", smoker=True),
    )  # fmt: skip
    [g] = res.report.guidelines
    assert g.applied and g.ruleset == "fleischner"
    assert g.result.category == "ct-3m-pet-or-biopsy"  # single solid > 8 mm
    sources = {u.fact: u.source for u in g.sources}
    assert "Observation/smoke" in sources["risk"] and g.facts["age"] == 54  # on 2004-01-19
    assert "Patient/p1" in sources["age"]


def test_missing_inputs_are_named_in_the_report(nodule_package, pydicom_file, tmp_path):
    facts = {"ct_indication": "incidental", "known_cancer": "no", "immunocompromised": "no"}
    out = tmp_path / "o"
    res = analyze(
        pydicom_file(CT), out, [nodule_package], explain=False, dicom_outputs=False,
        attributes=facts, fhir=_bundle(tmp_path / "r.json", smoker=False),
    )  # fmt: skip
    [g] = res.report.guidelines
    assert not g.applied and g.result is None
    assert any("patient risk" in m for m in g.missing)
    html = (out / "report.html").read_text()
    assert "Not applied" in html and "the record states no smoking history" in html
    bundle = json.loads((out / "fhir_bundle.json").read_text())
    assert not any("urn:medsight:guideline" in json.dumps(e) for e in bundle["entry"])


def test_no_declared_item_no_guideline(packages, pydicom_file, tmp_path):
    res = analyze(pydicom_file(CT), tmp_path / "o", [packages[1]], explain=False,
                  dicom_outputs=False, attributes=SCREEN)  # fmt: skip
    assert res.report.guidelines == []
    assert "guideline" not in (tmp_path / "o" / "report.html").read_text().lower()


def _two_systems(path):
    """Patient p1 has 1CT1 as an MRN of urn:oid:1.2.3; p2 has 1CT1 under another authority."""
    p1 = {"resourceType": "Patient", "id": "p1",
          "identifier": [{"system": "urn:oid:1.2.3", "value": "1CT1"}]}  # fmt: skip
    p2 = {"resourceType": "Patient", "id": "p2",
          "identifier": [{"system": "urn:oid:9.9", "value": "1CT1"}]}  # fmt: skip
    entries = [{"resource": p1}, {"resource": p2}]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    return path


def test_identifier_system_decides_the_patient(tmp_path):
    from medsight.analysis.record import record_for_study
    from medsight.core import InvalidInputError

    bundle, header = _two_systems(tmp_path / "b.json"), {"PatientID": "1CT1"}
    with pytest.raises(InvalidInputError, match="2 Patient resources"):  # ambiguous: never guess
        record_for_study(bundle, header)
    ctx, note = record_for_study(bundle, header, identifier_system="urn:oid:1.2.3")
    assert ctx.patient_id == "p1" and "(system urn:oid:1.2.3)" in note
    with pytest.raises(InvalidInputError, match="identifier of system urn:oid:7"):
        record_for_study(bundle, header, identifier_system="urn:oid:7")


def test_cli_identifier_system_and_guideline_line(nodule_package, pydicom_file, tmp_path, capsys):
    from medsight.cli.app import main

    args = ["analyze", str(pydicom_file(CT)), "--model", str(nodule_package.path), "--no-dicom",
            "--no-explain", "--fhir", str(_two_systems(tmp_path / "b.json"))]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "ambiguous" in capsys.readouterr().err
    stated = ["--attribute", "ct_indication=screening", "--attribute", "screening_round=baseline"]
    system = ["--fhir-identifier-system", "urn:oid:1.2.3"]
    assert main([*args, *system, *stated, "--out", str(tmp_path / "b")]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps lines
    assert "Guideline suggestion" in printed and "lung-rads 2022: 4A (Suspicious)" in printed
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert any("Patient/p1" in w and "urn:oid:1.2.3" in w for w in report["warnings"])


def test_breast_ultrasound_lesions_are_recognised_by_their_codes():
    import types

    from medsight.analysis.guidelines import declared_items, suggest
    from medsight.core.codes import LESION, LONG_AXIS
    from medsight.models.spec import (
        ArchitectureSpec,
        InputSpec,
        LabelSpec,
        ModelSpec,
        PreprocessingSpec,
    )

    def package(name, body_parts, extra=None):
        spec = ModelSpec(
            name=name, version="1", task="segmentation",
            architecture=ArchitectureSpec(name="dynunet"),
            input=InputSpec(spatial_ndim=2, body_parts=body_parts),
            preprocessing=PreprocessingSpec(),
            labels=[LabelSpec(index=1, name="lesion", code=LESION)], extra=extra or {},
        )  # fmt: skip
        return types.SimpleNamespace(id=f"{name}@1", spec=spec)

    lesion = Finding(LESION, "busi", "1", measurements=(Measurement(LONG_AXIS, 11, MILLIMETER),))
    us = {"busi": (package("busi", ["BREAST"]), "US")}
    (item,) = declared_items([lesion], us)[0].values()
    assert item.kind == "breast-us-lesion" and item.fields == {}
    [s], _ = suggest([lesion], us)
    assert s.ruleset == "birads-us" and not s.applied and len(s.missing) == 5
    assert declared_items([lesion], {"busi": (package("busi", ["BREAST"]), "MG")})[0] == {}
    assert declared_items([lesion], {"busi": (package("busi", []), "US")})[0] == {}
    described = {"lesion": {"item": "breast-us-lesion", "shape": "oval", "orientation":
                 "parallel", "margin": "circumscribed", "echo_pattern": "anechoic",
                 "posterior_features": "enhancement"}}  # fmt: skip
    ran = {"busi": (package("busi", ["BREAST"], {"guideline_items": described}), "US")}
    [s], problems = suggest([lesion], ran)
    assert s.applied and s.result.category == "2" and problems == []  # a simple cyst
    bad = {"busi": (package("busi", [], {"guideline_items": {"lesion": {"item": "x"}}}), "US")}
    assert "'item' must be one of" in suggest([lesion], bad)[1][0]
