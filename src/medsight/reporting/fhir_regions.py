"""FHIR parts of a detection finding: where the lesion is, as a BodyStructure and a component.

R4 / R4B Observations have no field for an image region (R5 adds ``Observation.
bodyStructure``), so each detection gets a **BodyStructure** resource (morphology: the detected
class, e.g. SNOMED CT Mass; location: the finding site when the model states one; description:
the region in words, with the DICOM instance) that its Observation references through the core
``bodySite`` extension (``http://hl7.org/fhir/StructureDefinition/bodySite``, a
``Reference(BodyStructure)``), and an **"Image region"** component whose string value says the
same.  The score and the size are the Observation's other components (``AI probability``, one
per measurement), as for every finding.

Examples
--------
>>> from medsight.core.codes import MASS
>>> from medsight.core.findings import Finding, FindingKind, Region
>>> f = Finding(MASS, "m", "1", kind=FindingKind.DETECTION, probability=0.9,
...             region=Region((30, 20), (10, 8)))
>>> region_text(f)
'box centred at column 30, row 20 (image index space), 10 x 8 pixels'
"""

from __future__ import annotations

from typing import Any

from medsight.core.codes import Code
from medsight.core.findings import Finding

__all__ = ["BODY_SITE_EXTENSION", "add_region", "region_text"]

#: The core extension that points an Observation at a BodyStructure (R4 / R4B).
BODY_SITE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/bodySite"


def _coding(code: Code) -> dict[str, str]:
    return {"system": code.fhir_system(), "code": code.value, "display": code.meaning}


def region_text(finding: Finding, *, with_instance: bool = True) -> str:
    """The finding's region in words (index space of its image, and its DICOM instance)."""
    r = finding.region
    if r is None:
        return ""
    what = {"box": "box", "ellipse": "ellipse"}[r.shape]
    if r.shape == "ellipse" and len(set(r.size)) == 1:
        what = "circle" if r.ndim == 2 else "sphere"
    axes = ("column", "row", "slice")
    where = ", ".join(f"{a} {c:.4g}" for a, c in zip(axes, r.center, strict=False))
    size = " x ".join(f"{s:.4g}" for s in r.size)
    unit = "pixels" if r.ndim == 2 else "voxels"
    text = f"{what} centred at {where} (image index space), {size} {unit}"
    src = finding.source
    if with_instance and src is not None and src.sop_instance_uids:
        k = round(r.center[2]) if r.ndim == 3 else 0
        uids = src.sop_instance_uids
        text += f", SOP instance {uids[min(max(k, 0), len(uids) - 1)]}"
    return text


def add_region(obs: dict[str, Any], finding: Finding, patient_ref: str, ref: str) -> dict[str, Any]:
    """Point ``obs`` at a new BodyStructure for ``finding``'s region; return its Bundle entry.

    ``ref`` is the BodyStructure's ``fullUrl`` (a ``urn:uuid``).
    """
    structure: dict[str, Any] = {
        "resourceType": "BodyStructure",
        "morphology": {"coding": [_coding(finding.finding)], "text": finding.finding.meaning},
        "description": region_text(finding),
        "patient": {"reference": patient_ref},
    }
    if finding.site is not None:
        structure["location"] = {"coding": [_coding(finding.site)]}
    obs.setdefault("extension", []).append(
        {"url": BODY_SITE_EXTENSION, "valueReference": {"reference": ref}}
    )
    obs.setdefault("component", []).append(
        {"code": {"text": "Image region"}, "valueString": region_text(finding)}
    )
    return {"fullUrl": ref, "resource": structure}
