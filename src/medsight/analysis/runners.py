"""Running one package on one Image: predictions turned into Findings plus evidence images.

Classification packages give one Finding per reported label (the positive class of a binary
model, the predicted grade or class of an ordinal / multi-class model, every label of a
multi-label model) with its calibrated probability and the decision at the package's operating
threshold, and a Grad-CAM heatmap for it.  A binary model reports its actionable class (a label
of unknown meaning otherwise, else the last), whatever its index: BreastMNIST's class 0 is
"malignant".  Segmentation packages give one Finding per label present in the mask, with its
measurements.  Findings carry their label's clinical meaning (significance, urgency).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.codes import Code
from medsight.core.errors import InvalidInputError
from medsight.core.findings import Finding, FindingKind
from medsight.core.image import Image, spacing_known
from medsight.core.significance import Significance
from medsight.models.ood import OodReference
from medsight.models.package import ModelPackage
from medsight.models.plausibility import Plausibility, assess, input_statistics
from medsight.models.spec import LabelSpec, Task

__all__ = ["ModelOutput", "run_package"]


@dataclasses.dataclass
class ModelOutput:
    """What one package produced on one image."""

    findings: list[Finding]
    mask: Image | None = None
    heatmap: Image | None = None
    probabilities: dict[str, float] = dataclasses.field(default_factory=dict)
    plausibility: Plausibility | None = None
    #: Reasons the output is withheld (outside the intended use, or unlike the training data
    #: on the network's own features).  When set, ``findings``, ``mask`` and ``heatmap`` are
    #: empty: nothing of a withheld output reaches a report, SR, FHIR or the worklist.
    withheld: tuple[str, ...] = ()
    ood_score: float | None = None
    ood_threshold: float | None = None

    def withhold(self, *reasons: str) -> ModelOutput:
        """The same output with every finding and picture removed, and the reasons kept."""
        return dataclasses.replace(
            self,
            findings=[],
            mask=None,
            heatmap=None,
            probabilities={},
            withheld=(*self.withheld, *reasons),
        )


def _label_code(label: LabelSpec, package: ModelPackage) -> Code:
    return label.code or Code(f"{package.spec.name}-{label.index}", "99MEDSIGHT", label.name)


def _report_rank(label: LabelSpec) -> int:
    """Actionable 2, unknown meaning 1, normal / benign / anatomy 0."""
    if label.significance is Significance.ACTIONABLE:
        return 2
    return 0 if label.significance is not None and label.significance.dismissible else 1


def _ood_reference(package: ModelPackage) -> OodReference | None:
    meta = package.spec.extra.get("ood")
    return OodReference.load(package.path, meta) if meta else None


def _ood_check(output: ModelOutput, package: ModelPackage, features: NDArray[Any] | None) -> None:
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


def _classification(package: ModelPackage, image: Image, explain: bool) -> ModelOutput:
    import torch

    from medsight.explain import explain_classifier
    from medsight.inference.classify import Predictor
    from medsight.inference.features import capture
    from medsight.models.reliability import is_weak, reliability_statement

    spec = package.spec
    predictor = Predictor(package)
    x = predictor.preprocess(image)
    plaus = assess(input_statistics(x), spec.extra.get("input_reference"))
    with capture(predictor.network, "classifier") as grab:
        proba = predictor.predict_arrays(x[None])[0]
    features = grab.vectors()
    decision = predictor.decide(proba[None])[0]
    labels = sorted(spec.labels, key=lambda lab: lab.index)
    if spec.task is Task.BINARY:  # the class worth reporting: actionable first, else the last
        target = max(labels, key=lambda lab: (_report_rank(lab), lab.index))
        reported = [(target, bool(decision == target.index))]
    elif spec.task is Task.MULTILABEL:
        reported = [(lab, bool(decision[lab.index])) for lab in labels]
    else:  # multi-class / ordinal: the predicted class or grade
        reported = [(labels[int(decision)], True)]
    site = spec.extra.get("finding_site")
    findings = [
        Finding(
            finding=_label_code(lab, package),
            model_id=spec.name,
            model_version=spec.version,
            kind=FindingKind.CLASSIFICATION,
            probability=float(proba[lab.index]),
            positive=positive,
            site=Code(**site) if site else None,
            source=image.source,
            note=lab.name,
            significance=lab.significance,
            urgency=lab.urgency,
            reliability=reliability_statement(spec, float(proba[lab.index]), lab.index),
            weak_model=is_weak(spec),
        )
        for lab, positive in reported
    ]
    heat = None
    if explain:  # explain the first reported label's output unit
        tensor = torch.from_numpy(np.ascontiguousarray(x))[None]
        heat = explain_classifier(predictor.network, tensor, image, reported[0][0].index)
    probabilities = {lab.name: float(proba[lab.index]) for lab in labels}
    output = ModelOutput(findings, heatmap=heat, probabilities=probabilities, plausibility=plaus)
    _ood_check(output, package, features)
    return output


def _segmentation(package: ModelPackage, image: Image, tta: bool = False) -> ModelOutput:
    from medsight.clinical.measurements import measure_mask
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
    result = Segmenter(package, tta=tta)(image, features=True)
    mask = result.mask
    findings = []
    values = set(np.unique(np.asarray(mask.array)).tolist())
    for lab in sorted(spec.labels, key=lambda lab: lab.index):
        if lab.index == 0 or lab.index not in values:
            continue
        findings.append(
            Finding(
                finding=_label_code(lab, package),
                model_id=spec.name,
                model_version=spec.version,
                kind=FindingKind.SEGMENTATION,
                measurements=measure_mask(mask, {lab.index: lab.name})[0].measurements(),
                site=lab.code,
                segment_number=lab.index,
                source=image.source,
                note=lab.name,
                significance=lab.significance,
                urgency=lab.urgency,
            )
        )
    output = ModelOutput(findings, mask=mask, plausibility=plaus)
    _ood_check(output, package, result.features)
    return output


def run_package(
    package: ModelPackage,
    image: Image,
    *,
    explain: bool = True,
    colour_to_grey: bool = True,
    tta: bool = False,
    header: Mapping[str, Any] | None = None,
) -> ModelOutput:
    """Run ``package`` on ``image``, inside its intended use only.

    The output is *withheld* (:attr:`ModelOutput.withheld` holds why; no finding, mask or
    heatmap) when the image is outside the package's intended use
    (:func:`medsight.models.scope.scope_problems`: colour content for a grey-scale model,
    photometric interpretation, size), in which case the network does not run, or when its
    features are further from the training data than the package's OOD threshold.

    Parameters
    ----------
    header : mapping, optional
        The DICOM header of the series (photometric interpretation, ultrasound regions).
    tta : bool
        Segmentation: mirror test-time augmentation (the mean over every flip of the spatial
        axes; 4 passes in 2D, 8 in 3D).
    colour_to_grey : bool
        Allow a colour image to be converted to grey for a grey-scale model (only when the
        modality is known to fit, e.g. an ultrasound stored as RGB).

    Raises
    ------
    InvalidInputError
        The image does not fit the package (dimensionality, channels).
    """
    from medsight.models.scope import scope_problems

    spec = package.spec
    outside = scope_problems(spec.input, image, header)
    if outside:
        return ModelOutput([], withheld=tuple(outside))
    single_slice = image.spatial_ndim == 3 and image.shape[2] == 1 and spec.input.spatial_ndim == 2
    work = _as_2d(image) if single_slice else image
    converted = spec.input.channels == 1 and work.n_channels == 3
    if converted and not colour_to_grey:
        raise InvalidInputError(
            "image",
            f"is a colour image of unknown modality; model {package.id} takes grey-scale "
            f"{', '.join(spec.input.modalities) or ''} images",
        )
    if converted:
        work = _luminance(work)
    if work.spatial_ndim != spec.input.spatial_ndim:
        raise InvalidInputError(
            f"model {package.id}",
            f"needs {spec.input.spatial_ndim}D input, the image is {image.spatial_ndim}D",
        )
    if spec.task is Task.SEGMENTATION:
        output = _segmentation(package, work, tta)
    else:
        output = _classification(package, work, explain)
    if converted and output.plausibility is not None:
        note = "the colour image was converted to grey (luminance) for this grey-scale model"
        output.plausibility = dataclasses.replace(
            output.plausibility, warnings=(note, *output.plausibility.warnings)
        )
    if single_slice:  # put masks and maps back on the single-slice volume's grid
        output.mask = _as_3d(output.mask, image)
        output.heatmap = _as_3d(output.heatmap, image)
    return output.withhold() if output.withheld else output


def _luminance(image: Image) -> Image:
    """RGB -> grey with the ITU-R BT.601 weights (what DICOM YBR and most viewers use)."""
    arr = np.asarray(image.array, dtype=np.float32)
    grey = arr[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return image.with_array(grey)


def _as_2d(image: Image) -> Image:
    """A one-slice volume as a 2D Image (same affine)."""
    arr = np.asarray(image.array)
    return image.with_array(arr[:, :, 0], spatial_ndim=2)


def _as_3d(result: Image | None, like: Image) -> Image | None:
    if result is None:
        return None
    return like.with_array(np.asarray(result.array)[:, :, None], meta=result.meta)
