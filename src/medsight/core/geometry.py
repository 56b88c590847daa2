"""Small geometry helpers for 4x4 affines in LPS patient coordinates (numpy only).

The convention throughout medsight is the one DICOM and ITK use: an affine maps a voxel index
``(i, j, k, 1)`` (``i`` along the array's first axis, i.e. the image column in DICOM terms) to a
point in millimetres in the patient's LPS frame (x towards the patient's Left, y towards
Posterior, z towards Superior).  nibabel and NIfTI use RAS; :data:`LPS_TO_RAS` converts.

Examples
--------
>>> import numpy as np
>>> affine = affine_from_parts(spacing=(0.5, 0.5, 2.0), direction=np.eye(3), origin=(10, 20, 30))
>>> affine[:3, 3].tolist(), spacing_of(affine).tolist()
([10.0, 20.0, 30.0], [0.5, 0.5, 2.0])
>>> orientation_code(affine)
'LPS'
>>> orientation_code(LPS_TO_RAS @ affine, space="RAS")
'LPS'
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medsight.core.errors import GeometryError

__all__ = [
    "LPS_TO_RAS",
    "affine_from_parts",
    "direction_of",
    "obliquity_degrees",
    "orientation_code",
    "spacing_of",
]

#: Flips x and y: converts an LPS affine to RAS and back (it is its own inverse).
LPS_TO_RAS: NDArray[np.float64] = np.diag([-1.0, -1.0, 1.0, 1.0])
LPS_TO_RAS.setflags(write=False)

_POSITIVE_LPS = ("L", "P", "S")
_NEGATIVE_LPS = ("R", "A", "I")


def affine_from_parts(
    spacing: Sequence[float] | ArrayLike,
    direction: ArrayLike,
    origin: Sequence[float] | ArrayLike,
) -> NDArray[np.float64]:
    """Build a 4x4 affine from spacing (per axis), a 3x3 direction (columns) and an origin.

    Parameters
    ----------
    spacing : sequence of float
        Distance in mm between neighbouring voxels along each array axis (2 or 3 values; a
        missing third value is taken as 1).
    direction : array_like, shape (3, 3) or (2, 2)
        Unit vectors of the array axes as columns, in LPS.
    origin : sequence of float
        Position in mm of the centre of voxel ``(0, 0, 0)``.

    Returns
    -------
    numpy.ndarray
        The 4x4 affine.

    Examples
    --------
    >>> affine_from_parts((2, 3), [[1, 0], [0, 1]], (0, 0)).diagonal().tolist()
    [2.0, 3.0, 1.0, 1.0]
    """
    spacing_v = np.ones(3)
    given = np.asarray(spacing, dtype=float).ravel()
    spacing_v[: given.size] = given
    d = np.asarray(direction, dtype=float)
    dir3 = np.eye(3)
    dir3[: d.shape[0], : d.shape[1]] = d
    org = np.zeros(3)
    o = np.asarray(origin, dtype=float).ravel()
    org[: o.size] = o
    affine = np.eye(4)
    affine[:3, :3] = dir3 * spacing_v[np.newaxis, :]
    affine[:3, 3] = org
    return affine


def spacing_of(affine: ArrayLike) -> NDArray[np.float64]:
    """Voxel spacing (length of each of the first three columns) of a 4x4 affine.

    Examples
    --------
    >>> spacing_of(np.diag([-2.0, 3.0, 4.0, 1.0])).tolist()
    [2.0, 3.0, 4.0]
    """
    a = np.asarray(affine, dtype=float)
    return np.linalg.norm(a[:3, :3], axis=0)


def direction_of(affine: ArrayLike) -> NDArray[np.float64]:
    """Unit direction cosines (columns) of a 4x4 affine.

    Raises
    ------
    GeometryError
        If an axis has zero length.

    Examples
    --------
    >>> direction_of(np.diag([-2.0, 3.0, 4.0, 1.0])).diagonal().tolist()
    [-1.0, 1.0, 1.0]
    """
    a = np.asarray(affine, dtype=float)
    sp = spacing_of(a)
    if np.any(sp <= 0) or not np.all(np.isfinite(a)):
        raise GeometryError("affine", f"degenerate affine with spacing {sp.tolist()}")
    return a[:3, :3] / sp[np.newaxis, :]


def orientation_code(affine: ArrayLike, space: str = "LPS") -> str:
    """Three letters naming where each array axis points, e.g. ``'LPS'`` or ``'RAS'``.

    The letter of an axis is the anatomical direction its index increases towards (nibabel's
    ``aff2axcodes`` convention), taken from the largest component of its direction cosine.

    Parameters
    ----------
    affine : array_like, shape (4, 4)
        The affine.
    space : {"LPS", "RAS"}
        The patient frame the affine maps into.

    Examples
    --------
    >>> orientation_code(np.diag([1.0, 1.0, 1.0, 1.0]))
    'LPS'
    >>> orientation_code(np.diag([1.0, 1.0, 1.0, 1.0]), space="RAS")
    'RAS'
    >>> orientation_code([[0, 0, 1, 0], [1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    'PIL'
    """
    a = np.asarray(affine, dtype=float)
    if space.upper() == "RAS":
        a = LPS_TO_RAS @ a
    elif space.upper() != "LPS":
        raise ValueError(f"space must be 'LPS' or 'RAS', not {space!r}")
    d = direction_of(a)
    letters = []
    for col in range(3):
        v = d[:, col]
        axis = int(np.argmax(np.abs(v)))
        letters.append(_POSITIVE_LPS[axis] if v[axis] > 0 else _NEGATIVE_LPS[axis])
    return "".join(letters)


def obliquity_degrees(affine: ArrayLike) -> float:
    """Angle (degrees) between an affine's axes and the nearest axis-aligned orientation.

    The rotation angle of ``D @ P.T``, where ``D`` holds the unit direction cosines and ``P`` is
    the signed axis permutation nearest to it (the largest ``trace(P.T @ D)``): 0 for an
    axis-aligned image whatever its orientation code, the tilt for a series tilted about one
    axis.  Axes that are not orthogonal (a sheared grid) are measured after orthonormalising
    (polar decomposition).

    Examples
    --------
    >>> obliquity_degrees(np.diag([-0.5, 2.0, 3.0, 1.0]))
    0.0
    >>> t = np.radians(11.0)
    >>> tilted = np.eye(4)
    >>> tilted[1:3, 1:3] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    >>> round(obliquity_degrees(tilted), 6)
    11.0
    """
    d = direction_of(affine)
    u, _, vt = np.linalg.svd(d)
    rot = u @ vt  # the nearest orthonormal frame
    best = -np.inf
    for perm in itertools.permutations(range(3)):
        # best signs per axis: each column's entry at its permuted row, made positive
        best = max(best, float(sum(abs(rot[perm[c], c]) for c in range(3))))
    cos = (best - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
