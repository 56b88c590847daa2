"""Comprehensive 3D SR following TID 1500 (Measurement Report) from Findings, with highdicom.

* Segmentation findings become Volumetric ROI measurement groups (TID 1411) that reference
  their segment in the DICOM SEG, with their measurements (UCUM units) and finding site; on a
  single image also Planar ROI groups (TID 1410) with the segment's outline as an SCOORD
  under the same Tracking Unique Identifier (viewers such as OHIF need spatial coordinates),
  and a long-axis group: the longest in-plane diameter in mm on the slice of largest area, a
  Length that OHIF's measurement panel lists (:mod:`medsight.reporting.sr_regions`).
* Classification findings become image-level groups (TID 1501) with a qualitative evaluation
  (present / absent at the model's operating point) and the probability as a measurement.
* Detection findings become, in 2D, groups in the layout of cornerstone's RectangleROI /
  CircleROI / EllipticalROI tools (an SCOORD with perimeter and area in mm, which OHIF's
  measurement panel lists) and, in 3D, Volumetric ROI groups (TID 1411) with an SCOORD3D in
  patient coordinates; with their size, the score and present / absent
  (:mod:`medsight.reporting.sr_regions`).
* Change findings (a finding compared with a prior study) become image-level groups whose
  source images are a current and a prior instance; the prior study's instances are evidence,
  which highdicom files under PertinentOtherEvidenceSequence (another StudyInstanceUID).
* Every group carries the algorithm identification (name and version of the model package).
* Guideline suggestions (decision support, not a diagnosis) go in a separate TID 1500
  "Qualitative Evaluations" container after the measurements, one TEXT item each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydicom.dataset import Dataset

from medsight import __version__
from medsight.core.codes import ABSENT, IMAGING_PROCEDURE, NO_UNITS, PRESENT, PROBABILITY, Code
from medsight.core.errors import InvalidInputError
from medsight.core.findings import Finding, FindingKind
from medsight.reporting.coding_schemes import declare_coding_schemes
from medsight.reporting.dicom_seg import hd_code
from medsight.reporting.sr_regions import (
    long_axis_group,
    region_group,
    segment_outline_groups,
)

__all__ = ["build_sr"]


def _algorithm(finding: Finding) -> Any:
    import highdicom as hd

    return hd.sr.AlgorithmIdentification(name=finding.model_id, version=finding.model_version)


#: Derivation (DCM CID 3488) of a measurement whose qualifier is "peak" (e.g. an fMRI
#: cluster's peak z): SNOMED CT "Maximum".
MAXIMUM = Code("56851009", "SCT", "Maximum")


def _measurements(finding: Finding) -> list[Any]:
    import highdicom as hd

    return [
        hd.sr.Measurement(
            name=hd_code(m.concept),
            value=m.value,
            unit=hd_code(m.unit),
            algorithm_id=_algorithm(finding),
            derivation=hd_code(MAXIMUM) if m.qualifier == "peak" else None,
        )
        for m in finding.measurements
    ]


#: TID 1500 "Qualitative Evaluations" container (UMLS C0034375).
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
#: Concept name of a guideline suggestion's text (no standard code says "suggestion").
GUIDELINE_SUGGESTION = Code(
    "guideline-suggestion", "99MEDSIGHT", "Guideline suggestion (decision support)"
)


def _suggestion_container(suggestions: Sequence[Any]) -> Any:
    """The Qualitative Evaluations container holding one TEXT item per suggestion."""
    import highdicom as hd

    container = hd.sr.ContainerContentItem(
        name=hd_code(QUALITATIVE_EVALUATIONS),
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=hd_code(GUIDELINE_SUGGESTION),
                value=s.text(),
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
            for s in suggestions
        ]
    )
    return container


def build_sr(
    findings: Sequence[Finding],
    source: Sequence[Dataset],
    *,
    segmentations: Mapping[str, Dataset] | None = None,
    segment_numbers: Mapping[str, Mapping[int, int]] | None = None,
    series_number: int = 902,
    title: Code | None = None,
    prior: Sequence[Dataset] = (),
    affine: Any = None,
    suggestions: Sequence[Any] = (),
) -> Any:
    """Build the SR document.

    Parameters
    ----------
    findings : sequence of Finding
    source : sequence of pydicom Dataset
        The images the findings were made on (evidence).
    segmentations : mapping, optional
        ``model_id -> DICOM SEG`` that the model's segmentation findings refer to.
    segment_numbers : mapping, optional
        ``model_id -> {label index: SEG segment number}``; defaults to the finding's own
        ``segment_number``.
    prior : sequence of pydicom Dataset, optional
        The prior study's images that CHANGE findings were compared with: each CHANGE group
        names its first instance as a source image beside the current one, and all are
        evidence (a prior study's instances land in PertinentOtherEvidenceSequence).
    affine : array_like, optional
        The 4x4 index-to-LPS affine of the image the findings were made on: a 3D detection
        region is written as SCOORD3D in patient coordinates through it
        (:mod:`medsight.reporting.sr_regions`; 2D regions are SCOORD on the source image).
    suggestions : sequence of GuidelineSuggestion, optional
        Guideline suggestions (:mod:`medsight.clinical.guideline_facts`): a separate TID 1500
        "Qualitative Evaluations" container after the measurements, one TEXT item each,
        named as a guideline suggestion (decision support, not a diagnosis).

    Raises
    ------
    InvalidInputError
        A segmentation finding without a SEG to reference, or nothing to report.
    """
    import highdicom as hd

    if not findings:
        raise InvalidInputError("findings", "nothing to report")
    if not source:
        raise InvalidInputError("source", "an SR needs the source images as evidence")
    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(),
            name="medsight",
            manufacturer_name="medsight",
            model_name=f"medsight {__version__}",
        ),
    )
    groups = []
    for n, finding in enumerate(findings, start=1):
        tracking_uid, tracking_id = hd.UID(), f"{finding.finding.meaning} #{n}"
        tracking = hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=tracking_id)
        sites = [hd.sr.FindingSite(hd_code(finding.site))] if finding.site else None
        if finding.kind == FindingKind.SEGMENTATION:
            segmentation = (segmentations or {}).get(finding.model_id)
            if segmentation is None or finding.segment_number is None:
                raise InvalidInputError(
                    f"finding {finding.finding.meaning}", "needs a DICOM SEG segment to reference"
                )
            numbers = (segment_numbers or {}).get(finding.model_id, {})
            number = numbers.get(finding.segment_number, finding.segment_number)
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking,
                    referenced_segment=hd.sr.ReferencedSegment(
                        sop_class_uid=segmentation.SOPClassUID,
                        sop_instance_uid=segmentation.SOPInstanceUID,
                        segment_number=number,
                        source_series=hd.sr.SourceSeriesForSegmentation(
                            source[0].SeriesInstanceUID
                        ),
                    ),
                    finding_type=hd_code(finding.finding),
                    algorithm_id=_algorithm(finding),
                    finding_sites=sites,
                    measurements=_measurements(finding) or None,
                )
            )
            groups += segment_outline_groups(  # the same finding as SCOORD outlines (2D)
                segmentation=segmentation,
                segment_number=number,
                source=source,
                tracking_uid=tracking_uid,
                tracking_id=tracking_id,
                algorithm=_algorithm(finding),
                finding_type=hd_code(finding.finding),
            )
            long_axis = long_axis_group(  # RECIST-style long axis, a Length OHIF lists
                segmentation=segmentation,
                segment_number=number,
                source=source,
                algorithm=_algorithm(finding),
                finding_type=hd_code(finding.finding),
                finding_sites=sites,
            )
            groups += [long_axis] if long_axis is not None else []
        else:
            measurements = _measurements(finding)
            if finding.probability is not None:
                measurements.append(
                    hd.sr.Measurement(
                        name=hd_code(PROBABILITY),
                        value=float(finding.probability),
                        unit=hd_code(NO_UNITS),
                        algorithm_id=_algorithm(finding),
                    )
                )
            evaluations = None
            if finding.positive is not None:
                evaluations = [
                    hd.sr.QualitativeEvaluation(
                        name=hd_code(finding.finding),
                        value=hd_code(PRESENT if finding.positive else ABSENT),
                    )
                ]
            if finding.kind == FindingKind.DETECTION and finding.region is not None:
                groups.append(  # an image region (SCOORD / SCOORD3D) with its measurements
                    region_group(
                        finding,
                        tracking=tracking,
                        sites=sites,
                        algorithm=_algorithm(finding),
                        measurements=measurements,
                        evaluations=evaluations,
                        source=source,
                        affine=affine,
                        finding_type=hd_code(finding.finding),
                    )
                )
                continue
            groups.append(
                hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking,
                    finding_type=hd_code(finding.finding),
                    algorithm_id=_algorithm(finding),
                    finding_sites=sites,
                    measurements=measurements or None,
                    qualitative_evaluations=evaluations,
                    source_images=[
                        hd.sr.SourceImageForMeasurementGroup.from_source_image(ds)
                        for ds in [
                            *source[:1],
                            *(prior[:1] if finding.kind == FindingKind.CHANGE else []),
                        ]
                    ],
                )
            )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd_code(IMAGING_PROCEDURE),
        imaging_measurements=groups,
        title=hd_code(title) if title else None,
    )
    if suggestions:  # TID 1500 row 12: a separate container, never mixed with measurements
        report[0].ContentSequence.append(_suggestion_container(suggestions))
    # the prior's instances (another study) go to PertinentOtherEvidenceSequence: highdicom's
    # collect_evidence splits the evidence by StudyInstanceUID (sr/sop.py, _SR.__init__)
    evidence = list(source) + list((segmentations or {}).values()) + list(prior)
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medsight",
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description="medsight AI measurements (preliminary)",
    )
    return declare_coding_schemes(sr)  # a private scheme (99MEDSIGHT) in (0008,0110)
