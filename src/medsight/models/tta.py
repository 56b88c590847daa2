"""Test-time augmentation (TTA) of a classifier, as ``model.json`` stores it, and its arithmetic.

A classification package may carry a :class:`TTASpec`: deterministic views of the network
input (the identity and flips along spatial axes), written by its trainer from the flips the
training augmentation declares label-preserving for the modality
(:func:`medsight.transforms.augment.tta_flips`; a chest radiograph has none, so it gets
none), and enabled only where the validation metric with the views beats the one without by
more than a margin.  No random draw happens at test time.

How the views are combined (:func:`mean_probability_logits`): the network's probabilities
(softmax, or sigmoid per label) are averaged over the views and returned as logits whose
softmax / sigmoid is that average (log of the mean; log-odds of it for multi-label).  The
package's calibration (temperature, vector scaling or isotonic) is fitted by the trainer on
exactly these logits and applied to them, so the stored calibration and operating threshold
describe the probabilities the package really produces.  (Calibrating each view and then
averaging would need a calibration fitted through the average, which only a temperature
allows; this way every calibration method keeps working.)  An ensemble's network already
returns the log of its members' averaged temperature-scaled probabilities and carries no
package calibration, so for an ensemble the view average *is* the average of the
temperature-scaled probabilities over members and views.

A package without the field, or with ``enabled: false``, runs the identity view only, bit for
bit as before.

Examples
--------
>>> import numpy as np
>>> tta = TTASpec(enabled=True, transforms=["identity", "flip:0"], val_metric_with=0.91,
...               val_metric_without=0.90, margin=0.002)
>>> tta.views
[(), (0,)]
>>> TTASpec(transforms=["identity", "flip:0"]).views  # not enabled: the identity only
[()]
>>> x = np.arange(4.0).reshape(1, 1, 2, 2)
>>> flip_batch(x, (0,))[0, 0].tolist()
[[2.0, 3.0], [0.0, 1.0]]
>>> z = np.log(np.array([[[0.2, 0.8]], [[0.6, 0.4]]]))         # (views, N, K) log-probabilities
>>> np.exp(mean_probability_logits(z, multilabel=False)).round(3).tolist()
[[0.4, 0.6]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "IDENTITY",
    "TTAMode",
    "TTASpec",
    "card_line",
    "flip_batch",
    "logits_of_probabilities",
    "mean_probability_logits",
    "transform_name",
    "view_logits",
]

#: The name of the unchanged view; always the first of a package's transforms.
IDENTITY = "identity"

_EPS = 1e-7  # as medsight.models.ensemble: probabilities kept off 0 and 1 before the log


class TTAMode(StrEnum):
    """The choices of ``--tta``: ``auto`` (the validation decides), ``on``, ``off``."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


def transform_name(axes: Sequence[int]) -> str:
    """``"identity"`` for no axes, else ``"flip:<axes>"`` (spatial axes in index order).

    Examples
    --------
    >>> transform_name(()), transform_name((0, 1))
    ('identity', 'flip:0,1')
    """
    return "flip:" + ",".join(str(int(a)) for a in axes) if axes else IDENTITY


def _parse(name: str) -> tuple[int, ...]:
    if name == IDENTITY:
        return ()
    kind, _, rest = name.partition(":")
    try:
        axes = tuple(int(a) for a in rest.split(","))
    except ValueError:
        axes = ()
    if kind != "flip" or not axes or any(a < 0 for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"TTA transform {name!r} is neither 'identity' nor 'flip:<axes>'")
    return axes


class TTASpec(BaseModel):
    """A classifier's test-time views and the validation evidence for using them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    transforms: list[str] = Field(default_factory=lambda: [IDENTITY])
    metric: str = "auc"  # the validation metric compared (macro AUC where several classes)
    val_metric_with: float | None = None
    val_metric_without: float | None = None
    margin: float = Field(0.0, ge=0)  # enabled (auto) only if with - without > margin
    mode: TTAMode = TTAMode.AUTO
    decided_on: str = ""  # e.g. "validation split (n=120)"
    reason: str = ""  # why it is on or off, in words

    @field_validator("transforms")
    @classmethod
    def _transforms(cls, names: list[str]) -> list[str]:
        if not names or names[0] != IDENTITY:
            raise ValueError(f"TTA transforms must start with {IDENTITY!r}, got {names}")
        parsed = [_parse(n) for n in names]
        if len(set(parsed)) != len(parsed):
            raise ValueError(f"TTA transforms repeat a view: {names}")
        return names

    @model_validator(mode="after")
    def _enabled_needs_views(self) -> TTASpec:
        if self.enabled and len(self.transforms) < 2:
            raise ValueError("TTA enabled with the identity view only")
        return self

    @property
    def flips(self) -> list[tuple[int, ...]]:
        """Every listed view as its flip axes (``()``: the identity), enabled or not."""
        return [_parse(n) for n in self.transforms]

    @property
    def views(self) -> list[tuple[int, ...]]:
        """The views inference runs: :attr:`flips` when enabled, else the identity only."""
        return self.flips if self.enabled else [()]


def card_line(tta: TTASpec) -> str:
    """The model card's line on test-time augmentation: the choice and both numbers.

    Examples
    --------
    >>> line = card_line(TTASpec(enabled=True, transforms=["identity", "flip:0"],
    ...     val_metric_with=0.912, val_metric_without=0.905, margin=0.002,
    ...     decided_on="validation split (n=80)", reason="--tta auto: gain +0.0070"))
    >>> line.startswith("- Test-time augmentation: on (identity, flip:0;")
    True
    >>> line.split("; validation ")[1]
    'auc 0.9120 with, 0.9050 without, on the validation split (n=80): --tta auto: gain +0.0070'
    """

    def num(v: float | None) -> str:
        return "not measured" if v is None else f"{v:.4f}"

    state = "on" if tta.enabled else "off"
    how = (
        "; probabilities averaged, calibration and threshold fitted on the average"
        if tta.enabled
        else "; the identity view only"
    )
    return (
        f"- Test-time augmentation: {state} ({', '.join(tta.transforms)}{how}); validation "
        f"{tta.metric} {num(tta.val_metric_with)} with, {num(tta.val_metric_without)} without"
        + (f", on the {tta.decided_on}" if tta.decided_on else "")
        + (f": {tta.reason}" if tta.reason else "")
    )


def flip_batch(x: NDArray[np.float32], axes: Sequence[int]) -> NDArray[np.float32]:
    """``x`` ``(N, C, *spatial)`` flipped along spatial ``axes`` (as the training augmentation
    flips, :func:`medsight.transforms.augment.apply_params`); ``x`` itself for no axes."""
    if not axes:
        return x
    return np.ascontiguousarray(np.flip(x, axis=tuple(2 + int(a) for a in axes)))


def view_logits(
    run: Callable[[NDArray[np.float32]], NDArray[np.float64]],
    x: NDArray[np.float32],
    views: Sequence[Sequence[int]],
) -> NDArray[np.float64]:
    """``run`` (inputs -> logits ``(N, K)``) on every view of ``x``: ``(views, N, K)``.

    The views run in order, the whole input per view, so a feature hook sees the first
    view's (the identity's) ``N`` rows first.
    """
    return np.stack([run(flip_batch(x, v)) for v in views])


def logits_of_probabilities(proba: NDArray[np.float64], *, multilabel: bool) -> NDArray[np.float64]:
    """Logits whose softmax (sigmoid for multi-label) gives ``proba`` back: the log of the
    probabilities (their log-odds for multi-label), kept off 0 and 1."""
    p = np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p) if multilabel else np.log(p)


def mean_probability_logits(
    logits: NDArray[np.float64], *, multilabel: bool
) -> NDArray[np.float64]:
    """Logits ``(N, K)`` whose softmax (sigmoid for multi-label) is the mean over the views of
    ``logits`` ``(views, N, K)``' probabilities; one view is returned unchanged (bit for bit).
    """
    z = np.asarray(logits, dtype=np.float64)
    if len(z) == 1:
        return z[0]
    if multilabel:
        p = np.exp(-np.logaddexp(0.0, -z)).mean(axis=0)  # the sigmoid, averaged
        return logits_of_probabilities(p, multilabel=True)
    log_p = z - np.logaddexp.reduce(z, axis=2, keepdims=True)  # log-softmax per view
    return np.logaddexp.reduce(log_p, axis=0) - np.log(len(z))
