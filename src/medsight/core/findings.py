"""Findings and measurements: what reports, DICOM SR and FHIR are rendered from.

A :class:`Measurement` is a coded quantity with a UCUM unit; a :class:`Finding` is one coded
observation (a lesion, a disease, a structure) by one model, with its probability, its
measurements, the mask segment or image region it refers to, and the evidence images.  These are
plain immutable data (numpy only): the report, the SR and the FHIR Bundle are three renderings
of the same list of Findings.

Examples
--------
>>> from medsight.core.codes import MILLILITER, VOLUME, HIPPOCAMPUS
>>> vol = Measurement(VOLUME, 3.21, MILLILITER)
>>> f = Finding(finding=HIPPOCAMPUS, model_id="hippo-seg", model_version="1.0",
...             measurements=(vol,), segment_number=1)
>>> f.measurement(VOLUME).value, str(vol)
(3.21, 'Volume: 3.21 mL')
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum

from medsight.core.codes import Code
from medsight.core.errors import InvalidInputError
from medsight.core.image import DicomReference
from medsight.core.significance import Significance, Urgency

__all__ = ["Finding", "FindingKind", "Measurement"]


class FindingKind(StrEnum):
    """Where a Finding comes from."""

    CLASSIFICATION = "classification"  # a whole-image probability
    SEGMENTATION = "segmentation"  # a segmented structure or lesion with measurements
    RULE = "rule"  # a decision-support rule over other findings


@dataclasses.dataclass(frozen=True)
class Measurement:
    """A coded quantity.

    Parameters
    ----------
    concept : Code
        What is measured (e.g. SNOMED CT Volume).
    value : float
    unit : Code
        A UCUM unit code (``mL``, ``mm``, ``mm2``, ``1``; ``{pixels}`` when the pixel spacing
        is unknown).
    qualifier : str, optional
        Free-text precision, e.g. ``"on slice 12"``.
    ci_low, ci_high : float, optional
        A confidence interval when one is known.
    """

    concept: Code
    value: float
    unit: Code
    qualifier: str = ""
    ci_low: float | None = None
    ci_high: float | None = None

    def __post_init__(self) -> None:
        if self.unit.scheme.upper() != "UCUM":
            raise InvalidInputError(f"measurement {self.concept.meaning}", "unit must be UCUM")
        object.__setattr__(self, "value", float(self.value))

    @property
    def unit_text(self) -> str:
        """The unit as a reader writes it: the UCUM code (``mm``, ``mL``), or the meaning of a
        UCUM annotation (``{pixels}`` -> ``pixels``)."""
        return self.unit.meaning if self.unit.value.startswith("{") else self.unit.value

    def __str__(self) -> str:
        return f"{self.concept.meaning}: {self.value:.3g} {self.unit_text}"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One coded observation by one model.

    Parameters
    ----------
    finding : Code
        The concept observed (lesion, pneumonia, hippocampus ...).
    model_id, model_version : str
        The model package that produced it.
    kind : FindingKind
    probability : float, optional
        Calibrated probability in [0, 1] (classification findings).
    positive : bool, optional
        The decision at the model's operating threshold.
    measurements : tuple of Measurement
    site : Code, optional
        Anatomic site (finding site).
    segment_number : int, optional
        The segment of the DICOM SEG / label value of the mask this finding describes.
    source : DicomReference, optional
        The images the finding was made on.
    evidence : tuple of str
        Paths (relative to the report folder) of overlay / heatmap images.
    note : str
        One sentence for the report.
    significance : Significance, optional
        What the finding's label means clinically (None: not stated, treated as
        indeterminate); see :mod:`medsight.core.significance`.
    urgency : Urgency, optional
        How urgently a positive actionable finding needs a reader.
    reliability : str
        What the probability is worth: its validated reliability and the model's validated
        performance, one sentence (classification; see :mod:`medsight.models.reliability`).
    weak_model : bool
        The model's validated accuracy or AUC lower bound is below the level a reader can
        rely on; the report says so beside the finding.
    """

    finding: Code
    model_id: str
    model_version: str
    kind: FindingKind = FindingKind.SEGMENTATION
    probability: float | None = None
    positive: bool | None = None
    measurements: tuple[Measurement, ...] = ()
    site: Code | None = None
    segment_number: int | None = None
    source: DicomReference | None = None
    evidence: tuple[str, ...] = ()
    note: str = ""
    significance: Significance | None = None
    urgency: Urgency | None = None
    reliability: str = ""
    weak_model: bool = False

    def __post_init__(self) -> None:
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise InvalidInputError(
                f"finding {self.finding.meaning}", f"probability {self.probability} not in [0, 1]"
            )
        object.__setattr__(self, "kind", FindingKind(self.kind))
        object.__setattr__(self, "measurements", tuple(self.measurements))
        object.__setattr__(self, "evidence", tuple(self.evidence))
        if self.significance is not None:
            object.__setattr__(self, "significance", Significance(self.significance))
        if self.urgency is not None:
            object.__setattr__(self, "urgency", Urgency(self.urgency))

    @property
    def present(self) -> bool:
        """Positive at the operating threshold; a segmented structure is present by existing."""
        if self.positive is not None:
            return self.positive
        return self.kind is FindingKind.SEGMENTATION

    @property
    def actionable(self) -> bool:
        """Present, and its label is actionable: this finding flags its study."""
        return self.present and self.significance is Significance.ACTIONABLE

    def measurement(self, concept: Code) -> Measurement:
        """The measurement of ``concept``.

        Raises
        ------
        InvalidInputError
            If there is none.
        """
        for m in self.measurements:
            if m.concept == concept:
                return m
        raise InvalidInputError(f"finding {self.finding.meaning}", f"has no {concept.meaning}")
