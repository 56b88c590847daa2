"""How numbers a reader acts on are written: one formatter for every output.

A probability near 0 or 1 is written as a bound (``>0.99``, ``<0.01``), never ``1.00`` or
``0.00``, which a reader takes for certainty.  The report, the study page, the worklist, the
CDS Hooks card and the SR text all use :func:`format_probability`.
"""

from __future__ import annotations

__all__ = ["format_probability"]


def format_probability(p: float) -> str:
    """Two decimals, but ``>0.99`` / ``<0.01`` at the extremes (never ``1.00`` or ``0.00``).

    >>> [format_probability(p) for p in (1.0, 0.9951, 0.99, 0.5, 0.0049, 0.0)]
    ['>0.99', '>0.99', '0.99', '0.50', '<0.01', '<0.01']
    """
    p = float(p)
    if p > 0.99:
        return ">0.99"
    if p < 0.01:
        return "<0.01"
    return f"{p:.2f}"
