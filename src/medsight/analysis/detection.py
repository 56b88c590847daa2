"""The detection family's findings builder: a package and an Image -> one Finding per lesion.

Every detection scoring at or above the package's operating threshold (``thresholds["score"]``,
chosen on validation) becomes a :class:`~medsight.core.findings.Finding` of kind ``detection``:
its class's coded concept and clinical meaning, ``probability`` = the score (``reliability``
says it is a score, not a calibrated probability), ``positive``, the region (box or circle in
the image's index space), and its size as measurements: a circle's
diameter, an ellipse's long and short axes, a box's width and height (and depth in 3D), in mm
when the pixel spacing is known, in pixels otherwise.  Findings are numbered by score (``note``
``"mass #1"``), and the marked image (:func:`medsight.reporting.detection_marks.
render_detections`) is the evidence picture.

The output is withheld, with its reason, when the package stores no operating threshold: every
candidate down to the detector's score floor would be shown, with no validated decision behind
any of them, or when the detector returns a class its labels do not name.  The intended-use
gate is applied before, by :func:`medsight.analysis.run_package`.  There is no
out-of-distribution check on the detector's own features yet (the predictor exposes none).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medsight.analysis.output import ModelOutput, RunOptions, label_code
from medsight.core.codes import (
    DEPTH,
    DIAMETER,
    HEIGHT,
    LONG_AXIS,
    MILLIMETER,
    PIXELS,
    SHORT_AXIS,
    WIDTH,
    Code,
)
from medsight.core.findings import Finding, FindingKind, Measurement, Region
from medsight.core.image import Image, spacing_known
from medsight.models.package import ModelPackage

__all__ = ["WEAK_SENSITIVITY", "analyze_detection", "detector_weakness", "region_measurements"]

#: A detector whose validated sensitivity at 1 false positive per image has a lower 95% bound
#: below this is weak: the report says so beside each of its findings.
WEAK_SENSITIVITY = 0.70

#: What the ``probability`` of a detection finding is worth (shown beside it in the report).
_SCORE_NOTE = (
    "detection score of the model's box classifier, not a calibrated probability; the "
    "operating threshold was chosen on validation for a false-positive rate per image"
)


def detector_weakness(spec: Any, level: float = WEAK_SENSITIVITY) -> str | None:
    """Why a detector is weak (a phrase), or ``None`` when its validated bound clears ``level``.

    Uses the sensitivity at 1 FP/image of the test split when measured, else validation; a
    detector with no such metric is weak (nothing shows what its boxes are worth).

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> m = NS(name="sensitivity@1fp", value=0.47, ci_low=0.25, ci_high=0.69, split="test")
    >>> detector_weakness(NS(metrics=[m]))
    'sensitivity at 1 false positive per image 0.47 (95% CI 0.25 to 0.69, test split)'
    >>> detector_weakness(NS(metrics=[]))
    'no validated sensitivity recorded'
    """
    found = [m for m in spec.metrics if m.name == "sensitivity@1fp"]
    if not found:
        return "no validated sensitivity recorded"
    best = next((m for m in found if m.split == "test"), found[0])
    low = best.ci_low if best.ci_low is not None else best.value
    if low >= level:
        return None
    ci = (
        f" (95% CI {best.ci_low:.2f} to {best.ci_high:.2f}, {best.split} split)"
        if best.ci_low is not None and best.ci_high is not None
        else f" ({best.split} split)"
    )
    return f"sensitivity at 1 false positive per image {best.value:.2f}{ci}"


def region_measurements(region: Region, spacing: Any | None) -> tuple[Measurement, ...]:
    """The size of ``region`` as coded measurements (mm with ``spacing``, else pixels).

    A circle / sphere (an ellipse of equal extents) gives its diameter; an ellipse its long
    and short in-plane axes (and depth in 3D); a box its width (``i``), height (``j``) and
    depth (``k``).

    Examples
    --------
    >>> [str(m) for m in region_measurements(Region((5, 5), (10, 10), "ellipse"), (0.5, 0.5))]
    ['Diameter: 5 mm']
    >>> [str(m) for m in region_measurements(Region((5, 5), (4, 6)), None)]
    ['Width: 4 pixels', 'Height: 6 pixels']
    """
    unit = MILLIMETER if spacing is not None else PIXELS
    scale = np.asarray(spacing, dtype=float)[: region.ndim] if spacing is not None else 1.0
    extent = np.asarray(region.size, dtype=float) * scale
    where = "in mm" if spacing is not None else "pixel spacing unknown"

    def m(concept: Code, value: float) -> Measurement:
        return Measurement(concept, round(float(value), 3), unit, qualifier=where)

    if region.shape == "ellipse":
        if np.allclose(extent, extent[0], rtol=1e-3):
            return (m(DIAMETER, extent[0]),)
        inplane = extent[:2]
        out = [m(LONG_AXIS, inplane.max()), m(SHORT_AXIS, inplane.min())]
    else:
        out = [m(WIDTH, extent[0]), m(HEIGHT, extent[1])]
    if region.ndim == 3:
        out.append(m(DEPTH, extent[2]))
    return tuple(out)


def analyze_detection(
    package: ModelPackage, image: Image, options: RunOptions | None = None
) -> ModelOutput:
    """Detect lesions in ``image`` (already inside the package's intended use) as Findings."""
    from medsight.inference.cache import cached_model
    from medsight.inference.detect import Detector
    from medsight.models.plausibility import assess, input_statistics
    from medsight.reporting.detection_marks import render_detections
    from medsight.transforms.preprocess import to_network_input

    spec = package.spec
    threshold = spec.thresholds.get("score")
    if threshold is None:
        return ModelOutput([]).withhold(
            f"model {package.id} stores no operating score threshold (thresholds.score, chosen "
            "on validation): its detections have no validated decision"
        )
    known = spacing_known(image)
    plaus = assess(
        input_statistics(to_network_input(image, spec.preprocessing)),
        spec.extra.get("input_reference"),
        spacing=image.spacing.tolist() if known else None,
        reference_spacing=(spec.training_data.spacing_median if spec.training_data else None),
    )
    detections = cached_model(Detector, package).detect(image, min_score=float(threshold))
    labels = {lab.index: lab for lab in spec.labels}
    site = spec.extra.get("finding_site")
    spacing = image.spacing.tolist() if known else None
    findings = []
    weak = detector_weakness(spec)
    reliability = _SCORE_NOTE + (f"; weak model: {weak}" if weak else "")
    unnamed = sorted({d.label for d in detections} - set(labels))
    if unnamed:  # a class the package does not name: never guess its meaning
        return ModelOutput([], plausibility=plaus).withhold(
            f"model {package.id} returned classes {unnamed} that its labels do not name"
        )
    for n, det in enumerate(sorted(detections, key=lambda d: -d.score), start=1):
        lab = labels[det.label]
        findings.append(
            Finding(
                finding=label_code(lab, package),
                model_id=spec.name,
                model_version=spec.version,
                kind=FindingKind.DETECTION,
                probability=float(np.clip(det.score, 0.0, 1.0)),
                positive=True,
                measurements=region_measurements(det.region, spacing),
                site=Code(**site) if site else None,
                source=image.source,
                note=f"{lab.name} #{n}",
                significance=lab.significance,
                urgency=lab.urgency,
                reliability=reliability,
                weak_model=weak is not None,
                region=det.region,
            )
        )
    colours = {label_code(lab, package).meaning: lab.color for lab in spec.labels if lab.color}
    picture = render_detections(image, findings, colours=colours)
    return ModelOutput(
        findings,
        plausibility=plaus,
        probabilities={f.note: float(f.probability or 0.0) for f in findings},
        picture=picture,
    )
