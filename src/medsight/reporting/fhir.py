"""FHIR R4 Bundle (DiagnosticReport, Observations, ImagingStudy, Patient) from Findings.

The output is FHIR R4 (4.0.1): every resource is validated with the ``fhir.resources`` R4B
models (the resources used here are unchanged from R4) and the Bundle with the explicit R4
checks of :mod:`medsight.reporting.fhir_r4` (what R4B added that R4 lacks, R4's ImagingStudy
modality binding, LOINC displays, references).
A detection finding's image region becomes a BodyStructure that its Observation points at
(:mod:`medsight.reporting.fhir_regions`).

Examples
--------
>>> from medsight.core.codes import HIPPOCAMPUS, MILLILITER, VOLUME
>>> from medsight.core.findings import Finding, Measurement
>>> f = Finding(HIPPOCAMPUS, "hippo", "1.0", measurements=(Measurement(VOLUME, 3.2, MILLILITER),))
>>> study = StudyInfo(study_instance_uid="1.2.3", patient_id="P1", modality="MR",
...                   series=(("1.2.3.4", "MR", 32),))
>>> bundle = build_bundle([f], study, conclusion="Hippocampal volume 3.2 mL.")
>>> [e["resource"]["resourceType"] for e in bundle["entry"]]
['Patient', 'ImagingStudy', 'Observation', 'DiagnosticReport']
>>> bundle["entry"][2]["resource"]["component"][0]["valueQuantity"]["code"]
'mL'
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Sequence
from typing import Any

from medsight.core.codes import DIAGNOSTIC_IMAGING_REPORT, PROBABILITY, Code
from medsight.core.errors import InvalidInputError
from medsight.core.findings import Finding, FindingKind
from medsight.reporting.fhir_r4 import (
    LOINC_DISPLAYS,
    acquisition_modalities,
    check_r4,
    dicom_modalities,
)
from medsight.reporting.fhir_regions import add_region

__all__ = ["StudyInfo", "build_bundle"]

_DICOM_UID_SYSTEM = "urn:dicom:uid"
_DICOM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
_IMAGING_CATEGORY = {
    "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
    "code": "RAD",
    "display": "Radiology",
}


@dataclasses.dataclass(frozen=True)
class StudyInfo:
    """What the Bundle says about the imaging study (from the DICOM headers)."""

    study_instance_uid: str
    patient_id: str
    modality: str
    series: tuple[tuple[str, str, int], ...] = ()  # (series UID, modality, number of instances)
    description: str = ""
    started: str | None = None  # ISO date or date-time


def _coding(code: Code) -> dict[str, str]:
    display = LOINC_DISPLAYS.get(code.value, code.meaning) if code.scheme == "LN" else code.meaning
    return {"system": code.fhir_system(), "code": code.value, "display": display}


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _observation(finding: Finding, patient_ref: str, study_ref: str, issued: str) -> dict[str, Any]:
    text = finding.finding.meaning
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "imaging",
                        "display": "Imaging",
                    }
                ]
            }
        ],
        "code": {"coding": [_coding(finding.finding)], "text": text},
        "subject": {"reference": patient_ref},
        "derivedFrom": [{"reference": study_ref}],
        "issued": issued,
        "device": {"display": f"{finding.model_id} {finding.model_version} (medsight)"},
    }
    if finding.site is not None:
        obs["bodySite"] = {"coding": [_coding(finding.site)]}
    if finding.positive is not None:
        present = (
            Code("52101004", "SCT", "Present")
            if finding.positive
            else Code("272519000", "SCT", "Absent")
        )
        obs["valueCodeableConcept"] = {"coding": [_coding(present)]}
    components = []
    if finding.probability is not None:
        components.append(
            {
                "code": {"coding": [_coding(PROBABILITY)], "text": "AI probability"},
                "valueQuantity": {
                    "value": round(float(finding.probability), 6),
                    "system": "http://unitsofmeasure.org",
                    "code": "1",
                    "unit": "1",
                },
            }
        )
    for m in finding.measurements:
        components.append(
            {
                "code": {"coding": [_coding(m.concept)], "text": m.concept.meaning},
                "valueQuantity": {
                    "value": round(m.value, 6),
                    "unit": m.unit_text,
                    "system": m.unit.fhir_system(),
                    "code": m.unit.value,
                },
            }
        )
    if components:
        obs["component"] = components
    if finding.note:
        obs["note"] = [{"text": finding.note}]
    return obs


def build_bundle(
    findings: Sequence[Finding],
    study: StudyInfo,
    *,
    conclusion: str = "",
    issued: datetime.datetime | None = None,
    prior: StudyInfo | None = None,
    suggestions: Sequence[Any] = (),
) -> dict[str, Any]:
    """A ``collection`` Bundle as plain JSON-ready data, validated with fhir.resources.

    ``prior``: the prior study that CHANGE findings were compared with; it becomes a second
    ImagingStudy, and each CHANGE Observation is ``derivedFrom`` both studies.
    ``suggestions``: applied guideline suggestions, each a separate Observation derived from
    its findings' Observations (:mod:`medsight.reporting.fhir_guidelines`).

    Raises
    ------
    InvalidInputError
        If a resource fails FHIR validation (the message names the resource and field).
    """
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.bundle import Bundle

    when = (issued or datetime.datetime.now(datetime.UTC)).isoformat(timespec="seconds")
    patient_ref, study_ref, report_ref = _urn(), _urn(), _urn()
    patient = {
        "resourceType": "Patient",
        "identifier": [{"value": study.patient_id or "unknown"}],
    }
    imaging_study = _imaging_study(study, patient_ref)
    observations = [(_urn(), _observation(f, patient_ref, study_ref, when)) for f in findings]
    studies = [{"fullUrl": study_ref, "resource": imaging_study}]
    structures = [  # detections: a BodyStructure per region, referenced by its Observation
        add_region(obs, finding, patient_ref, _urn())
        for finding, (_ref, obs) in zip(findings, observations, strict=True)
        if finding.kind == FindingKind.DETECTION and finding.region is not None
    ]
    if prior is not None:
        prior_ref = _urn()
        studies.append({"fullUrl": prior_ref, "resource": _imaging_study(prior, patient_ref)})
        for finding, (_ref, obs) in zip(findings, observations, strict=True):
            if finding.kind == FindingKind.CHANGE:
                obs["derivedFrom"].append({"reference": prior_ref})
    report = {
        "resourceType": "DiagnosticReport",
        "status": "preliminary",
        "category": [{"coding": [_IMAGING_CATEGORY]}],
        "code": {"coding": [_coding(DIAGNOSTIC_IMAGING_REPORT)]},
        "subject": {"reference": patient_ref},
        "issued": when,
        "imagingStudy": [{"reference": e["fullUrl"]} for e in studies],
        "result": [{"reference": ref} for ref, _ in observations],
        "conclusion": conclusion or "AI findings; preliminary, requires review by a clinician.",
    }
    entries = [
        {"fullUrl": patient_ref, "resource": patient},
        *studies,
        *structures,
        *({"fullUrl": ref, "resource": obs} for ref, obs in observations),
        {"fullUrl": report_ref, "resource": report},
        *_suggestion_entries(suggestions, observations, patient_ref, study_ref, when),
    ]
    data = {"resourceType": "Bundle", "type": "collection", "timestamp": when, "entry": entries}
    for entry in entries:  # validate each resource with its own model, then the bundle
        resource = entry["resource"]
        try:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except ValueError as exc:
            raise InvalidInputError(
                f"FHIR {resource['resourceType']}", f"fails validation: {str(exc)[:300]}"
            ) from None
    Bundle.model_validate(data)
    return check_r4(data)  # FHIR R4, what EHRs speak (medsight.reporting.fhir_r4)


def _suggestion_entries(
    suggestions: Sequence[Any],
    observations: Sequence[tuple[str, dict[str, Any]]],
    patient_ref: str,
    study_ref: str,
    when: str,
) -> list[dict[str, Any]]:
    from medsight.reporting.fhir_guidelines import suggestion_observation

    out = []
    for s in suggestions:
        refs = [observations[i][0] for i in s.findings if 0 <= i < len(observations)]
        obs = suggestion_observation(s, patient_ref, [*refs, study_ref], when)
        out.append({"fullUrl": _urn(), "resource": obs})
    return out


def _imaging_study(study: StudyInfo, patient_ref: str) -> dict[str, Any]:
    # R4 binds ImagingStudy.modality to the acquisition modalities (DICOM CID 29): the
    # study's and its series' acquisition modalities, none for derived objects (SEG, SR) or
    # an unknown one (OT, a PNG) -- the element is optional
    acquired = acquisition_modalities()
    modalities = sorted(
        {m for m in (study.modality, *(s[1] for s in study.series)) if m in acquired}
    )
    imaging_study: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": {"reference": patient_ref},
        "numberOfSeries": len(study.series),
        "numberOfInstances": sum(n for _, _, n in study.series),
        "series": [
            {
                "uid": uid,
                "modality": {  # 1..1: a modality outside DICOM CID 33 is "OT" (Other)
                    "system": _DICOM_SYSTEM,
                    "code": modality if modality in dicom_modalities() else "OT",
                },
                "numberOfInstances": n,
            }
            for uid, modality, n in study.series
        ],
    }
    if modalities:
        imaging_study["modality"] = [{"system": _DICOM_SYSTEM, "code": m} for m in modalities]
    if study.study_instance_uid:
        imaging_study["identifier"] = [
            {"system": _DICOM_UID_SYSTEM, "value": f"urn:oid:{study.study_instance_uid}"}
        ]
    if study.description:
        imaging_study["description"] = study.description
    if study.started:
        imaging_study["started"] = study.started
    return imaging_study
