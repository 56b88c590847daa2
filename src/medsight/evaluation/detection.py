"""Detection metrics: FROC, the competition performance metric (CPM) and per-lesion bootstrap CIs.

The conventions are those of the LUNA16 evaluation script (``noduleCADEvaluationLUNA16.py``,
Setio et al., Medical Image Analysis 2017, as distributed with the challenge):

* a detection **hits** a lesion when its centre lies inside the lesion's annotated region (LUNA16:
  within the nodule's radius of its centre; here :meth:`Region.contains
  <medsight.core.findings.Region.contains>` of the box or ellipse, boundary included);
* each lesion counts **once**, with the score of its highest-scoring hit; the other hits on the
  same lesion are neither true nor false positives (LUNA16 ``doubleCandidatesIgnored``); a
  detection inside two overlapping lesions counts for both (LUNA16 does the same);
* a detection that hits no lesion but lies in an *irrelevant* region (LUNA16's excluded
  nodules, ``bOtherNodulesAsIrrelevant``; PASCAL VOC's ``difficult`` objects) is left out;
* every other detection is a false positive of its image; a missed lesion stays in the
  denominator of the sensitivity (LUNA16 keeps it with the lowest score and excludes it from the
  ROC analysis);
* the curve is (mean false positives per image, sensitivity) at every distinct score threshold
  (LUNA16 ``computeFROC``: ``fps = fpr * n_FP / n_images``, ``sens = tpr * n_hit / n_lesions``),
  images without any lesion count in ``n_images``;
* the sensitivity at a false-positive rate is ``numpy.interp`` on that curve (LUNA16 interpolates
  the same way, on a 10001-point grid from 1/8 to 8); past the last point of the curve it stays
  at the highest sensitivity reached;
* the CPM is the mean of the sensitivities at the chosen rates (LUNA16 uses 1/8 .. 8; the default
  here is 0.25, 0.5, 1, 2, 4);
* the bootstrap resamples images (or patients, when ``groups`` is given) with replacement and
  recomputes the curve on each resample (LUNA16 ``computeFROC_bootstrap``), through
  :func:`medsight.evaluation.bootstrap.bootstrap_ci`.

The family's evaluator (``medsight evaluate`` of a detection package) is
:func:`medsight.evaluation.detection_eval.evaluate_detector`.

Examples
--------
>>> from medsight.core.findings import Region
>>> truths = [[Region((10, 10), (6, 6))], []]
>>> preds = [([(10, 11), (30, 30)], [0.9, 0.4]), ([(5, 5)], [0.6])]
>>> r = froc(preds, truths, fp_rates=(0.5, 1.0))
>>> r.sensitivities, r.cpm, r.n_false_positives
((1.0, 1.0), 1.0, 2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.core.findings import Region
from medsight.evaluation.bootstrap import BootstrapResult, bootstrap_ci

__all__ = [
    "DEFAULT_FP_RATES",
    "FrocCI",
    "FrocResult",
    "ImageMatch",
    "froc",
    "froc_bootstrap",
    "froc_plot",
    "match_image",
]

#: False positives per image at which the sensitivities (and their mean, the CPM) are reported.
DEFAULT_FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclasses.dataclass(frozen=True)
class ImageMatch:
    """The detections of one image matched to its lesions.

    ``lesion_scores[n]`` is the score of lesion ``n``'s best hit, ``-inf`` when it was missed;
    ``fp_scores`` the scores of the false positives; ``ignored`` the number of extra hits on
    lesions already hit; ``irrelevant`` the detections on irrelevant regions, left out.
    """

    lesion_scores: NDArray[np.float64]
    fp_scores: NDArray[np.float64]
    ignored: int
    irrelevant: int = 0


def _centres_scores(pred: Any, ndim: int | None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(centres (n, d), scores (n,))`` from Detections or a ``(centres, scores)`` pair."""
    if isinstance(pred, tuple) and len(pred) == 2 and not hasattr(pred[0], "region"):
        centres = np.asarray(pred[0], dtype=np.float64)
        scores = np.asarray(pred[1], dtype=np.float64).reshape(-1)
    else:
        items = list(pred)
        centres = np.asarray([d.region.center for d in items], dtype=np.float64)
        scores = np.asarray([d.score for d in items], dtype=np.float64)
    if scores.size == 0:
        return np.zeros((0, ndim or 2)), scores
    if centres.ndim != 2 or len(centres) != len(scores):
        raise InvalidInputError(
            "predictions", f"{centres.shape} centres for {len(scores)} scores (want (n, 2 or 3))"
        )
    if not np.all(np.isfinite(scores)):
        raise InvalidInputError("predictions", "scores must be finite")
    return centres, scores


def match_image(
    pred: Any, truths: Sequence[Region], irrelevant: Sequence[Region] = ()
) -> ImageMatch:
    """Match one image's detections to its lesions (the LUNA16 rule, module docstring).

    Parameters
    ----------
    pred : sequence of Detection, or ``(centres, scores)``
        ``centres`` is ``(n, 2)`` or ``(n, 3)`` in the index space of the image.
    truths : sequence of Region
        The annotated lesions of the image.
    irrelevant : sequence of Region
        Annotated findings that count neither way (LUNA16's excluded nodules, PASCAL VOC's
        ``difficult`` objects): a detection that hits no lesion but lies in one of them is
        neither a true nor a false positive.

    Examples
    --------
    >>> m = match_image(([(1, 1), (1.5, 1), (9, 9)], [0.3, 0.8, 0.5]), [Region((1, 1), (2, 2))])
    >>> m.lesion_scores.tolist(), m.fp_scores.tolist(), m.ignored
    ([0.8], [0.5], 1)
    """
    ndim = truths[0].ndim if truths else None
    centres, scores = _centres_scores(pred, ndim)
    used = np.zeros(len(scores), dtype=bool)
    lesion_scores = np.full(len(truths), -np.inf)
    ignored = 0
    for n, lesion in enumerate(truths):
        if len(scores) and centres.shape[1] != lesion.ndim:
            raise InvalidInputError(
                "predictions", f"{centres.shape[1]}D centres for a {lesion.ndim}D lesion"
            )
        hits = [d for d in range(len(scores)) if lesion.contains(tuple(centres[d]))]
        if hits:
            lesion_scores[n] = float(scores[hits].max())
            used[hits] = True
            ignored += len(hits) - 1
    dropped = np.array(
        [
            not used[d] and any(r.contains(tuple(centres[d])) for r in irrelevant)
            for d in range(len(scores))
        ],
        dtype=bool,
    )
    return ImageMatch(lesion_scores, scores[~used & ~dropped], ignored, int(dropped.sum()))


@dataclasses.dataclass(frozen=True)
class FrocResult:
    """A FROC analysis: sensitivities at the FP rates, their mean (CPM) and the full curve.

    ``fps`` (mean false positives per image), ``sens`` and ``thresholds`` are the curve, one
    point per distinct score from the highest down, starting at ``(0, 0)`` with threshold
    ``inf``.
    """

    fp_rates: tuple[float, ...]
    sensitivities: tuple[float, ...]
    cpm: float
    fps: NDArray[np.float64]
    sens: NDArray[np.float64]
    thresholds: NDArray[np.float64]
    n_images: int
    n_lesions: int
    n_detected: int  # lesions hit at some score
    n_false_positives: int  # at the lowest score
    n_ignored: int  # extra hits on lesions already hit
    n_irrelevant: int = 0  # detections on irrelevant regions, left out

    def at_threshold(self, threshold: float) -> tuple[float, float]:
        """``(sensitivity, false positives per image)`` keeping detections scoring ``>=
        threshold``."""
        keep = self.thresholds >= threshold
        return float(self.sens[keep][-1]), float(self.fps[keep][-1])

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the curve as lists)."""
        return {
            "fp_rates": list(self.fp_rates),
            "sensitivities": list(self.sensitivities),
            "cpm": self.cpm,
            "n_images": self.n_images,
            "n_lesions": self.n_lesions,
            "n_detected": self.n_detected,
            "n_false_positives": self.n_false_positives,
            "n_ignored": self.n_ignored,
            "n_irrelevant": self.n_irrelevant,
            "curve": {
                "fps": self.fps.tolist(),
                "sensitivity": self.sens.tolist(),
                "threshold": [float(t) if np.isfinite(t) else None for t in self.thresholds],
            },
        }


def _curve(matches: Sequence[ImageMatch], n_images: int, fp_rates: Sequence[float]) -> FrocResult:
    """The FROC curve over matched images: one point per distinct score (LUNA16's
    ``roc_curve`` points; the collinear points sklearn drops do not change ``numpy.interp``,
    which at a vertical step returns the step's top, as on sklearn's curve)."""
    lesions = np.concatenate([m.lesion_scores for m in matches]) if matches else np.zeros(0)
    fps_scores = np.concatenate([m.fp_scores for m in matches]) if matches else np.zeros(0)
    if lesions.size == 0:
        raise InvalidInputError("truths", "no annotated lesion: sensitivity is undefined")
    if n_images < 1:
        raise InvalidInputError("n_images", f"must be at least 1, got {n_images}")
    hit = lesions[np.isfinite(lesions)]
    scores = np.concatenate([hit, fps_scores])
    is_tp = np.concatenate([np.ones(hit.size), np.zeros(fps_scores.size)])
    order = np.argsort(-scores, kind="stable")
    scores, is_tp = scores[order], is_tp[order]
    tp, fp = np.cumsum(is_tp), np.cumsum(1 - is_tp)
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1] if scores.size else []
    thresholds = np.r_[np.inf, scores[last]]
    sens = np.r_[0.0, tp[last]] / lesions.size
    fps = np.r_[0.0, fp[last]] / n_images
    at = tuple(float(v) for v in np.interp(np.asarray(fp_rates, dtype=float), fps, sens))
    return FrocResult(
        fp_rates=tuple(float(r) for r in fp_rates),
        sensitivities=at,
        cpm=float(np.mean(at)),
        fps=fps,
        sens=sens,
        thresholds=thresholds,
        n_images=n_images,
        n_lesions=int(lesions.size),
        n_detected=int(hit.size),
        n_false_positives=int(fps_scores.size),
        n_ignored=sum(m.ignored for m in matches),
        n_irrelevant=sum(m.irrelevant for m in matches),
    )


def _matches(
    predictions: Sequence[Any],
    truths: Sequence[Sequence[Region]],
    n_images: int | None,
    irrelevant: Sequence[Sequence[Region]] | None,
) -> tuple[list[ImageMatch], int]:
    if len(predictions) != len(truths):
        raise InvalidInputError(
            "predictions", f"{len(predictions)} images of predictions for {len(truths)} of truths"
        )
    other = [()] * len(truths) if irrelevant is None else list(irrelevant)
    if len(other) != len(truths):
        raise InvalidInputError(
            "irrelevant", f"{len(other)} images of irrelevant regions for {len(truths)} of truths"
        )
    matches = [
        match_image(p, list(t), list(o)) for p, t, o in zip(predictions, truths, other, strict=True)
    ]
    n = len(matches) if n_images is None else int(n_images)
    if n < len(matches):
        raise InvalidInputError("n_images", f"{n} is fewer than the {len(matches)} images given")
    empty = ImageMatch(np.zeros(0), np.zeros(0), 0)
    return matches + [empty] * (n - len(matches)), n


def froc(
    predictions: Sequence[Any],
    truths: Sequence[Sequence[Region]],
    fp_rates: Sequence[float] = DEFAULT_FP_RATES,
    n_images: int | None = None,
    irrelevant: Sequence[Sequence[Region]] | None = None,
) -> FrocResult:
    """FROC analysis of detections against annotated lesions, per image.

    Parameters
    ----------
    predictions : sequence
        Per image, a list of :class:`~medsight.inference.detect.Detection` or a ``(centres,
        scores)`` pair (centres ``(n, 2|3)`` in voxel indices).
    truths : sequence of sequence of Region
        Per image, its annotated lesions (an empty list for a normal image).
    fp_rates : sequence of float
        False positives per image at which sensitivities are read off.
    n_images : int, optional
        The number of images, when images without any detection or lesion are left out of the
        lists (they still count in the false positives per image).
    irrelevant : sequence of sequence of Region, optional
        Per image, regions whose detections count neither way (see :func:`match_image`).

    Raises
    ------
    InvalidInputError
        No lesion at all (sensitivity undefined), lists of different lengths, bad centres.
    """
    matches, n = _matches(predictions, truths, n_images, irrelevant)
    return _curve(matches, n, fp_rates)


@dataclasses.dataclass(frozen=True)
class FrocCI:
    """A FROC point estimate with bootstrap CIs of each sensitivity and of the CPM."""

    result: FrocResult
    sensitivities: tuple[BootstrapResult, ...]
    cpm: BootstrapResult
    resampled: str  # "images" or "patients"

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "resampled": self.resampled,
            "cpm": self.cpm.as_dict(),
            "sensitivities": [
                {"fp_rate": rate, **ci.as_dict()}
                for rate, ci in zip(self.result.fp_rates, self.sensitivities, strict=True)
            ],
        }


def froc_bootstrap(
    predictions: Sequence[Any],
    truths: Sequence[Sequence[Region]],
    fp_rates: Sequence[float] = DEFAULT_FP_RATES,
    n_images: int | None = None,
    *,
    groups: Sequence[object] | None = None,
    irrelevant: Sequence[Sequence[Region]] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> FrocCI:
    """:func:`froc` with percentile bootstrap CIs, resampling images or patients.

    Parameters
    ----------
    groups : sequence, optional
        Patient id of each image (same order as ``predictions``; images beyond the lists,
        counted by ``n_images``, are their own patients): whole patients are resampled.
    irrelevant : sequence of sequence of Region, optional
        As in :func:`froc`.

    Each resample draws images (or patients) with replacement and recomputes the whole curve;
    a resample without any lesion is skipped (counted out of ``n_valid``).  Every quantity is
    computed on the same resamples (one seed).

    Examples
    --------
    >>> truths = [[Region((5, 5), (4, 4))] for _ in range(6)] + [[] for _ in range(4)]
    >>> preds = [([(5, 5)], [0.9])] * 4 + [([(0, 0)], [0.8])] * 6
    >>> ci = froc_bootstrap(preds, truths, (1.0,), n_resamples=200)
    >>> ci.result.cpm, ci.cpm.low <= ci.result.cpm <= ci.cpm.high
    (0.6666666666666666, True)
    """
    matches, n = _matches(predictions, truths, n_images, irrelevant)
    point = _curve(matches, n, fp_rates)
    if groups is not None:
        g = [str(x) for x in groups]
        if len(g) != len(predictions):
            raise InvalidInputError("groups", f"{len(g)} patient ids for {len(predictions)} images")
        g += [f"\0image-{i}" for i in range(len(g), n)]
    cache: dict[bytes, tuple[float, ...]] = {}

    def values(idx: NDArray[np.int64]) -> tuple[float, ...]:
        key = idx.tobytes()
        if key not in cache:
            picked = [matches[i] for i in idx]
            if not any(m.lesion_scores.size for m in picked):
                cache[key] = (float("nan"),) * (len(point.fp_rates) + 1)
            else:
                r = _curve(picked, len(idx), fp_rates)
                cache[key] = (*r.sensitivities, r.cpm)
        return cache[key]

    index = np.arange(n)
    results = [
        bootstrap_ci(
            lambda idx, k=k: values(idx)[k],
            index,
            groups=None if groups is None else g,
            n_resamples=n_resamples,
            confidence=confidence,
            seed=seed,
        )
        for k in range(len(point.fp_rates) + 1)
    ]
    return FrocCI(
        point, tuple(results[:-1]), results[-1], "images" if groups is None else "patients"
    )


def froc_plot(curves: Mapping[str, FrocResult | FrocCI]) -> bytes:
    """FROC curves (log FP axis, 1/8 to 8 FPs per image as LUNA16 draws them) as PNG bytes;
    the sensitivities at the FP rates are marked, with their CIs when given.

    Examples
    --------
    >>> r = froc([([(1, 1)], [0.9])], [[Region((1, 1), (2, 2))]])
    >>> froc_plot({"model": r})[:4] == b"\\x89PNG"
    True
    """
    from medsight.evaluation.plots import _figure, _png

    fig, ax = _figure()
    for n, (name, item) in enumerate(curves.items()):
        r = item.result if isinstance(item, FrocCI) else item
        colour = f"C{n}"
        grid = np.geomspace(0.125, 8, 200)
        label = f"{name} (CPM {r.cpm:.3f})"
        ax.plot(grid, np.interp(grid, r.fps, r.sens), color=colour, label=label)
        rates, sens = np.asarray(r.fp_rates), np.asarray(r.sensitivities)
        if isinstance(item, FrocCI):
            low = [c.low for c in item.sensitivities]
            high = [c.high for c in item.sensitivities]
            err = np.abs(np.vstack([sens - np.asarray(low), np.asarray(high) - sens]))
            ax.errorbar(rates, sens, yerr=np.nan_to_num(err), fmt="o", color=colour, capsize=3)
        else:
            ax.plot(rates, sens, "o", color=colour)
    ax.set_xscale("log", base=2)
    ax.set(
        xlabel="false positives per image",
        ylabel="sensitivity (per lesion)",
        xlim=(0.125, 8),
        ylim=(0, 1.01),
        title="FROC",
    )
    ax.set_xticks([0.125, 0.25, 0.5, 1, 2, 4, 8], ["1/8", "1/4", "1/2", "1", "2", "4", "8"])
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(True, alpha=0.3)
    return _png(fig)
