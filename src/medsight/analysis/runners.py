"""Running one package on one Image: predictions turned into Findings plus evidence images.

Classification packages give one Finding per reported label (the positive class of a binary
model, the predicted grade or class of an ordinal / multi-class model, every label of a
multi-label model) with its calibrated probability and the decision at the package's operating
threshold, and a Grad-CAM heatmap for it.  Segmentation packages give one Finding per label
present in the mask, with its measurements.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from medsight.core.codes import Code
from medsight.core.errors import InvalidInputError
from medsight.core.findings import Finding, FindingKind
from medsight.core.image import Image
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


def _label_code(label: LabelSpec, package: ModelPackage) -> Code:
    return label.code or Code(f"{package.spec.name}-{label.index}", "99MEDSIGHT", label.name)


def _classification(package: ModelPackage, image: Image, explain: bool) -> ModelOutput:
    import torch

    from medsight.explain import explain_classifier
    from medsight.inference.classify import Predictor

    spec = package.spec
    predictor = Predictor(package)
    x = predictor.preprocess(image)
    plaus = assess(input_statistics(x), spec.extra.get("input_reference"))
    proba = predictor.predict_arrays(x[None])[0]
    decision = predictor.decide(proba[None])[0]
    labels = sorted(spec.labels, key=lambda lab: lab.index)
    if spec.task is Task.BINARY:
        reported = [(labels[-1], bool(decision == labels[-1].index))]
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
        )
        for lab, positive in reported
    ]
    heat = None
    if explain:  # explain the first reported label's output unit
        tensor = torch.from_numpy(np.ascontiguousarray(x))[None]
        heat = explain_classifier(predictor.network, tensor, image, reported[0][0].index)
    probabilities = {lab.name: float(proba[lab.index]) for lab in labels}
    return ModelOutput(findings, heatmap=heat, probabilities=probabilities, plausibility=plaus)


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
        spacing=image.spacing.tolist(),
        reference_spacing=(spec.training_data.spacing_median if spec.training_data else None),
    )
    result = Segmenter(package, tta=tta)(image)
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
            )
        )
    return ModelOutput(findings, mask=mask, plausibility=plaus)


def run_package(
    package: ModelPackage,
    image: Image,
    *,
    explain: bool = True,
    colour_to_grey: bool = True,
    tta: bool = False,
) -> ModelOutput:
    """Run ``package`` on ``image``.

    Parameters
    ----------
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
    spec = package.spec
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
    return output


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
