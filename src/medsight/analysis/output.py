"""What one package produced on one image (:class:`ModelOutput`) and the helpers every
family's findings builder shares: coded label concepts, the reporting rank of a label, and the
out-of-distribution check on the network's own features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from numpy.typing import NDArray

from medsight.core.codes import Code
from medsight.core.findings import Finding
from medsight.core.image import Image
from medsight.core.significance import Significance
from medsight.models.ood import OodReference
from medsight.models.package import ModelPackage
from medsight.models.plausibility import Plausibility
from medsight.models.spec import LabelSpec

__all__ = ["ModelOutput", "RunOptions", "label_code", "ood_check", "report_rank"]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Inference options of ``analyze``; each family reads the ones it uses.

    ``explain``: a heat map for classifiers (Grad-CAM).  ``tta``: mirror test-time
    augmentation for segmentation (the mean over every flip of the spatial axes).
    ``attributes``: what the caller knows about the case (e.g. ``{"sex": "F"}`` from the
    record); a classifier with per-group thresholds uses them only for a group named here.
    ``clinical``: the patient's :class:`~medsight.clinical.context.ClinicalContext` (read from
    FHIR and matched to the study's patient, :mod:`medsight.analysis.record`), or ``None``.
    """

    explain: bool = True
    tta: bool = False
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    clinical: Any = None


@dataclasses.dataclass
class ModelOutput:
    """What one package produced on one image."""

    findings: list[Finding]
    mask: Image | None = None
    heatmap: Image | None = None
    probabilities: dict[str, float] = dataclasses.field(default_factory=dict)
    plausibility: Plausibility | None = None
    #: Reasons the output is withheld (outside the intended use, unlike the training data on
    #: the network's own features, or a calibration that maps every image to one probability).
    #: When set, ``findings``, ``mask`` and ``heatmap`` are empty: nothing of a withheld
    #: output reaches a report, SR, FHIR or the worklist.
    withheld: tuple[str, ...] = ()
    ood_score: float | None = None
    ood_threshold: float | None = None
    #: An image the model derived from its input (denoising: the denoised image), same grid.
    derived: Image | None = None
    #: The family's own evidence picture (rows, columns, RGB), shown instead of the contour /
    #: heat-map overlay (detection: the image with its numbered, scored marks).
    picture: NDArray[Any] | None = None

    def withhold(self, *reasons: str) -> ModelOutput:
        """The same output with every finding and picture removed, and the reasons kept."""
        return dataclasses.replace(
            self,
            findings=[],
            mask=None,
            heatmap=None,
            derived=None,
            picture=None,
            probabilities={},
            withheld=(*self.withheld, *reasons),
        )


def label_code(label: LabelSpec, package: ModelPackage) -> Code:
    """The label's coded concept, or a private code naming the model and label."""
    return label.code or Code(f"{package.spec.name}-{label.index}", "99MEDSIGHT", label.name)


def report_rank(label: LabelSpec) -> int:
    """Actionable 2, unknown meaning 1, normal / benign / anatomy 0."""
    if label.significance is Significance.ACTIONABLE:
        return 2
    return 0 if label.significance is not None and label.significance.dismissible else 1


def _ood_reference(package: ModelPackage) -> OodReference | None:
    meta = package.spec.extra.get("ood")
    return OodReference.load(package.path, meta) if meta else None


def ood_check(output: ModelOutput, package: ModelPackage, features: NDArray[Any] | None) -> None:
    """Score the features against the package's reference; withhold above its threshold."""
    ref = _ood_reference(package)
    if ref is None or features is None:
        return
    score = float(ref.score(features)[0])
    output.ood_score, output.ood_threshold = score, ref.threshold
    if score > ref.threshold:
        output.withheld = (
            *output.withheld,
            f"the image is unlike the model's training data on its own features (OOD score "
            f"{score:.3g} above the threshold {ref.threshold:.3g}, set to reject "
            f"{ref.false_rejection_rate:.0%} of held-out in-distribution images)",
        )
