"""`Case`: one patient examination as a data set sees it.

A Case holds images by role (``"image"``, ``"t1"``, ``"flair"`` ...), an optional label (a class
index, several class indices, a mask Image, boxes), clinical attributes (age, sex, site, view,
outcome ...) and the split it belongs to.  Images may be given lazily, as a zero-argument
callable that reads them, so a data set of thousands of Cases costs no pixel memory until used.

Examples
--------
>>> import numpy as np
>>> from medsight.core.image import Image
>>> case = Case("c1", patient_id="p1", images={"image": Image(np.zeros((4, 4)))},
...             label=1, attributes={"sex": "F"}, split=Split.TRAIN)
>>> case.image().shape, case.label, case.split
((4, 4), 1, <Split.TRAIN: 'train'>)
>>> lazy = Case("c2", images={"image": lambda: Image(np.ones((2, 2)))})
>>> float(lazy.image().array.sum())
4.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image

__all__ = ["Box", "Case", "ImageSource", "Split"]

#: An Image, or a zero-argument callable that reads one when it is needed.
ImageSource = Image | Callable[[], Image]


class Split(StrEnum):
    """Which part of a data set a Case belongs to."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"


@dataclasses.dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel indices ``(i0, j0, i1, j1)`` with a class label.

    Examples
    --------
    >>> Box(1, 2, 11, 22, "lung_right").area
    200.0
    """

    i0: float
    j0: float
    i1: float
    j1: float
    label: str

    def __post_init__(self) -> None:
        if self.i1 < self.i0 or self.j1 < self.j0:
            raise InvalidInputError("box", f"corners ({self.i0}, {self.j0}, {self.i1}, {self.j1})")

    @property
    def area(self) -> float:
        """Area in pixels."""
        return float((self.i1 - self.i0) * (self.j1 - self.j0))


@dataclasses.dataclass(frozen=True)
class Case:
    """One case of a data set.

    Parameters
    ----------
    case_id : str
        Unique within its data set.
    patient_id : str, optional
        Used for patient-level splits; defaults to ``case_id``.
    images : mapping of role to Image or loader
    label : int, tuple of int, Image, callable, tuple of Box or None
        Class index, several indices (multi-label), a mask Image (or a zero-argument callable
        reading it, see :meth:`mask`) or boxes.
    attributes : mapping
        Clinical attributes (age, sex, site, view, outcome ...).
    split : Split or str, optional
    """

    case_id: str
    patient_id: str | None = None
    images: Mapping[str, ImageSource] = dataclasses.field(default_factory=dict)
    label: int | tuple[int, ...] | Image | Callable[[], Image] | tuple[Box, ...] | None = None
    attributes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    split: Split | None = None

    def __post_init__(self) -> None:
        if not self.case_id:
            raise InvalidInputError("case_id", "must be a non-empty string")
        if self.patient_id is None:
            object.__setattr__(self, "patient_id", self.case_id)
        if self.split is not None and not isinstance(self.split, Split):
            try:
                object.__setattr__(self, "split", Split(str(self.split).lower()))
            except ValueError:
                raise InvalidInputError(
                    f"case {self.case_id}: split",
                    f"{self.split!r} is not one of {[s.value for s in Split]}",
                ) from None
        object.__setattr__(self, "images", MappingProxyType(dict(self.images)))
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))

    @property
    def roles(self) -> tuple[str, ...]:
        """The image roles, in insertion order."""
        return tuple(self.images)

    def image(self, role: str | None = None) -> Image:
        """The Image for ``role`` (the only or first role when omitted), reading it if lazy."""
        if not self.images:
            raise InvalidInputError(f"case {self.case_id}", "has no images")
        key = role if role is not None else next(iter(self.images))
        try:
            source = self.images[key]
        except KeyError:
            raise InvalidInputError(
                f"case {self.case_id}", f"no image with role {key!r}; roles are {self.roles}"
            ) from None
        return source if isinstance(source, Image) else source()

    def mask(self) -> Image | None:
        """The label mask, reading it if it is lazy; None when the label is not a mask.

        Examples
        --------
        >>> import numpy as np
        >>> Case("m", label=lambda: Image(np.ones((2, 2), np.uint8))).mask().shape
        (2, 2)
        >>> Case("c", label=1).mask() is None
        True
        """
        if isinstance(self.label, Image):
            return self.label
        if callable(self.label):
            return self.label()
        return None

    def replace(self, **changes: Any) -> Case:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)
