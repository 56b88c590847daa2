"""Service errors; each maps to one HTTP status with the error's message as ``detail``.

Any other :class:`~medsight.core.errors.MedsightError` becomes a 400 (see
:func:`status_for`).

Examples
--------
>>> status_for(NotFoundError("study 1.2.3", "is not in the store"))
404
>>> from medsight.core.errors import InvalidInputError
>>> status_for(InvalidInputError("packages", "unknown id"))
400
"""

from __future__ import annotations

from medsight.core.errors import InvalidInputError, MedsightError

__all__ = [
    "AuthError",
    "ConflictError",
    "DeliveryError",
    "ForbiddenError",
    "InvalidLoginError",
    "NotFoundError",
    "TooManyAttemptsError",
    "UnsupportedMediaError",
    "UploadTooLargeError",
    "status_for",
]


class AuthError(MedsightError):
    """Missing, wrong or expired credentials (401)."""


class ForbiddenError(MedsightError):
    """The user's role does not allow this (403)."""


class NotFoundError(MedsightError):
    """No such study, job or result (404)."""


class ConflictError(MedsightError):
    """The request clashes with the current state, e.g. a result that is not ready (409)."""


class UploadTooLargeError(InvalidInputError):
    """An upload above the configured size or file-count limit (413)."""


class UnsupportedMediaError(InvalidInputError):
    """A request body in a content type the endpoint does not read (415)."""


class InvalidLoginError(InvalidInputError):
    """A login body of the right type with missing or invalid fields (422)."""


class TooManyAttemptsError(MedsightError):
    """Too many failed logins for one username; wait before trying again (429)."""


class DeliveryError(MedsightError):
    """A result could not be sent to a PACS or FHIR server."""


_STATUS: dict[type[MedsightError], int] = {
    AuthError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    UploadTooLargeError: 413,
    UnsupportedMediaError: 415,
    InvalidLoginError: 422,
    TooManyAttemptsError: 429,
    DeliveryError: 502,
}


def status_for(err: MedsightError) -> int:
    """The HTTP status for ``err`` (400 for any error not listed)."""
    for cls in type(err).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 400
