"""Receive a multipart upload body into the store's incoming area, or nothing at all.

An upload's file parts stream to ``<home>/incoming/<request id>/<n>.part`` while the body
arrives (not to the system's temporary folder, not into memory), so a large upload costs disk
in the store's own volume and what is half-received can be seen and removed.  The caller
ingests the parts and then removes the folder with :func:`discard_incoming`, whatever
happened.  A client that goes away mid-body (a cancelled upload, a closed tab) raises
:class:`UploadCancelled`: the folder is removed before it propagates, so a cancelled request
leaves nothing behind and never reaches the study store.  Only a server killed mid-upload can
leave a folder; :func:`sweep_incoming` removes those once nothing has written to them for a day
(the upload route calls it, so no start-up step is needed and concurrent workers are safe).

Examples
--------
>>> import tempfile, pathlib
>>> folder = new_incoming(pathlib.Path(tempfile.mkdtemp()))
>>> folder.parent.name, folder.is_dir()
('incoming', True)
>>> discard_incoming(folder); folder.exists()
False
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from medsight.core.errors import InvalidInputError
from medsight.service.errors import UploadTooLargeError

__all__ = [
    "ReceivedFile",
    "UploadCancelled",
    "discard_incoming",
    "new_incoming",
    "receive_files",
    "sweep_incoming",
]


class UploadCancelled(Exception):
    """The client went away before the upload was complete (``received``: bytes that came)."""

    def __init__(self, received: int) -> None:
        super().__init__(f"upload cancelled by the client after {received} bytes")
        self.received = received


@dataclasses.dataclass(frozen=True)
class ReceivedFile:
    """One file part of the body: the name the client gave and where its bytes are."""

    filename: str
    path: Path


def new_incoming(home: Path) -> Path:
    """A fresh, empty folder under ``home/incoming`` for one request's body."""
    folder = home / "incoming" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


def discard_incoming(folder: Path) -> None:
    """Remove one request's incoming folder and everything in it (missing is fine)."""
    shutil.rmtree(folder, ignore_errors=True)


def sweep_incoming(home: Path, older_than_s: float = 86400.0) -> int:
    """Remove request folders under ``home/incoming`` with nothing written for
    ``older_than_s`` seconds (left by a server that was killed); returns how many went.

    A folder's age is that of its newest entry, so a slow upload still streaming is kept.

    Examples
    --------
    >>> import os, tempfile, pathlib
    >>> home = pathlib.Path(tempfile.mkdtemp())
    >>> old, new = new_incoming(home), new_incoming(home)
    >>> os.utime(old, (0, 0))
    >>> sweep_incoming(home), old.exists(), new.exists()
    (1, False, True)
    """
    root, removed = home / "incoming", 0
    if not root.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    for folder in root.iterdir():
        try:
            newest = max(p.stat().st_mtime for p in [folder, *folder.iterdir()])
        except (FileNotFoundError, NotADirectoryError):  # gone meanwhile, or not a request's
            continue
        if newest < cutoff:
            discard_incoming(folder)
            removed += 1
    return removed


@dataclasses.dataclass
class _Part:
    field: str = ""
    filename: str | None = None
    disposition: bytes = b""
    handle: BinaryIO | None = None
    data: bytearray = dataclasses.field(default_factory=bytearray)


class _Collector:
    """python-multipart callbacks: file parts to numbered files, small fields ignored."""

    def __init__(self, folder: Path, field: str, max_files: int) -> None:
        self.folder, self.field, self.max_files = folder, field, max_files
        self.files: list[ReceivedFile] = []
        self.pending: list[tuple[BinaryIO, bytes]] = []  # written outside the event loop
        self.closing: list[BinaryIO] = []
        self.part = _Part()
        self.ended = False
        self._header_name = b""
        self._header_value = b""

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_val,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_end": self._finished,
        }

    def _finished(self) -> None:
        self.ended = True

    def _begin(self) -> None:
        self.part = _Part()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_val(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self.part.disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self.part.disposition)
        if b"name" not in options:
            raise InvalidInputError("upload", "a multipart part has no Content-Disposition name")
        self.part.field = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options and self.part.field == self.field:
            if len(self.files) >= self.max_files:
                raise UploadTooLargeError("upload", f"holds more than {self.max_files} files")
            name = options[b"filename"].decode("utf-8", "replace") or "file"
            path = self.folder / f"{len(self.files):05d}.part"
            self.part.handle = open(path, "wb")  # noqa: SIM115 - closed by _end or receive_files
            self.files.append(ReceivedFile(name, path))

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.part.handle is not None:
            self.pending.append((self.part.handle, bytes(data[start:end])))
        elif len(self.part.data) + end - start > 64 * 1024:
            raise InvalidInputError("upload", f"form field {self.part.field!r} is over 64 KiB")
        else:
            self.part.data.extend(data[start:end])

    def _end(self) -> None:
        if self.part.handle is not None:
            self.closing.append(self.part.handle)


def _flush(pending: list[tuple[BinaryIO, bytes]], closing: list[BinaryIO]) -> None:
    for handle, chunk in pending:
        handle.write(chunk)
    for handle in closing:
        handle.close()


async def receive_files(
    headers: Mapping[str, str],
    stream: AsyncIterator[bytes],
    folder: Path,
    *,
    field: str = "files",
    max_files: int,
) -> list[ReceivedFile]:
    """Stream the multipart body's ``field`` file parts into ``folder``, one file each.

    ``headers`` needs ``content-type`` (with the boundary); ``stream`` yields the body (and
    enforces the byte limit).  Other fields are read and dropped.

    Raises
    ------
    UploadCancelled
        The client disconnected before the body ended; ``folder`` is removed.
    InvalidInputError
        A malformed body (no boundary, a part without a name, a broken multipart framing).
    UploadTooLargeError
        More than ``max_files`` file parts (a too-long body is the stream's to refuse).
    """
    _, params = parse_options_header(headers.get("content-type", ""))
    if b"boundary" not in params:
        raise InvalidInputError("upload", "the multipart Content-Type has no boundary")
    collector = _Collector(folder, field, max_files)
    received = 0
    try:
        parser = MultipartParser(params[b"boundary"], collector.callbacks())
        async for chunk in stream:
            received += len(chunk)
            parser.write(chunk)
            if collector.pending or collector.closing:
                pending, closing = collector.pending, collector.closing
                collector.pending, collector.closing = [], []
                await anyio.to_thread.run_sync(_flush, pending, closing)
        parser.finalize()
    except ClientDisconnect as exc:
        _close_all(collector)
        discard_incoming(folder)
        raise UploadCancelled(received) from exc
    except FormParserError as exc:
        _close_all(collector)
        raise InvalidInputError("upload", f"malformed multipart body ({exc})") from exc
    except BaseException:
        _close_all(collector)
        raise
    _close_all(collector)
    if not collector.ended:
        raise InvalidInputError("upload", "the multipart body ends before its closing boundary")
    return collector.files


def _close_all(collector: _Collector) -> None:
    """Close every part file (also one a broken body left open)."""
    handles = {id(h): h for h, _ in collector.pending} | {id(h): h for h in collector.closing}
    if collector.part.handle is not None:
        handles[id(collector.part.handle)] = collector.part.handle
    for handle in handles.values():
        with contextlib.suppress(OSError):
            handle.close()
