"""The error hierarchy every user-facing failure goes through.

Each error names what was wrong (a file or a field), the problem and, where there is one, what to
do about it.  The CLI prints ``str(error)`` on one line and exits non-zero; the service turns it
into a 4xx response.

Examples
--------
>>> err = UnreadableFileError("scan/1.dcm", "file is truncated", hint="re-export the series")
>>> str(err)
'scan/1.dcm: file is truncated (re-export the series)'
>>> isinstance(err, MedsightError)
True
"""

from __future__ import annotations

import os

__all__ = [
    "EmptyInputError",
    "GeometryError",
    "InvalidInputError",
    "MedsightError",
    "UnreadableFileError",
    "UnsupportedFormatError",
    "short_reason",
]


class MedsightError(Exception):
    """Base class of every error medsight reports to a user.

    Parameters
    ----------
    where : str or os.PathLike or None
        The file, folder or field the problem is in.
    problem : str
        What is wrong, in a few words.
    hint : str, optional
        What the user can do about it.
    """

    def __init__(
        self, where: str | os.PathLike[str] | None, problem: str, *, hint: str | None = None
    ) -> None:
        self.where = None if where is None else os.fspath(where)
        self.problem = problem
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.problem if self.where is None else f"{self.where}: {self.problem}"
        return f"{text} ({self.hint})" if self.hint else text

    def __reduce__(self) -> tuple[object, ...]:  # keep pickling (multiprocessing) working
        return (_rebuild, (type(self), self.where, self.problem, self.hint))


def _rebuild(
    cls: type[MedsightError], where: str | None, problem: str, hint: str | None
) -> MedsightError:
    return cls(where, problem, hint=hint)


class InvalidInputError(MedsightError, ValueError):
    """An argument or a field holds a value medsight cannot use."""


class UnreadableFileError(MedsightError, OSError):
    """A file exists but cannot be parsed: truncated, corrupt, or not what its name says."""


class UnsupportedFormatError(MedsightError, ValueError):
    """A file or encoding that medsight recognises but cannot decode (e.g. a transfer syntax)."""


class EmptyInputError(MedsightError, ValueError):
    """A path that holds nothing medsight can read (an empty folder, no image files)."""


class GeometryError(MedsightError, ValueError):
    """Inconsistent geometry: mixed orientations or sizes in one series, a bad affine."""


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """First line of an exception's message, cut to ``limit`` characters, for one-line errors.

    Examples
    --------
    >>> short_reason(ValueError("bad value\\nmore detail"))
    'bad value'
    >>> short_reason(KeyError())
    'KeyError'
    """
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."
