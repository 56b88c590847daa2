"""FHIR R4 conformance of the Bundles medsight writes: R4B models plus the R4 differences.

EHRs speak FHIR R4 (4.0.1); ``fhir.resources`` ships R4B (4.3.0) models, which equal R4 for
every resource medsight writes (Patient, ImagingStudy, Observation, DiagnosticReport,
BodyStructure, Bundle) except where R4B *added* things (FHIR R4B "R4B explanation" page:
R4B changed only the medication-definition, evidence-based-medicine and subscription modules,
and added the CodeableReference data type).  :func:`r4_problems` therefore validates each
resource with its R4B model (structure, cardinality, data types, forbidden extra elements)
and then checks explicitly what R4 has and R4B does not, plus the bindings EHRs check:

* resource types new in R4B do not exist in R4 (:data:`R4B_ONLY_RESOURCES`);
* Bundle.type ``subscription-notification`` is R4B's; Bundle.type and the resources'
  ``status`` have *required* R4 value sets, which the models do not enforce
  (:data:`R4_REQUIRED_CODES`, from the R4 resource pages);
* no element uses R4B's CodeableReference (``{"concept": ..., "reference": ...}``);
* ImagingStudy.modality (0..*) and ImagingStudy.series.modality (1..1) are ``Coding``
  (R5 made them CodeableConcept) in the DICOM system; R4 binds both (extensible) to the
  Acquisition Modality value set, DICOM PS3.16 CID 29, so a study-level modality must be an
  acquisition modality (``SR``, ``SEG``, ``OT`` are not) and a series modality a DICOM
  modality (CID 33);
* LOINC 18748-4 is displayed as LOINC names it, "Diagnostic imaging study";
* every Coding has an absolute ``system`` URI and a ``code``; every entry's ``fullUrl`` is
  unique and every ``urn:uuid`` reference resolves inside the Bundle (R4 bdl-7, and what a
  transaction needs).

Examples
--------
>>> r4_problems({"resourceType": "Bundle", "type": "subscription-notification", "entry": []})[0]
'Bundle.type: subscription-notification is R4B-only (R4 has no Subscription notifications)'
>>> r4_problems({"resourceType": "Bundle", "type": "collection", "entry": []})
[]
"""

from __future__ import annotations

import functools
from typing import Any

from medsight.core.errors import InvalidInputError

__all__ = [
    "LOINC_DISPLAYS",
    "R4B_ONLY_RESOURCES",
    "R4_REQUIRED_CODES",
    "acquisition_modalities",
    "check_r4",
    "dicom_modalities",
    "r4_problems",
]

#: Resource types added in R4B (FHIR R4B version history 4.3.0): absent from R4.
R4B_ONLY_RESOURCES = frozenset(
    {
        "AdministrableProductDefinition",
        "Citation",
        "ClinicalUseDefinition",
        "EvidenceReport",
        "Ingredient",
        "ManufacturedItemDefinition",
        "MedicinalProductDefinition",
        "NutritionProduct",
        "PackagedProductDefinition",
        "RegulatedAuthorization",
        "SubscriptionStatus",
        "SubscriptionTopic",
    }
)
_DICOM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
_STATUS = ("registered", "preliminary", "final", "amended", "corrected", "cancelled")
#: Required R4 value sets (FHIR R4 4.0.1 resource pages) of coded elements medsight writes:
#: ``(resource type, element) -> codes``; fhir.resources checks only that they are codes.
R4_REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Bundle", "type"): frozenset(
        [
            "document",
            "message",
            "transaction",
            "transaction-response",
            "batch",
            "batch-response",
            "history",
            "searchset",
            "collection",
        ]
    ),
    ("Observation", "status"): frozenset({*_STATUS, "entered-in-error", "unknown"}),
    ("DiagnosticReport", "status"): frozenset(
        {*_STATUS, "partial", "appended", "entered-in-error", "unknown"}
    ),
    ("ImagingStudy", "status"): frozenset(
        {"registered", "available", "cancelled", "entered-in-error", "unknown"}
    ),
}
#: LOINC's display names where DICOM PS3.16's code meaning differs (FHIR shows LOINC's).
LOINC_DISPLAYS = {"18748-4": "Diagnostic imaging study"}


@functools.cache
def _modalities(cid: int) -> frozenset[str]:
    """DICOM modality codes of a PS3.16 context group (pydicom's copy of PS3.16)."""
    from pydicom.sr._cid_dict import cid_concepts
    from pydicom.sr.codedict import codes

    return frozenset(getattr(codes.DCM, name).value for name in cid_concepts[cid]["DCM"])


def acquisition_modalities() -> frozenset[str]:
    """DICOM CID 29 (Acquisition Modality): R4's ImagingStudy.modality value set."""
    return _modalities(29)


def dicom_modalities() -> frozenset[str]:
    """DICOM CID 33 (Modality): every modality code, derived objects (SR, SEG) included."""
    return _modalities(33)


def _walk(node: Any, path: str, out: list[str]) -> None:
    """Coding and CodeableReference checks over every element of one resource."""
    if isinstance(node, dict):
        if set(node) >= {"concept"} and set(node) <= {"concept", "reference", "id", "extension"}:
            out.append(f"{path}: a CodeableReference (R4B data type, not in R4)")
        if "code" in node and ("system" in node or "display" in node) and "value" not in node:
            _coding(node, path, out)
        for key, value in node.items():
            _walk(value, f"{path}.{key}", out)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _walk(item, f"{path}[{i}]", out)


def _coding(coding: dict[str, Any], path: str, out: list[str]) -> None:
    system, code = str(coding.get("system", "")), coding.get("code")
    if not system.startswith(("http://", "https://", "urn:")):
        out.append(f"{path}: Coding without an absolute system URI ({system or 'none'})")
    if not isinstance(code, str) or not code:
        out.append(f"{path}: Coding without a code")
    if system == "http://loinc.org" and code in LOINC_DISPLAYS:
        want = LOINC_DISPLAYS[code]
        if coding.get("display", want) != want:
            out.append(f"{path}: LOINC {code} display is {want!r}, not {coding['display']!r}")


def _imaging_study(res: dict[str, Any], path: str, out: list[str]) -> None:
    for i, coding in enumerate(res.get("modality", [])):
        where = f"{path}.modality[{i}]"
        if not isinstance(coding, dict) or "coding" in coding:
            out.append(f"{where}: must be a Coding in R4 (a CodeableConcept is R5)")
            continue
        if coding.get("system") != _DICOM_SYSTEM:
            out.append(f"{where}: system must be {_DICOM_SYSTEM}")
        if coding.get("code") not in acquisition_modalities():
            out.append(
                f"{where}: {coding.get('code')!r} is not an acquisition modality (DICOM CID 29, "
                "R4's binding)"
            )
    for i, series in enumerate(res.get("series", [])):
        coding = series.get("modality")
        where = f"{path}.series[{i}].modality"
        if not isinstance(coding, dict) or "coding" in coding:
            out.append(f"{where}: must be one Coding in R4")
            continue
        if coding.get("system") != _DICOM_SYSTEM or coding.get("code") not in dicom_modalities():
            out.append(f"{where}: {coding.get('code')!r} is not a DICOM modality (CID 33)")


def r4_problems(bundle: dict[str, Any]) -> list[str]:
    """Why ``bundle`` (JSON-ready data) is not valid FHIR R4; empty when it is."""
    from fhir.resources.R4B import get_fhir_model_class

    out: list[str] = []
    if bundle.get("resourceType") != "Bundle":
        return [f"resourceType is {bundle.get('resourceType')!r}, not 'Bundle'"]
    if bundle.get("type") == "subscription-notification":
        out.append(
            "Bundle.type: subscription-notification is R4B-only (R4 has no Subscription "
            "notifications)"
        )
    if bundle.get("type") not in R4_REQUIRED_CODES["Bundle", "type"]:
        out.append(f"Bundle.type: {bundle.get('type')!r} is not in R4's required value set")
    entries = bundle.get("entry", [])
    urls = [e.get("fullUrl") for e in entries]
    if len(set(urls)) != len(urls):
        out.append("Bundle.entry.fullUrl: not unique (R4 bdl-7)")
    known = set(urls)
    for n, entry in enumerate(entries):
        res = entry.get("resource", {})
        kind = str(res.get("resourceType", "?"))
        path = f"Bundle.entry[{n}].resource({kind})"
        if kind in R4B_ONLY_RESOURCES:
            out.append(f"{path}: {kind} is R4B-only, not an R4 resource")
            continue
        try:
            get_fhir_model_class(kind).model_validate(res)
        except (KeyError, ValueError) as exc:
            out.append(f"{path}: fails validation: {str(exc)[:300]}")
        _walk(res, path, out)
        for (rtype, element), allowed in R4_REQUIRED_CODES.items():
            if rtype == kind and element in res and res[element] not in allowed:
                out.append(f"{path}.{element}: {res[element]!r} is not in R4's required value set")
        if kind == "ImagingStudy":
            _imaging_study(res, path, out)
        _references(res, path, known, out)
    return out


def _references(node: Any, path: str, known: set[Any], out: list[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.startswith("urn:uuid:") and ref not in known:
            out.append(f"{path}: reference {ref} resolves to no entry of the Bundle")
        for key, value in node.items():
            _references(value, f"{path}.{key}", known, out)
    elif isinstance(node, list):
        for item in node:
            _references(item, path, known, out)


def check_r4(bundle: dict[str, Any]) -> dict[str, Any]:
    """Return ``bundle`` if it is valid FHIR R4, else raise naming every problem.

    Raises
    ------
    InvalidInputError
        The Bundle is not valid R4; the message lists the elements and why.
    """
    problems = r4_problems(bundle)
    if problems:
        raise InvalidInputError("FHIR Bundle", "is not valid FHIR R4: " + "; ".join(problems[:10]))
    return bundle
