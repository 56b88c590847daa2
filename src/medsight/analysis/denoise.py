"""The denoising family's findings builder: a package and an Image -> the denoised Image.

A denoiser makes no Findings; its output is :attr:`ModelOutput.derived`, the denoised image on
the input's grid (in the input's units, with its source references).  The modality gate of
:func:`medsight.inference.denoise.denoise_scope_problems` runs here too (``run_package``
already applied the shared intended-use gate): a CT image given to an MR denoiser is withheld
with the reason.  The plausibility check compares the scaled input with the statistics of the
noisy training inputs.
"""

from __future__ import annotations

import numpy as np

from medsight.analysis.output import ModelOutput, RunOptions
from medsight.core.image import Image
from medsight.models.package import ModelPackage
from medsight.models.plausibility import assess, input_statistics
from medsight.transforms.noise import scale_to_unit

__all__ = ["analyze_denoising"]


def analyze_denoising(
    package: ModelPackage, image: Image, options: RunOptions | None = None
) -> ModelOutput:
    """Denoise ``image``; no findings, the denoised image in ``derived``."""
    from medsight.inference.cache import cached_model
    from medsight.inference.denoise import Denoiser, denoise_scope_problems

    problems = denoise_scope_problems(package.spec, image)
    if problems:
        return ModelOutput([], withheld=tuple(problems))
    arr = np.asarray(image.array, dtype=np.float32)
    first = arr if arr.ndim == 2 or image.spatial_ndim == 2 else arr[:, :, arr.shape[2] // 2]
    plaus = assess(
        input_statistics(scale_to_unit(np.squeeze(first))[0]),
        package.spec.extra.get("input_reference"),
    )
    derived = cached_model(Denoiser, package)(image, check_scope=False)
    return ModelOutput([], plausibility=plaus, derived=derived)
