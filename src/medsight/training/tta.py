"""The trainer's test-time augmentation (TTA) decision, made on validation data.

A classifier's candidate views are the flips its training augmentation declares
(:func:`medsight.transforms.augment.tta_flips`: every combination of the policy's flip
axes, the identity first; none for a modality without a label-preserving flip).  At the end of
training, with the best epoch's weights, the validation metric (the early-stopping metric: AUC,
macro over classes where there are several) is measured on the identity view and on the
average of all views (:func:`medsight.models.tta.mean_probability_logits`).  ``--tta``:

* ``auto`` (default): enabled only if the average beats the identity by more than
  :data:`TTA_MARGIN`; a smaller gain is noise on a validation split of a few hundred cases and
  not worth ``views`` times the inference cost;
* ``on``: enabled whenever the policy declares a flip;
* ``off``: never (the package's probabilities are bit for bit those of a package without TTA).

The calibration and the operating threshold are then fitted on the probabilities the package
will produce (the view average where enabled), and the package records the choice and both
numbers (:class:`medsight.models.tta.TTASpec`), which its model card states.

Ensembles (:mod:`medsight.training.ensemble`) decide once, for the ensemble, on the data their
threshold is fitted on (pooled out-of-fold predictions for folds, the shared validation split
for seeds), from the per-view validation logits each member's run folder keeps.

Examples
--------
>>> tta_decision("auto", [(), (0,)], without=0.900, with_=0.905, decided_on="val").enabled
True
>>> tta_decision("auto", [(), (0,)], without=0.900, with_=0.901, decided_on="val").enabled
False
>>> tta_decision("on", [()], without=0.9, with_=None, decided_on="val").reason
'the training augmentation declares no label-preserving flip for this input'
"""

from __future__ import annotations

from collections.abc import Sequence

from medsight.models.tta import TTAMode, TTASpec, transform_name

__all__ = ["TTA_MARGIN", "tta_decision"]

#: ``--tta auto`` enables TTA only if it raises the validation metric by more than this.
TTA_MARGIN = 0.002


def tta_decision(
    mode: TTAMode | str,
    views: Sequence[tuple[int, ...]],
    *,
    without: float,
    with_: float | None,
    decided_on: str,
    margin: float = TTA_MARGIN,
) -> TTASpec:
    """The package's :class:`~medsight.models.tta.TTASpec` for ``mode`` and the validation
    metric ``without`` (identity view) and ``with_`` (all ``views`` averaged; ``None`` when
    the identity is the only view)."""
    mode = TTAMode(mode)
    names = [transform_name(v) for v in views]
    if len(views) < 2 or with_ is None:
        enabled, reason = False, "the training augmentation declares no label-preserving flip "
        reason += "for this input"
    elif mode is TTAMode.OFF:
        enabled, reason = False, "--tta off"
    elif mode is TTAMode.ON:
        enabled, reason = True, "--tta on"
    else:
        gain = with_ - without
        enabled = gain > margin
        reason = (
            f"--tta auto: validation gain {gain:+.4f} "
            + ("exceeds" if enabled else "does not exceed")
            + f" the margin {margin:g}"
        )
    return TTASpec(
        enabled=enabled,
        transforms=names,
        val_metric_with=with_,
        val_metric_without=without,
        margin=margin,
        mode=mode,
        decided_on=decided_on,
        reason=reason,
    )
