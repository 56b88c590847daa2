"""The synthesis family's findings builder: a synthesis model does not analyse patient images.

``analyze`` and the service run every package they are given on a patient's images; a
synthesis package only generates new images, so its output is always withheld with that
reason (never a finding, mask or heat map).
"""

from __future__ import annotations

from medsight.analysis.output import ModelOutput, RunOptions
from medsight.core.image import Image
from medsight.models.package import ModelPackage

__all__ = ["NOT_AN_ANALYSER", "analyze_synthesis"]

#: Why a synthesis package's output on a patient image is withheld.
NOT_AN_ANALYSER = "a synthesis model does not analyse patient images (it generates synthetic ones)"


def analyze_synthesis(
    package: ModelPackage, image: Image, options: RunOptions | None = None
) -> ModelOutput:
    """A withheld :class:`ModelOutput` naming why: synthesis models make images, not findings.

    Examples
    --------
    >>> import numpy as np
    >>> analyze_synthesis(None, Image(np.zeros((2, 2)))).withheld[0][:27]  # type: ignore[arg-type]
    'a synthesis model does not '
    """
    return ModelOutput([]).withhold(NOT_AN_ANALYSER)
