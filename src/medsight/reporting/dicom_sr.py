"""Comprehensive 3D SR following TID 1500 (Measurement Report) from Findings, with highdicom.

* Segmentation findings become Volumetric ROI measurement groups (TID 1411) that reference
  their segment in the DICOM SEG, with their measurements (UCUM units) and finding site.
* Classification findings become image-level groups (TID 1501) with a qualitative evaluation
  (present / absent at the model's operating point) and the probability as a measurement.
* Detection findings become Planar / Volumetric ROI groups (TID 1410 / 1411) whose image region
  is an SCOORD (2D) or SCOORD3D (3D, patient coordinates) of their box or circle, with their
  size, the score and present / absent (:mod:`medsight.reporting.sr_regions`).
* Change findings (a finding compared with a prior study) become image-level groups whose
  source images are a current and a prior instance; the prior study's instances are evidence,
  which highdicom files under PertinentOtherEvidenceSequence (another StudyInstanceUID).
* Every group carries the algorithm identification (name and version of the model package).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydicom.dataset import Dataset

from medsight import __version__
from medsight.core.codes import ABSENT, IMAGING_PROCEDURE, NO_UNITS, PRESENT, Code
from medsight.core.errors import InvalidInputError
from medsight.core.findings import Finding, FindingKind
from medsight.reporting.dicom_seg import hd_code
from medsight.reporting.sr_regions import region_group

__all__ = ["build_sr"]

#: Concept used for a classifier's probability (DCM 111047 is cancer-specific, so the
#: generic local concept is used unless the finding says otherwise).
PROBABILITY = Code("probability", "99MEDSIGHT", "AI probability of finding")


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
        tracking = hd.sr.TrackingIdentifier(
            uid=hd.UID(), identifier=f"{finding.finding.meaning} #{n}"
        )
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
    # the prior's instances (another study) go to PertinentOtherEvidenceSequence: highdicom's
    # collect_evidence splits the evidence by StudyInstanceUID (sr/sop.py, _SR.__init__)
    evidence = list(source) + list((segmentations or {}).values()) + list(prior)
    return hd.sr.Comprehensive3DSR(
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
