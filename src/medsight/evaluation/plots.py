"""ROC, precision-recall and reliability plots as PNG bytes (matplotlib, Agg backend).

Examples
--------
>>> png = roc_plot({"yes": ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])})
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from medsight.evaluation.calibration import reliability_bins
from medsight.evaluation.classification import pr_curve, roc_auc, roc_curve

__all__ = ["pr_plot", "reliability_plot", "roc_plot"]

Curves = Mapping[str, tuple[ArrayLike, ArrayLike]]


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.0), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def roc_plot(curves: Curves, points: Sequence[tuple[float, float, str]] = ()) -> bytes:
    """One ROC curve per entry ``name -> (labels, scores)``; ``points`` marks operating points
    as ``(1 - specificity, sensitivity, label)``."""
    fig, ax = _figure()
    for name, (y, s) in curves.items():
        try:
            fpr, tpr, _ = roc_curve(y, s)
        except ValueError:
            continue
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(y, s):.3f})")
    for x, yv, label in points:
        ax.plot([x], [yv], "o", label=label)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), title="ROC")
    ax.legend(loc="lower right", fontsize=7)
    return _png(fig)


def pr_plot(curves: Curves) -> bytes:
    """One precision-recall curve per entry ``name -> (labels, scores)``."""
    fig, ax = _figure()
    for name, (y, s) in curves.items():
        try:
            precision, recall, _ = pr_curve(y, s)
        except ValueError:
            continue
        prevalence = float(np.mean(np.asarray(y)))
        ax.step(
            np.r_[0, recall],
            np.r_[precision[0], precision],
            where="post",
            label=f"{name} (prevalence {prevalence:.2f})",
        )
    ax.set(
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="Precision-recall",
    )
    ax.legend(loc="lower left", fontsize=7)
    return _png(fig)


def reliability_plot(outcome: ArrayLike, confidence: ArrayLike, n_bins: int = 10) -> bytes:
    """Reliability diagram: observed frequency against mean predicted probability per bin."""
    bins = reliability_bins(outcome, confidence, n_bins)
    fig, ax = _figure()
    used = bins.count > 0
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2
    ax.bar(
        centres[used],
        bins.accuracy[used],
        width=1 / n_bins,
        alpha=0.6,
        edgecolor="black",
        label="observed",
    )
    ax.plot(bins.confidence[used], bins.accuracy[used], "o-", color="C1", label="by bin mean")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.set(
        xlabel="predicted probability",
        ylabel="observed frequency",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="Reliability",
    )
    ax.legend(loc="upper left", fontsize=7)
    return _png(fig)
