"""Real-world accuracy from reviewer feedback: how often reviewers confirm each model's findings.

A *confirm* means the reviewer agrees with the AI finding as reported (present or absent), a
*reject* that they disagree.  Per model and finding code this gives the agreement rate, and
among findings the AI called positive the share confirmed (a positive predictive value
estimate) and among those it called negative the share confirmed (a negative predictive value
estimate).  Only reviewed findings count, so the estimates inherit whatever selects studies
for review; each comes with a Wilson 95 % interval to show how little a few reviews say.

Examples
--------
>>> rows = [("m@1", "SCT:1", True, "confirm"), ("m@1", "SCT:1", True, "reject"),
...         ("m@1", "SCT:1", False, "confirm")]
>>> s = summarise(rows)[0]
>>> s["reviewed"], s["agreement"], s["ppv"], s["npv"]
(3, 0.667, 0.5, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["summarise", "wilson"]


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (None when ``n`` is 0).

    Wilson (1927), JASA 22:209.  Reference: R's ``prop.test(8, 10, correct = FALSE)`` gives
    0.4901625 to 0.9433178 for 8 of 10.

    Examples
    --------
    >>> wilson(8, 10)
    (0.49, 0.943)
    >>> wilson(0, 5)
    (0.0, 0.434)
    """
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, round(centre - half, 3)), min(1.0, round(centre + half, 3))


def _rate(good: int, n: int) -> float | None:
    return round(good / n, 3) if n else None


def summarise(rows: Iterable[tuple[str, str, bool | None, str]]) -> list[dict[str, object]]:
    """Summaries per (model id, finding code) from ``(model, code, ai_positive, verdict)``."""
    groups: dict[tuple[str, str], list[tuple[bool | None, bool]]] = {}
    for model, code, positive, verdict in rows:
        groups.setdefault((model, code), []).append((positive, verdict == "confirm"))
    out = []
    for (model, code), items in sorted(groups.items()):
        agreed = sum(ok for _, ok in items)
        pos = [ok for p, ok in items if p is True]
        neg = [ok for p, ok in items if p is False]
        out.append(
            {
                "model_id": model,
                "finding": code,
                "reviewed": len(items),
                "agreement": _rate(agreed, len(items)),
                "agreement_ci95": wilson(agreed, len(items)),
                "ai_positive_reviewed": len(pos),
                "ppv": _rate(sum(pos), len(pos)),
                "ppv_ci95": wilson(sum(pos), len(pos)),
                "ai_negative_reviewed": len(neg),
                "npv": _rate(sum(neg), len(neg)),
                "npv_ci95": wilson(sum(neg), len(neg)),
            }
        )
    return out
