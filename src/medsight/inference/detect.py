"""Detection inference: lesions as boxes with a score and a class.

The contract every detection predictor keeps: ``Detector(package).detect(image)`` returns a
list of :class:`Detection` in the index space of ``image`` (the axes of
:class:`~medsight.core.image.Image`), highest score first.
"""

from __future__ import annotations

import dataclasses

from medsight.core.findings import Region

__all__ = ["Detection"]


@dataclasses.dataclass(frozen=True)
class Detection:
    """One detected lesion.

    Parameters
    ----------
    region : Region
        Box (or circle / sphere) in voxel index coordinates of the input image.
    score : float
        The model's confidence in [0, 1] (calibrated where the package says so).
    label : int
        Class index into the package's labels (0-based over the foreground classes).
    """

    region: Region
    score: float
    label: int = 0
