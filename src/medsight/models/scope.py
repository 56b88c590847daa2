"""Is this input inside the model's intended use?  Reasons to withhold, before any prediction.

The series selection (:mod:`medsight.analysis.selection`) already matches modality,
dimensionality, channels and body part from the headers.  This module checks what only the
loaded pixels and the full header tell, against the package's :class:`InputSpec`:

* **colour content** for models trained on grey-scale images (``grey_only``): an ultrasound with
  a colour or power Doppler overlay, a photograph, a screen capture with colour graphics.  Also
  declared colour-flow / spectral Doppler regions in the Sequence of Ultrasound Regions, and
  palette-colour images;
* the **photometric interpretation** (``photometric``) where the package lists the allowed ones;
* the **image size** against ``min_size`` / ``max_size`` (a whole-brain MR fed to a model made
  for hippocampus crops; a thumbnail fed to a model that needs detail).

One reason comes from the package itself, whatever the image (:func:`package_problems`): a
classifier whose stored calibration maps every input to the same probability
(:func:`medsight.models.calibration.is_constant_map`) cannot rank cases, so a "finding" it
reports would be the same for every patient.

Each problem is one sentence that says what was found and what the model is made for; the
analysis withholds the model's output when there is any.

Examples
--------
>>> from medsight.core.image import Image
>>> from medsight.models.spec import InputSpec
>>> grey = np.tile(np.linspace(0, 255, 64), (64, 1))
>>> rgb = np.repeat(grey[..., None], 3, axis=-1)
>>> spec = InputSpec(modalities=["US"], spatial_ndim=2, grey_only=True)
>>> scope_problems(spec, Image(rgb, spatial_ndim=2))
[]
>>> rgb[10:30, 10:30] = (255, 120, 0)                   # an orange Doppler blob
>>> scope_problems(spec, Image(rgb, spatial_ndim=2))[0][:47]
'the image holds colour (9.8% of pixels strongly'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsight.core.image import Image
from medsight.models.calibration import constant_outputs, is_constant_map
from medsight.models.spec import InputSpec, ModelSpec, Task

__all__ = [
    "COLOUR_FRACTION_LIMIT",
    "colour_fraction",
    "package_problems",
    "scope_problems",
    "size_problems",
]

#: Share of strongly coloured pixels above which a grey-scale model does not read an image.
COLOUR_FRACTION_LIMIT = 0.01
#: Saturation (max - min over R, G, B, relative to the image's 1-99% range) called "strong".
_STRONG = 0.15
#: Ultrasound RegionDataType values that are Doppler, not tissue (DICOM PS3.3 C.8.5.5.1.2).
_DOPPLER_REGIONS = {
    2: "colour flow Doppler",
    3: "pulsed-wave spectral Doppler",
    4: "continuous-wave spectral Doppler",
    5: "Doppler mean trace",
    6: "Doppler mode trace",
    7: "Doppler max trace",
    8: "volume trace",
}


def colour_fraction(image: Image) -> float:
    """Share of pixels whose R, G, B differ strongly (0 for grey-scale images).

    Examples
    --------
    >>> colour_fraction(Image(np.zeros((8, 8)), spatial_ndim=2))
    0.0
    """
    if not image.has_channels or image.n_channels < 3:
        return 0.0
    arr = np.asarray(image.array, dtype=np.float32)[..., :3]
    lo, hi = np.percentile(arr, [1, 99])
    span = max(float(hi - lo), 1e-6)
    saturation = (arr.max(axis=-1) - arr.min(axis=-1)) / span
    return float(np.mean(saturation > _STRONG))


def _header_problems(spec: InputSpec, header: Mapping[str, Any] | None) -> list[str]:
    if header is None:
        return []
    problems = []
    photometric = str(header.get("PhotometricInterpretation", "") or "").upper()
    if spec.photometric and photometric and photometric not in spec.photometric:
        problems.append(
            f"photometric interpretation {photometric} is not one the model reads "
            f"({', '.join(spec.photometric)})"
        )
    if spec.grey_only:
        if photometric == "PALETTE COLOR":
            problems.append(
                "the image is palette colour (typically a Doppler or parametric map); the model "
                "reads grey-scale images only"
            )
        kinds = sorted(
            {
                _DOPPLER_REGIONS[int(item.get("RegionDataType", 0) or 0)]
                for item in header.get("SequenceOfUltrasoundRegions", None) or []
                if int(item.get("RegionDataType", 0) or 0) in _DOPPLER_REGIONS
            }
        )
        if kinds:
            problems.append(
                f"the ultrasound regions include {', '.join(kinds)}; the model reads grey-scale "
                "B-mode images only"
            )
    return problems


#: Tasks whose findings are calibrated probabilities (their ``calibration`` is applied).
_CALIBRATED_TASKS = (Task.BINARY, Task.MULTICLASS, Task.ORDINAL, Task.MULTILABEL)


def package_problems(spec: ModelSpec) -> list[str]:
    """Why the package itself cannot give a finding on any image (checked before any pixel).

    A classification package, or a binary-outcome risk package, whose calibration is a constant
    map (every output the same for every input; a multi-class map with only some scales at 0
    is not constant, see :func:`medsight.models.calibration.constant_outputs`).

    Examples
    --------
    >>> from medsight.models.spec import (ArchitectureSpec, CalibrationSpec, LabelSpec,
    ...     PreprocessingSpec)
    >>> spec = ModelSpec(name="m", version="1", task=Task.BINARY,
    ...     architecture=ArchitectureSpec(name="smallcnn"), input=InputSpec(spatial_ndim=2),
    ...     preprocessing=PreprocessingSpec(),
    ...     labels=[LabelSpec(index=0, name="no"), LabelSpec(index=1, name="yes")],
    ...     calibration=CalibrationSpec(method="vector", params={"scale": [0.0], "bias": [0.4]}))
    >>> package_problems(spec)[0].split(";")[0]
    "the model's calibration (vector) maps every image to p=0.599 for yes, 0.401 for no"
    """
    cal = spec.calibration
    task = spec.task
    if task is Task.RISK:
        # a binary-outcome risk model calibrates its logit as a binary classifier does (its
        # time-to-event variant reports the uncalibrated log hazard ratio)
        risk = spec.extra.get("risk")
        if not isinstance(risk, dict) or risk.get("survival"):
            return []
        task = Task.BINARY
    if task not in _CALIBRATED_TASKS or not is_constant_map(cal):
        return []
    assert cal is not None  # is_constant_map(None) is False
    values = constant_outputs(cal, task, len(spec.labels))
    # the label the report would show first: binary models put their positive class last
    labels = sorted(spec.labels, key=lambda lab: lab.index, reverse=task is Task.BINARY)
    probs = ", ".join(f"{values[lab.index]:.3g} for {lab.name}" for lab in labels)
    what = "every patient" if spec.task is Task.RISK else "every image"
    return [
        f"the model's calibration ({cal.method.value}) maps {what} to p={probs}; it "
        "cannot rank cases (see its model card); retrain with more data or without "
        "calibration"
    ]


def scope_problems(
    spec: InputSpec, image: Image, header: Mapping[str, Any] | None = None
) -> list[str]:
    """Why ``image`` (with its DICOM ``header``, if any) is outside ``spec``'s intended use."""
    problems = _header_problems(spec, header)
    if spec.grey_only and not any("palette" in p or "regions" in p for p in problems):
        share = colour_fraction(image)
        if share > COLOUR_FRACTION_LIMIT:
            problems.append(
                f"the image holds colour ({share:.1%} of pixels strongly coloured, e.g. a colour "
                "or power Doppler overlay or colour graphics); the model reads grey-scale images "
                "only"
            )
    problems += size_problems(spec, image.shape[: image.spatial_ndim])
    return problems


def size_problems(spec: InputSpec, shape: Sequence[int]) -> list[str]:
    """Why a matrix of ``shape`` (spatial axes) is outside ``spec``'s size range.

    A one-slice volume counts as 2D for a 2D model.  Used on loaded pixels and, before any
    pixel is read, on the DICOM header's matrix size (series selection).

    Examples
    --------
    >>> size_problems(InputSpec(spatial_ndim=2, max_size=[64, 64]), (80, 40, 1))[0][:31]
    'the image is 80 x 40 pixels, la'
    """
    size = [int(s) for s in shape]
    if len(size) == 3 and spec.spatial_ndim == 2 and size[2] == 1:
        size = size[:2]
    n = min(len(size), len(spec.min_size or size), len(spec.max_size or size))
    problems = []
    if spec.min_size and any(size[i] < spec.min_size[i] for i in range(n)):
        problems.append(
            f"the image is {' x '.join(map(str, size))} pixels, smaller than the model's minimum "
            f"{' x '.join(map(str, spec.min_size))}"
        )
    if spec.max_size and any(size[i] > spec.max_size[i] for i in range(n)):
        problems.append(
            f"the image is {' x '.join(map(str, size))} pixels, larger than the model is made "
            f"for (at most {' x '.join(map(str, spec.max_size))}; e.g. a whole scan where the "
            "model expects a crop)"
        )
    return problems
