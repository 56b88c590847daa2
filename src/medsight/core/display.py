"""How numbers a reader acts on are written: one formatter for every output.

A probability near 0 or 1 is written as a bound (``>0.99``, ``<0.01``), never ``1.00`` or
``0.00``, which a reader takes for certainty.  The report, the study page, the worklist, the
CDS Hooks card and the SR text all use :func:`format_probability`.
"""

from __future__ import annotations

__all__ = ["format_probability"]


def format_probability(p: float, digits: int = 2) -> str:
    """``digits`` decimals, but a bound at the extremes (never ``1.00`` or ``0.00``).

    >>> [format_probability(p) for p in (1.0, 0.9951, 0.99, 0.5, 0.0049, 0.0)]
    ['>0.99', '>0.99', '0.99', '0.50', '<0.01', '<0.01']
    >>> [format_probability(p, 3) for p in (0.9995, 0.052, 0.0004)]
    ['>0.999', '0.052', '<0.001']
    """
    p = float(p)
    edge = 10.0**-digits
    if p > 1 - edge:
        return f">{1 - edge:.{digits}f}"
    if p < edge:
        return f"<{edge:.{digits}f}"
    return f"{p:.{digits}f}"
