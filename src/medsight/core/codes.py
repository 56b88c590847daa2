"""Coded concepts: every clinical meaning medsight emits is a `Code`, never a bare string.

A Code is a (value, coding scheme, meaning) triple as DICOM, HL7 FHIR and SNOMED CT use them.
Schemes are given by their DICOM designators (``SCT`` SNOMED CT, ``DCM`` DICOM, ``UCUM`` units,
``RADLEX``, ``LN`` LOINC); :meth:`Code.fhir_system` maps them to FHIR system URIs.

The constants below are the codes medsight itself uses in reports; each comes from the
standard named beside it (DICOM PS3.16 CIDs quoted by number).

Examples
--------
>>> VOLUME.value, VOLUME.scheme, VOLUME.meaning
('118565006', 'SCT', 'Volume')
>>> MILLILITER.fhir_system()
'http://unitsofmeasure.org'
>>> Code("123", "SCT", "x") == Code("123", "SCT", "another meaning")  # identity is value+scheme
True
"""

from __future__ import annotations

import dataclasses

from medsight.core.errors import InvalidInputError

__all__ = [
    "ABNORMAL_STRUCTURE",
    "ABSENT",
    "ALGORITHM_NAME",
    "ANATOMICAL_STRUCTURE",
    "AREA",
    "ARTIFICIAL_INTELLIGENCE",
    "BREAST",
    "CODE_FHIR_SYSTEMS",
    "DEPTH",
    "DIAGNOSTIC_IMAGING_REPORT",
    "DIAMETER",
    "FINDING",
    "HEIGHT",
    "HIPPOCAMPUS",
    "IMAGING_MEASUREMENTS",
    "IMAGING_PROCEDURE",
    "LESION",
    "LOCAL_SCHEME",
    "LONG_AXIS",
    "MASS",
    "MILLILITER",
    "MILLIMETER",
    "NEOPLASM",
    "NO_UNITS",
    "PIXELS",
    "PRESENT",
    "PROBABILITY",
    "PROBABILITY_OF_CANCER",
    "SHORT_AXIS",
    "SQUARE_MILLIMETER",
    "SQUARE_PIXELS",
    "STANDARD_SCHEMES",
    "TRACKING_IDENTIFIER",
    "VOLUME",
    "VOXELS",
    "WIDTH",
    "Code",
]

#: DICOM coding scheme designators -> FHIR code system URIs (HL7 terminology).
CODE_FHIR_SYSTEMS: dict[str, str] = {
    "SCT": "http://snomed.info/sct",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "UCUM": "http://unitsofmeasure.org",
    "LN": "http://loinc.org",
    "RADLEX": "http://radlex.org",
}

#: The private coding scheme of concepts with no standard code (DICOM PS3.16 8.2: a private
#: designator starts with ``99``); every DICOM object using it declares it in its Coding Scheme
#: Identification Sequence (:mod:`medsight.reporting.coding_schemes`).
LOCAL_SCHEME = "99MEDSIGHT"
#: Designators of DICOM PS3.16 Table 8-1 that medsight and highdicom write (RFC5646: the
#: SR's language of content); they need no declaration.
STANDARD_SCHEMES = frozenset(
    {"DCM", "SCT", "SRT", "UCUM", "LN", "RADLEX", "NCIt", "FMA", "UMLS", "RFC5646", "ISO3166_1"}
)


@dataclasses.dataclass(frozen=True)
class Code:
    """A coded concept.

    Parameters
    ----------
    value : str
        The code value (``"118565006"``).
    scheme : str
        Coding scheme designator (``"SCT"``, ``"DCM"``, ``"UCUM"``, ...).
    meaning : str
        Human-readable meaning; not part of the identity.
    """

    value: str
    scheme: str
    meaning: str = dataclasses.field(compare=False)

    def __post_init__(self) -> None:
        if not self.value or not self.scheme:
            raise InvalidInputError("code", f"value and scheme are required, got {self!r}")

    def fhir_system(self) -> str:
        """The FHIR ``system`` URI of the scheme (``urn:medsight:<scheme>`` for local ones)."""
        return CODE_FHIR_SYSTEMS.get(self.scheme.upper(), f"urn:medsight:{self.scheme.lower()}")

    def __str__(self) -> str:
        return f"{self.meaning} ({self.scheme} {self.value})"


# Units (UCUM; DICOM PS3.16 CID 7181 uses the same codes)
MILLILITER = Code("mL", "UCUM", "milliliter")
MILLIMETER = Code("mm", "UCUM", "millimeter")
SQUARE_MILLIMETER = Code("mm2", "UCUM", "square millimeter")
NO_UNITS = Code("1", "UCUM", "no units")
# Image-grid units for images without a known pixel spacing (PNG/JPEG, DICOM without spacing):
# UCUM annotations (dimensionless counts), "{pixels}" as DICOM PS3.16 TID 1602 uses it.  UCUM
# annotations take no exponent, hence the spelled-out "{square_pixels}".
PIXELS = Code("{pixels}", "UCUM", "pixels")
SQUARE_PIXELS = Code("{square_pixels}", "UCUM", "square pixels")
VOXELS = Code("{voxels}", "UCUM", "voxels")
# Measurement concepts (SNOMED CT, as in DICOM PS3.16 CID 7470 / CID 7472)
VOLUME = Code("118565006", "SCT", "Volume")
AREA = Code("42798000", "SCT", "Area")
DIAMETER = Code("81827009", "SCT", "Diameter")
LONG_AXIS = Code("103339001", "SCT", "Long Axis")
SHORT_AXIS = Code("103340004", "SCT", "Short Axis")
WIDTH = Code("103355008", "SCT", "Width")  # a box's extent along i (columns), CID 7470
HEIGHT = Code("121207", "DCM", "Height")  # along j (rows), CID 7470
DEPTH = Code("131197000", "SCT", "Depth")  # along k (slices), CID 7470
# Report structure (DICOM PS3.16)
IMAGING_MEASUREMENTS = Code("126010", "DCM", "Imaging Measurements")
FINDING = Code("121071", "DCM", "Finding")
PROBABILITY_OF_CANCER = Code("111047", "DCM", "Probability of cancer")
PROBABILITY = Code("122157", "DCM", "Probability")  # a model's probability of its finding
ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
TRACKING_IDENTIFIER = Code("112039", "DCM", "Tracking Identifier")
# Anatomy and findings (SNOMED CT)
HIPPOCAMPUS = Code("5366008", "SCT", "Hippocampus")
BREAST = Code("76752008", "SCT", "Breast")
LESION = Code("52988006", "SCT", "Lesion")
MASS = Code("4147007", "SCT", "Mass")
NEOPLASM = Code("108369006", "SCT", "Neoplasm")
ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")  # CID 7150 category
ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically Abnormal Structure")  # CID 7150
PRESENT = Code("52101004", "SCT", "Present")
ABSENT = Code("272519000", "SCT", "Absent")
IMAGING_PROCEDURE = Code("363679005", "SCT", "Imaging (procedure)")
# DICOM PS3.16's meaning; FHIR shows LOINC's own display, "Diagnostic imaging study"
# (medsight.reporting.fhir_r4.LOINC_DISPLAYS)
DIAGNOSTIC_IMAGING_REPORT = Code("18748-4", "LN", "Diagnostic Imaging Report")
ARTIFICIAL_INTELLIGENCE = Code("123110", "DCM", "Artificial Intelligence")  # CID 7162
