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

__all__ = ["Finding", "FindingKind", "Measurement", "Region"]


class FindingKind(StrEnum):
    """Where a Finding comes from."""

    CLASSIFICATION = "classification"  # a whole-image probability
    SEGMENTATION = "segmentation"  # a segmented structure or lesion with measurements
    RULE = "rule"  # a decision-support rule over other findings
    DETECTION = "detection"  # a localised lesion: a box or centre + diameter with a score
    CHANGE = "change"  # a finding compared with the same finding on a prior study
    RISK = "risk"  # a predicted outcome (probability or time-to-event risk) from image + record


@dataclasses.dataclass(frozen=True)
class Region:
    """The image region a finding points at, in the index space of the image it was made on.

    Parameters
    ----------
    center : tuple of float
        ``(i, j)`` or ``(i, j, k)`` voxel index of the centre (the axes of
        :class:`~medsight.core.image.Image`: column, row, slice).
    size : tuple of float
        Full extent along each index axis in voxels (a box's width / height / depth, a
        circle's or sphere's diameter on every axis).
    shape : str
        ``"box"`` (axis-aligned) or ``"ellipse"`` (circle / sphere / ellipsoid inscribed in the
        box).

    Examples
    --------
    >>> r = Region((10.0, 20.0), (4.0, 6.0))
    >>> r.box
    ((8.0, 17.0), (12.0, 23.0))
    >>> r.contains((11.5, 22.0)), r.contains((13.0, 20.0))
    (True, False)
    """

    center: tuple[float, ...]
    size: tuple[float, ...]
    shape: str = "box"

    def __post_init__(self) -> None:
        center = tuple(float(c) for c in self.center)
        size = tuple(float(s) for s in self.size)
        if len(center) not in (2, 3) or len(size) != len(center):
            raise InvalidInputError(
                "region", f"centre {center} and size {size} must both have 2 or 3 values"
            )
        if any(s < 0 for s in size):
            raise InvalidInputError("region", f"negative size {size}")
        if self.shape not in ("box", "ellipse"):
            raise InvalidInputError("region", f"shape {self.shape!r} is not 'box' or 'ellipse'")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "size", size)

    @property
    def ndim(self) -> int:
        """2 or 3."""
        return len(self.center)

    @property
    def box(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(low corner, high corner)`` in voxel index coordinates."""
        lo = tuple(c - s / 2 for c, s in zip(self.center, self.size, strict=True))
        hi = tuple(c + s / 2 for c, s in zip(self.center, self.size, strict=True))
        return lo, hi

    def contains(self, point: tuple[float, ...]) -> bool:
        """Whether ``point`` (voxel index) lies inside the box or the ellipse."""
        if len(point) != self.ndim:
            raise InvalidInputError("region", f"point {point} has not {self.ndim} coordinates")
        if self.shape == "box":
            lo, hi = self.box
            return all(a <= p <= b for a, p, b in zip(lo, point, hi, strict=True))
        total = 0.0
        for c, s, p in zip(self.center, self.size, point, strict=True):
            if s == 0:
                if p != c:
                    return False
                continue
            total += ((p - c) / (s / 2)) ** 2
        return total <= 1.0


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
    threshold : float, optional
        That operating threshold, for this finding's own label (a binary model whose
        threshold is stored on the other label has ``1 - t`` here; a per-group threshold when
        one decided), so the decision is read beside its operating point.  ``None``: not
        known (arg-max decisions, findings made before it was recorded); nothing is said.
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
    region : Region, optional
        The box / circle the finding points at (detection findings), in the index space of
        the image named by ``source``.
    prior_source : DicomReference, optional
        The prior study's images a change finding was compared with (longitudinal).
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
    region: Region | None = None
    prior_source: DicomReference | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise InvalidInputError(
                f"finding {self.finding.meaning}", f"probability {self.probability} not in [0, 1]"
            )
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise InvalidInputError(
                f"finding {self.finding.meaning}", f"threshold {self.threshold} not in [0, 1]"
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
        return self.kind in (FindingKind.SEGMENTATION, FindingKind.DETECTION, FindingKind.CHANGE)

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
