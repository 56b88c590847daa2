"""Risk what-if: change a risk model's clinical inputs and see its output move.

Every input is checked against what the package declares (``model.json`` ``extra["risk"]``):
its variables, their kinds and categories, and for numeric variables a range, the one the
package declares in ``extra["risk"]["ranges"]`` (``{name: [low, high]}``) or else the training
mean +- 4 SD its clinical encoding stores (a value further out is one the model never saw).
A field the model does not read, a category it does not know, an unreadable or out-of-range
value is refused (:class:`RiskInputError`, 422 naming the field); a variable left out is
not guessed: that side's answer is withheld naming it.

The model runs as the analysis runs it (:class:`~medsight.inference.risk.RiskPredictor`): on
the job's image when it reads images (inside the package's intended use only), with the
baseline record and with the baseline changed by ``inputs``.

Examples
--------
>>> from medsight.data.timeline import ClinicalVariable, VariableKind
>>> check_value(ClinicalVariable("smoker", VariableKind.BINARY), "yes", None)
1
>>> check_value(ClinicalVariable("age", VariableKind.NUMERIC), "300", (0.0, 120.0))
Traceback (most recent call last):
...
medsight.service.whatif.risk.RiskInputError: inputs.age: 300 is outside the model's range 0 to 120
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.data.timeline import ClinicalVariable, VariableKind
from medsight.service.whatif.source import JobImage

__all__ = ["RiskInputError", "RiskQuery", "check_value", "input_spec", "run_risk"]

#: Without a declared range, a numeric input this many training SDs from the mean is refused.
SD_LIMIT = 4.0


class RiskInputError(InvalidInputError):
    """An input the risk model does not declare or cannot take (the route answers 422)."""


class RiskQuery(BaseModel):
    """The body of ``POST /api/risk/whatif`` and ``POST /api/jobs/{job}/risk/whatif``."""

    package: str = Field(description="risk package id (name@version)")
    baseline: dict[str, Any] = Field(default_factory=dict, description="the record as it is")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the changed values")


def _ranges(predictor: Any) -> dict[str, tuple[float, float, str]]:
    declared = predictor.settings.get("ranges") or {}
    out = {}
    for enc in predictor.encoder.variables:
        if enc.kind != "numeric":
            continue
        if enc.name in declared:
            low, high = (float(v) for v in declared[enc.name])
            out[enc.name] = (low, high, "declared by the model")
        else:
            low, high = enc.mean - SD_LIMIT * enc.std, enc.mean + SD_LIMIT * enc.std
            out[enc.name] = (low, high, f"training mean +- {SD_LIMIT:g} SD")
    return out


def _categories(predictor: Any, variable: ClinicalVariable) -> tuple[str, ...]:
    if variable.categories:
        return variable.categories
    enc = {v.name: v for v in predictor.encoder.variables}.get(variable.name)
    return enc.categories if enc is not None else ()


def input_spec(predictor: Any) -> list[dict[str, Any]]:
    """The model's inputs: name, kind, categories (categorical) or range (numeric)."""
    ranges = _ranges(predictor)
    out = []
    for v in predictor.variables:
        item: dict[str, Any] = {"name": v.name, "kind": v.kind.value}
        if v.kind is VariableKind.CATEGORICAL:
            item["categories"] = list(_categories(predictor, v))
        elif v.kind is VariableKind.BINARY:
            item["categories"] = [0, 1]
        elif v.name in ranges:
            low, high, why = ranges[v.name]
            item |= {"min": round(low, 6), "max": round(high, 6), "range_source": why}
        out.append(item)
    return out


def check_value(
    variable: ClinicalVariable,
    raw: Any,
    bounds: tuple[float, float] | None,
    categories: tuple[str, ...] = (),
    where: str = "inputs",
) -> float | int | str | None:
    """The typed value of ``raw`` for ``variable``; :class:`RiskInputError` if it does not fit.

    ``None`` (left out) stays ``None``.
    """
    field = f"{where}.{variable.name}"
    if raw is None:
        return None
    value = variable.parse(raw)
    if value is None:
        kind = variable.kind.value
        raise RiskInputError(field, f"{raw!r} is not a {kind} value")
    if variable.kind is VariableKind.NUMERIC and bounds is not None:
        low, high = bounds
        if not low <= float(value) <= high:
            raise RiskInputError(
                field, f"{raw} is outside the model's range {low:.4g} to {high:.4g}"
            )
    if variable.kind is VariableKind.CATEGORICAL and categories and value not in categories:
        raise RiskInputError(field, f"{raw!r} is not one of {', '.join(categories)}")
    return value


def _record(predictor: Any, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    known = {v.name: v for v in predictor.variables}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise RiskInputError(
            f"{where}.{unknown[0]}",
            f"is not an input of this model (it reads {', '.join(known) or 'no variable'})",
        )
    ranges = _ranges(predictor)
    out = {}
    for name, value in raw.items():
        var = known[name]
        bounds = ranges[name][:2] if name in ranges else None
        out[name] = check_value(var, value, bounds, _categories(predictor, var), where)
    return out


def _work_image(source: JobImage, spatial_ndim: int) -> Image:
    image = source.image
    if image.spatial_ndim == 3 and spatial_ndim == 2 and image.shape[2] == 1:
        return image.with_array(np.asarray(image.array)[:, :, 0], spatial_ndim=2)
    return image


def _score(predictor: Any, record: dict[str, Any], image: Image | None) -> dict[str, Any]:
    missing = predictor.missing_variables(record)
    if missing:
        reason = f"the record does not state {', '.join(missing)}; the model is not guessed"
        return {"record": record, "value": None, "withheld": [reason]}
    visits = [(image, 0.0)] if image is not None else []
    value = predictor.predict_record(visits, record)
    spec = predictor.package.spec
    positive = None
    if not predictor.survival:
        target = max(spec.labels, key=lambda lab: lab.index)
        threshold = spec.thresholds.get(target.name)
        positive = None if threshold is None else bool(value >= threshold)
    return {"record": record, "value": value, "positive": positive, "withheld": []}


def run_risk(predictor: Any, query: RiskQuery, source: JobImage | None) -> dict[str, Any]:
    """The model's output for ``baseline`` and for ``baseline`` changed by ``inputs``.

    Raises
    ------
    RiskInputError
        A field or value the model does not declare.
    InvalidInputError
        An image model without a job's image, or an image outside its intended use.
    """
    from medsight.models.scope import scope_problems

    baseline = _record(predictor, query.baseline, "baseline")
    changed = baseline | _record(predictor, query.inputs, "inputs")
    image = None
    if predictor.uses_images:
        if source is None:
            raise InvalidInputError(
                f"model {predictor.package.id}",
                "reads images: ask through /api/jobs/{job}/risk/whatif for a job's image",
            )
        spec = predictor.package.spec
        outside = scope_problems(spec.input, source.image, source.header)
        if outside:
            why = "; ".join(outside)
            return {
                "package": predictor.package.id,
                "withheld": [why],
                "message": f"the image is outside the model's intended use: {why}",
            }
        image = _work_image(source, spec.input.spatial_ndim)
    before = _score(predictor, baseline, image)
    after = _score(predictor, changed, image)
    both = before["value"] is not None and after["value"] is not None
    return {
        "package": predictor.package.id,
        "output": "log hazard ratio" if predictor.survival else "probability",
        "inputs": input_spec(predictor),
        "changed_fields": sorted(k for k in query.inputs if changed.get(k) != baseline.get(k)),
        "original": before,
        "changed": after,
        "difference": after["value"] - before["value"] if both else None,
        "withheld": before["withheld"] + after["withheld"],
    }
