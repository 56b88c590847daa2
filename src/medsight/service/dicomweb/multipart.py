"""``multipart/related`` bodies (PS3.18 8.6): written for WADO-RS, read for STOW-RS.

Examples
--------
>>> body, ctype = write_parts([(b"abc", "application/dicom")], "application/dicom")
>>> [data for data, _ in read_parts(body, ctype)]
[b'abc']
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from medsight.core.errors import InvalidInputError

__all__ = ["accepted_syntaxes", "read_parts", "write_parts"]


def write_parts(parts: Sequence[tuple[bytes, str]], type_: str) -> tuple[bytes, str]:
    """A multipart/related body of ``(data, part content type)`` and its Content-Type."""
    boundary = secrets.token_hex(16)
    out = bytearray()
    for data, ctype in parts:
        out += f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode()
        out += data
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f'multipart/related; type="{type_}"; boundary={boundary}'


def _param(header: str, name: str) -> str | None:
    m = re.search(rf'{name}\s*=\s*("([^"]*)"|[^;,\s]+)', header, re.IGNORECASE)
    if m is None:
        return None
    return m.group(2) if m.group(2) is not None else m.group(1)


def read_parts(body: bytes, content_type: str) -> list[tuple[bytes, str]]:
    """The parts of a multipart/related ``body`` as ``(data, content type)``.

    Raises
    ------
    InvalidInputError
        Not multipart/related, no boundary, or no part.
    """
    if not content_type.lower().startswith("multipart/related"):
        raise InvalidInputError("STOW-RS body", "send multipart/related; type=application/dicom")
    boundary = _param(content_type, "boundary")
    if not boundary:
        raise InvalidInputError("STOW-RS body", "Content-Type has no boundary")
    default = _param(content_type, "type") or "application/dicom"
    delimiter = b"--" + boundary.encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        ctype = default
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type":
                ctype = value.strip()
        parts.append((data.removesuffix(b"\r\n"), ctype))
    if not parts:
        raise InvalidInputError("STOW-RS body", "holds no part")
    return parts


def accepted_syntaxes(accept: str) -> list[str] | None:
    """Transfer syntaxes an Accept header allows for frames: a list, or None for any (``*``).

    Without a ``transfer-syntax`` parameter the default is Explicit VR Little Endian
    (PS3.18 8.7.3.5).

    Examples
    --------
    >>> accepted_syntaxes('multipart/related; type="application/octet-stream"; transfer-syntax=*')
    >>> accepted_syntaxes("multipart/related; type=application/octet-stream")
    ['1.2.840.10008.1.2.1']
    """
    found: list[str] = []
    for item in accept.split(","):
        value = _param(item, "transfer-syntax")
        if value == "*":
            return None
        if value:
            found.append(value)
        elif "*/*" in item or "octet-stream" in item or "multipart/related" in item:
            found.append("1.2.840.10008.1.2.1")
    return found or ["1.2.840.10008.1.2.1"]
