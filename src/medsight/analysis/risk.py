"""The risk family's findings builder: a package, an Image and the record -> a RISK Finding.

Safe by default: a risk model reads clinical variables besides the image, and without them it
says nothing.  The record comes with the options: ``options.attributes`` (what the caller
knows about the case, ``{variable: value}``, e.g. ``{"age": "71", "sex": "F"}``) and, where a
caller sets it, ``options.clinical`` (a :class:`~medsight.clinical.context.ClinicalContext`
read from FHIR, whose age and sex are used in the model's own spelling, see
:func:`record_from_context`); when the record lacks a variable the model needs, the output is
withheld naming the missing variables.  Nothing is taken from the image header to stand in for
the record (an age in a DICOM header of a research export may be shifted or blanked).

A binary model gives its calibrated probability and the decision at the package threshold
when one is stored; a time-to-event model gives its log hazard ratio relative to an average
training patient in the note (no probability: a Cox score is not one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medsight.analysis.output import ModelOutput, RunOptions, label_code
from medsight.core.findings import Finding, FindingKind
from medsight.core.image import Image
from medsight.models.package import ModelPackage

__all__ = ["analyze_risk", "record_from_context"]


def record_from_context(context: Any, categories: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """``{"age": years, "sex": code}`` from a ClinicalContext, in the model's own categories.

    The sex is given as the training data spelled it (``M``/``F`` or ``male``/``female``);
    when the model's categories are neither, it is left out rather than guessed.

    Examples
    --------
    >>> class Ctx:
    ...     age_years, sex = 61, "female"
    >>> record_from_context(Ctx(), {"sex": ("F", "M")})
    {'age': 61, 'sex': 'F'}
    """
    record: dict[str, Any] = {}
    if getattr(context, "age_years", None) is not None:
        record["age"] = context.age_years
    sex = getattr(context, "sex", None)
    if sex is not None:
        text = str(getattr(sex, "value", sex)).lower()
        cats = categories.get("sex", ())
        for spelling in (text, text[:1].upper(), text.capitalize()):
            if spelling in cats:
                record["sex"] = spelling
                break
    return record


def analyze_risk(
    package: ModelPackage, image: Image, options: RunOptions | None = None
) -> ModelOutput:
    """A RISK Finding for this image and the record in ``options.clinical``, or withheld."""
    from medsight.inference.cache import cached_model
    from medsight.inference.risk import RiskPredictor

    predictor = cached_model(RiskPredictor, package)
    record: dict[str, Any] = dict(getattr(options, "attributes", None) or {})
    clinical = getattr(options, "clinical", None)
    if isinstance(clinical, Mapping):
        record = dict(clinical) | record
    elif clinical is not None:
        cats = {v.name: v.categories for v in predictor.variables}
        record = record_from_context(clinical, cats) | record
    missing = predictor.missing_variables(record)
    spec = package.spec
    if missing:
        return ModelOutput(
            [],
            withheld=(
                f"risk model {package.id} needs the clinical variables "
                f"{', '.join(missing)}, which the record given does not state",
            ),
        )
    value = predictor.predict_record([(image, 0.0)] if predictor.uses_images else [], record)
    labels = sorted(spec.labels, key=lambda lab: lab.index)
    if predictor.survival:
        finding = Finding(
            finding=label_code(labels[0], package),
            model_id=spec.name,
            model_version=spec.version,
            kind=FindingKind.RISK,
            source=image.source,
            note=f"{labels[0].name}: log hazard ratio {value:+.2f} relative to the model's "
            f"reference (time-to-event model; not a probability)",
        )
        return ModelOutput([finding])
    target = labels[-1]
    threshold = spec.thresholds.get(target.name)
    finding = Finding(
        finding=label_code(target, package),
        model_id=spec.name,
        model_version=spec.version,
        kind=FindingKind.RISK,
        probability=value,
        positive=None if threshold is None else bool(value >= threshold),
        source=image.source,
        note=f"predicted probability of {target.name} from the image and "
        f"{', '.join(v.name for v in predictor.variables) or 'no clinical variable'}",
        significance=target.significance,
        urgency=target.urgency,
    )
    return ModelOutput([finding], probabilities={target.name: value})
