"""A data set split as preprocessed arrays in memory (small classification sets, MedMNIST).

Training and evaluation read the same :class:`CaseArrays`, built by :func:`case_arrays` with
the package's :class:`PreprocessingSpec`, so both see exactly what inference sees.

Examples
--------
>>> import numpy as np
>>> from medsight.core import Case, Image
>>> from medsight.models.spec import PreprocessingSpec
>>> cases = [Case(f"c{i}", images={"image": Image(np.full((4, 4), i, np.uint8))},
...               label=i % 2, attributes={"sex": "FM"[i % 2]}) for i in range(4)]
>>> arr = case_arrays(cases, PreprocessingSpec(), n_classes=2, multilabel=False)
>>> arr.x.shape, arr.y.tolist(), arr.attribute("sex")
((4, 1, 4, 4), [0, 1, 0, 1], ['F', 'M', 'F', 'M'])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core import Case, InvalidInputError
from medsight.models.spec import PreprocessingSpec
from medsight.transforms.preprocess import to_network_input

__all__ = ["CaseArrays", "case_arrays", "encode_label"]


@dataclasses.dataclass(frozen=True)
class CaseArrays:
    """Network inputs ``x`` ``(N, C, *spatial)``, labels ``y`` and per-case metadata.

    ``y`` holds class indices ``(N,)``, or an ``(N, K)`` indicator matrix for multi-label.
    """

    x: NDArray[np.float32]
    y: NDArray[np.int64]
    case_ids: list[str]
    patient_ids: list[str]
    attributes: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.case_ids)

    def attribute(self, name: str) -> list[Any]:
        """One attribute per case (None where a case lacks it)."""
        return [a.get(name) for a in self.attributes]


def encode_label(case: Case, n_classes: int, multilabel: bool) -> int | NDArray[np.int64]:
    """A Case's label as a class index, or an indicator vector for multi-label."""
    label = case.label
    if multilabel:
        ids = (label,) if isinstance(label, int) else label
        if not isinstance(ids, tuple) or not all(isinstance(i, int) for i in ids):
            raise InvalidInputError(f"case {case.case_id}: label", f"{label!r} is not class ids")
        vec = np.zeros(n_classes, np.int64)
        vec[list(ids)] = 1
        return vec
    if isinstance(label, tuple) and len(label) == 1:
        label = label[0]
    if not isinstance(label, int | np.integer) or not 0 <= int(label) < n_classes:
        raise InvalidInputError(
            f"case {case.case_id}: label",
            f"{label!r} is not a class index in 0..{n_classes - 1}",
            hint="classification needs an integer label on every case",
        )
    return int(label)


def case_arrays(
    cases: Sequence[Case], spec: PreprocessingSpec, *, n_classes: int, multilabel: bool
) -> CaseArrays:
    """Preprocess every Case's first image and encode its label."""
    if not cases:
        raise InvalidInputError("cases", "no cases to read")
    xs = [to_network_input(c.image(), spec) for c in cases]
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:
        raise InvalidInputError(
            "images",
            f"differ in shape after preprocessing {sorted(shapes)}",
            hint="set preprocessing size so every image is resized to one shape",
        )
    ys = [encode_label(c, n_classes, multilabel) for c in cases]
    return CaseArrays(
        x=np.stack(xs),
        y=np.stack(ys) if multilabel else np.asarray(ys, np.int64),
        case_ids=[c.case_id for c in cases],
        patient_ids=[str(c.patient_id) for c in cases],
        attributes=[dict(c.attributes) for c in cases],
    )
