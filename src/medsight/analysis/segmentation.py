"""The segmentation family's findings builder: a package and an Image -> a mask and Findings.

One Finding per label present in the mask, with its measurements (areas in mm2 or volumes in
mL when the pixel spacing is known, pixels otherwise) and the label's clinical meaning.
"""

from __future__ import annotations

import numpy as np

from medsight.analysis.output import ModelOutput, RunOptions, label_code, ood_check
from medsight.core.findings import Finding, FindingKind
from medsight.core.image import Image, spacing_known
from medsight.core.significance import Significance
from medsight.models.package import ModelPackage
from medsight.models.plausibility import assess, input_statistics

__all__ = ["analyze_segmentation"]


def analyze_segmentation(
    package: ModelPackage, image: Image, options: RunOptions | None = None
) -> ModelOutput:
    """Segment ``image`` (already inside the package's intended use) into a mask and Findings."""
    options = options or RunOptions()
    from medsight.clinical.measurements import measure_mask
    from medsight.inference.cache import cached_model
    from medsight.inference.segment import Segmenter
    from medsight.transforms.preprocess import normalize_intensity

    spec = package.spec
    arr = np.asarray(image.array, dtype=np.float32)
    x = np.moveaxis(arr, -1, 0) if image.has_channels else arr[None]
    plaus = assess(
        input_statistics(normalize_intensity(x, spec.preprocessing)),
        spec.extra.get("input_reference"),
        spacing=image.spacing.tolist() if spacing_known(image) else None,  # pixels: no mm
        reference_spacing=(spec.training_data.spacing_median if spec.training_data else None),
    )
    result = cached_model(Segmenter, package, tta=options.tta)(image, features=True)
    mask = result.mask
    findings = []
    values = set(np.unique(np.asarray(mask.array)).tolist())
    for lab in sorted(spec.labels, key=lambda lab: lab.index):
        if lab.index == 0 or lab.index not in values:
            continue
        findings.append(
            Finding(
                finding=label_code(lab, package),
                model_id=spec.name,
                model_version=spec.version,
                kind=FindingKind.SEGMENTATION,
                measurements=measure_mask(mask, {lab.index: lab.name})[0].measurements(
                    anatomy=lab.significance is Significance.ANATOMY
                ),
                site=lab.code,
                segment_number=lab.index,
                source=image.source,
                note=lab.name,
                significance=lab.significance,
                urgency=lab.urgency,
            )
        )
    output = ModelOutput(findings, mask=mask, plausibility=plaus)
    ood_check(output, package, result.features)
    return output
