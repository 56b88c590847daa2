"""Coding Scheme Identification Sequence (0008,0110) of the DICOM objects medsight writes.

A code whose scheme is not one of DICOM PS3.16 Table 8-1 (SNOMED CT, DCM, UCUM, LOINC,
RadLex, ...) must be declared in the SOP Common Module's Coding Scheme Identification Sequence
(PS3.3 C.12.1.1.2): medsight's private scheme :data:`~medsight.core.codes.LOCAL_SCHEME` (for
concepts without a standard code, e.g. a model label nobody coded) and any other private
scheme a model package brings.  :func:`declare_coding_schemes` walks a finished SEG or SR,
collects every Coding Scheme Designator it uses and declares the non-standard ones.

Examples
--------
>>> from pydicom.dataset import Dataset
>>> ds, item = Dataset(), Dataset()
>>> item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "x", "99MEDSIGHT", "x"
>>> ds.ConceptNameCodeSequence = [item]
>>> sorted(used_schemes(ds)), undeclared_schemes(ds)
(['99MEDSIGHT'], ['99MEDSIGHT'])
>>> declared = declare_coding_schemes(ds).CodingSchemeIdentificationSequence[0]
>>> declared.CodingSchemeDesignator, declared.CodingSchemeName
('99MEDSIGHT', 'medsight local codes')
>>> undeclared_schemes(ds)
[]
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from medsight.core.codes import LOCAL_SCHEME, STANDARD_SCHEMES

__all__ = ["declare_coding_schemes", "undeclared_schemes", "used_schemes"]

#: What the declaration of medsight's own scheme says about it.
_LOCAL_NAME = "medsight local codes"
_LOCAL_ORGANIZATION = "medsight project"


def used_schemes(ds: Dataset) -> set[str]:
    """Every Coding Scheme Designator used in ``ds`` (nested sequences included).

    The designators inside the Coding Scheme Identification Sequence itself are not uses.
    """
    found: set[str] = set()

    def walk(d: Dataset) -> None:
        for elem in d:
            if elem.keyword == "CodingSchemeDesignator" and elem.value:
                found.add(str(elem.value))
            elif elem.VR == "SQ" and elem.keyword != "CodingSchemeIdentificationSequence":
                for item in elem.value:
                    walk(item)

    walk(ds)
    return found


def _declared(ds: Dataset) -> set[str]:
    return {
        str(item.get("CodingSchemeDesignator", ""))
        for item in ds.get("CodingSchemeIdentificationSequence", [])
    }


def undeclared_schemes(ds: Dataset) -> list[str]:
    """Schemes ``ds`` uses that are neither in PS3.16 Table 8-1 nor declared in it."""
    return sorted(used_schemes(ds) - STANDARD_SCHEMES - _declared(ds))


def declare_coding_schemes(ds: Dataset) -> Dataset:
    """Declare every non-standard scheme ``ds`` uses in its Coding Scheme Identification Sequence.

    Returns ``ds`` itself (changed in place), so a builder can ``return
    declare_coding_schemes(obj)``.
    """
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    missing = undeclared_schemes(ds)
    if not missing:
        return ds
    items = list(ds.get("CodingSchemeIdentificationSequence", []))
    for designator in missing:
        if designator == LOCAL_SCHEME:
            item = CodingSchemeIdentificationItem(
                designator, name=_LOCAL_NAME, responsible_organization=_LOCAL_ORGANIZATION
            )
        else:  # a private scheme from a model package's labels: declared by its designator
            item = CodingSchemeIdentificationItem(designator, name=f"{designator} (private)")
        items.append(item)
    ds.CodingSchemeIdentificationSequence = items
    return ds
