"""Errors of the privacy package: each names the file or setting and what to do.

Examples
--------
>>> err = KeyFileError("site.key", "is not a medsight key file", hint="delete it to make a new one")
>>> str(err)
'site.key: is not a medsight key file (delete it to make a new one)'
"""

from __future__ import annotations

from medsight.core.errors import InvalidInputError, MedsightError

__all__ = ["AuditLogError", "DeidError", "KeyFileError", "OcrUnavailableError", "UnsafePathError"]


class DeidError(MedsightError):
    """A file could not be de-identified (it is reported and skipped in a batch)."""


class KeyFileError(MedsightError):
    """The pseudonymisation key file is unreadable or malformed."""


class UnsafePathError(InvalidInputError):
    """An output path would put identifying data where it must not go (e.g. inside OUT)."""


class OcrUnavailableError(MedsightError):
    """Pixel scrubbing was asked for but the tesseract OCR binary is missing."""


class AuditLogError(MedsightError):
    """The audit log cannot be read or written."""
