"""Clinical variables as a network input: fitted on training data, stored in the package.

Numeric variables are standardised with the training mean and standard deviation and get a
missing indicator (a missing value is encoded as 0, the training mean, with its indicator 1);
binary variables are 0/1 plus a missing indicator; categorical variables are one-hot over the
categories seen in training plus a missing indicator (a category never seen in training is all
zeros in its one-hot block and is *not* called missing).  :meth:`ClinicalEncoder.to_dict` is
what ``model.json`` stores, so inference encodes exactly as training did.

Examples
--------
>>> enc = ClinicalEncoder.fit(
...     [{"age": 60.0, "sex": "F"}, {"age": 80.0, "sex": "M"}, {"age": None, "sex": None}],
...     [("age", "numeric"), ("sex", "categorical")])
>>> enc.columns
['age', 'age:missing', 'sex=F', 'sex=M', 'sex:missing']
>>> enc.transform([{"age": 70.0, "sex": "M"}, {"age": None, "sex": "X"}]).tolist()
[[0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]]
>>> ClinicalEncoder.from_dict(enc.to_dict()).columns == enc.columns
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError

__all__ = ["ClinicalEncoder", "EncodedVariable"]


@dataclasses.dataclass(frozen=True)
class EncodedVariable:
    """One variable's encoding: kind, training statistics or categories."""

    name: str
    kind: str  # numeric | binary | categorical
    mean: float = 0.0
    std: float = 1.0
    categories: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        """Names of the encoded columns."""
        if self.kind == "categorical":
            return [f"{self.name}={c}" for c in self.categories] + [f"{self.name}:missing"]
        return [self.name, f"{self.name}:missing"]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class ClinicalEncoder:
    """Encodes records ``{variable: typed value}`` as a float matrix (see the module doc)."""

    def __init__(self, variables: Sequence[EncodedVariable]) -> None:
        self.variables = tuple(variables)

    @property
    def columns(self) -> list[str]:
        """Every encoded column name."""
        return [c for v in self.variables for c in v.columns]

    @property
    def names(self) -> list[str]:
        """The variable names."""
        return [v.name for v in self.variables]

    def column_groups(self) -> dict[str, list[int]]:
        """Variable name -> its column indices (for permutation importance)."""
        out, start = {}, 0
        for v in self.variables:
            out[v.name] = list(range(start, start + len(v.columns)))
            start += len(v.columns)
        return out

    @classmethod
    def fit(
        cls, records: Sequence[Mapping[str, Any]], kinds: Sequence[tuple[str, str]]
    ) -> ClinicalEncoder:
        """Fit on training records; ``kinds`` lists ``(name, kind)`` in column order."""
        variables = []
        for name, kind in kinds:
            present = [r.get(name) for r in records if not _missing(r.get(name))]
            if kind == "numeric":
                vals = np.asarray([float(v) for v in present], dtype=np.float64)
                mean = float(vals.mean()) if len(vals) else 0.0
                std = float(vals.std()) if len(vals) > 1 else 1.0
                variables.append(EncodedVariable(name, kind, mean, std if std > 0 else 1.0))
            elif kind == "binary":
                variables.append(EncodedVariable(name, kind))
            elif kind == "categorical":
                cats = tuple(sorted({str(v) for v in present}))
                variables.append(EncodedVariable(name, kind, categories=cats))
            else:
                raise InvalidInputError(f"variable {name!r}", f"unknown kind {kind!r}")
        return cls(variables)

    def transform(self, records: Sequence[Mapping[str, Any]]) -> NDArray[np.float32]:
        """The encoded matrix ``(len(records), len(columns))``."""
        out = np.zeros((len(records), len(self.columns)), dtype=np.float32)
        for i, record in enumerate(records):
            col = 0
            for v in self.variables:
                value = record.get(v.name)
                width = len(v.columns)
                if _missing(value):
                    out[i, col + width - 1] = 1.0
                elif v.kind == "numeric":
                    out[i, col] = (float(value) - v.mean) / v.std
                elif v.kind == "binary":
                    out[i, col] = float(int(value))
                elif str(value) in v.categories:
                    out[i, col + v.categories.index(str(value))] = 1.0
                col += width
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``model.json``."""
        return {
            "variables": [
                dataclasses.asdict(v) | {"categories": list(v.categories)} for v in self.variables
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClinicalEncoder:
        """The inverse of :meth:`to_dict`."""
        try:
            return cls(
                [
                    EncodedVariable(
                        str(v["name"]),
                        str(v["kind"]),
                        float(v.get("mean", 0.0)),
                        float(v.get("std", 1.0)),
                        tuple(v.get("categories", ())),
                    )
                    for v in data["variables"]
                ]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError("clinical encoding", f"is malformed ({exc})") from None
