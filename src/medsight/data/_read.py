"""Reading one image file for the adapters, through :func:`medsight.io.read_image`.

The adapters read lazily, inside a Case's loader; this wrapper makes every failure an
:class:`~medsight.core.errors.UnreadableFileError` naming the file, so the quality report can
list it and carry on with the other files.
"""

from __future__ import annotations

import os
from pathlib import Path

from medsight.core import Image, MedsightError, UnreadableFileError

__all__ = ["read_image"]


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read one image file; raise UnreadableFileError naming it on any failure.

    Examples
    --------
    >>> read_image("no/such/file.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medsight.core.errors.UnreadableFileError: no/such/file.png: ...
    """
    from medsight.io import read_image as io_read_image

    p = Path(path)
    if not p.is_file():
        raise UnreadableFileError(p, "file does not exist")
    try:
        return io_read_image(p)
    except MedsightError:
        raise
    except Exception as exc:  # a decoder's own error: name the file
        raise UnreadableFileError(p, f"cannot read image ({type(exc).__name__}: {exc})") from exc
