"""Running one package on one Image, inside its intended use, through its task family.

:func:`run_package` applies what every family shares (the intended-use gate, a one-slice
volume as 2D, colour to grey for a grey-scale model) and hands the image to the findings
builder its family registers (:mod:`medsight.families`): :mod:`.classification` and
:mod:`.segmentation` for the built-in families.  Findings carry their label's clinical meaning
(significance, urgency); an output outside the intended use, unlike the training data, or of
a classifier whose calibration gives every image the same probability is withheld with its
reasons.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from medsight.analysis.output import ModelOutput, RunOptions
from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.families import family_for
from medsight.models.package import ModelPackage

__all__ = ["ModelOutput", "RunOptions", "run_package"]


def run_package(
    package: ModelPackage,
    image: Image,
    *,
    explain: bool = True,
    colour_to_grey: bool = True,
    tta: bool = False,
    header: Mapping[str, Any] | None = None,
    attributes: Mapping[str, str] | None = None,
    clinical: Any = None,
) -> ModelOutput:
    """Run ``package`` on ``image``, inside its intended use only.

    The output is *withheld* (:attr:`ModelOutput.withheld` holds why; no finding, mask or
    heatmap) when the image is outside the package's intended use
    (:func:`medsight.models.scope.scope_problems`: colour content for a grey-scale model,
    photometric interpretation, size) or the package cannot rank any case (a classifier whose
    calibration is a constant map: :func:`medsight.models.scope.package_problems`), in which
    case the network does not run, or when its features are further from the training data
    than the package's OOD threshold.

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
    attributes, clinical
        What the caller states about the patient (``RunOptions.attributes``) and the matched
        clinical record (``RunOptions.clinical``; see :mod:`medsight.analysis.record`).

    Raises
    ------
    InvalidInputError
        The image does not fit the package (dimensionality, channels).
    """
    from medsight.models.scope import package_problems, scope_problems

    spec = package.spec
    family = family_for(spec.task)
    outside = package_problems(spec) + scope_problems(spec.input, image, header)
    if outside:
        return ModelOutput([], withheld=tuple(outside))
    volume_slicewise = family.slicewise and spec.input.spatial_ndim == 2
    single_slice = (
        image.spatial_ndim == 3
        and image.shape[2] == 1
        and spec.input.spatial_ndim == 2
        and not volume_slicewise
    )
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
    if work.spatial_ndim != spec.input.spatial_ndim and not volume_slicewise:
        raise InvalidInputError(
            f"model {package.id}",
            f"needs {spec.input.spatial_ndim}D input, the image is {image.spatial_ndim}D",
        )
    analyze = family.load("analyze")
    run_options = RunOptions(
        explain=explain, tta=tta, attributes=dict(attributes or {}), clinical=clinical
    )
    output = analyze(package, work, run_options)
    if converted and output.plausibility is not None:
        note = "the colour image was converted to grey (luminance) for this grey-scale model"
        output.plausibility = dataclasses.replace(
            output.plausibility, warnings=(note, *output.plausibility.warnings)
        )
    if single_slice:  # put masks and maps back on the single-slice volume's grid
        output.mask = _as_3d(output.mask, image)
        output.heatmap = _as_3d(output.heatmap, image)
        output.derived = _as_3d(output.derived, image)
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
