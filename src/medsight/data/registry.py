"""The adapter registry: ``load_dataset("medmnist:PATH")`` picks the adapter named before the colon.

A spec is ``KIND:PATH`` optionally followed by ``?key=value&key=value`` options passed to the
adapter as keyword arguments (``csv:meta.csv?label=finding&patient=patientid``), except
``license=`` and ``source=``, which any spec may carry: they set the Dataset's provenance (over
what the adapter found, e.g. in an MSD ``dataset.json``).  Adapters are
plain functions ``(path, **options) -> Dataset`` registered with :func:`register_adapter`; the
built-in ones register themselves when :mod:`medsight.data` is imported.

Examples
--------
>>> parse_spec("csv:data/meta.csv?label=finding&path=image_file")
('csv', 'data/meta.csv', {'label': 'finding', 'path': 'image_file'})
>>> parse_spec("nothing")  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
medsight.core.errors.InvalidInputError: nothing: no such file or folder
(give an existing path or KIND:PATH)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl

from medsight.core import InvalidInputError
from medsight.data.dataset import Dataset

__all__ = [
    "Adapter",
    "adapter_names",
    "guess_kind",
    "load_dataset",
    "parse_spec",
    "register_adapter",
]


class Adapter(Protocol):
    """An adapter reads a data set from a path with string options."""

    def __call__(self, path: str | os.PathLike[str], /, **options: str) -> Dataset: ...


_ADAPTERS: dict[str, Adapter] = {}
#: Options :func:`load_dataset` handles itself for every adapter.
_PROVENANCE_OPTIONS = ("license", "source")


def _origin(func: object) -> tuple[str, str]:
    return (getattr(func, "__module__", ""), getattr(func, "__qualname__", repr(func)))


def register_adapter(kind: str) -> Callable[[Adapter], Adapter]:
    """Decorator registering an adapter under ``kind`` (``"medmnist"``, ``"msd"`` ...).

    Examples
    --------
    >>> from medsight.core import Case
    >>> @register_adapter("toy-example")
    ... def load_toy(path, /, **options):
    ...     return Dataset("toy", [Case(str(path))])
    >>> load_dataset("toy-example:abc")[0].case_id
    'abc'
    >>> _ = _ADAPTERS.pop("toy-example")
    """

    def decorate(func: Adapter) -> Adapter:
        old = _ADAPTERS.get(kind)
        if old is not None and _origin(old) != _origin(func):  # a reloaded module may re-register
            raise InvalidInputError("adapter registry", f"kind {kind!r} is already registered")
        _ADAPTERS[kind] = func
        return func

    return decorate


def adapter_names() -> tuple[str, ...]:
    """The registered adapter kinds, sorted.

    Examples
    --------
    >>> import medsight.data
    >>> adapter_names()
    ('boxes', 'coco', 'csv', 'dicom', 'folder', 'medmnist', 'mias', 'msd', 'voc')
    """
    return tuple(sorted(_ADAPTERS))


def guess_kind(path: str | os.PathLike[str]) -> str | None:
    """The adapter kind a path's layout suggests, None when nothing fits.

    ``.npz`` -> medmnist, ``.csv`` -> csv, a folder with ``imagesTr`` -> msd, a folder whose
    subfolders (or whose split folders' subfolders: ``Training/<class>/``) hold PNG/JPEG/TIFF
    images -> folder, any other folder -> dicom.

    Examples
    --------
    >>> guess_kind("data/breastmnist.npz"), guess_kind("meta.csv")
    ('medmnist', 'csv')
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return "medmnist"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if not p.is_dir():
        return None
    if (p / "imagesTr").is_dir():
        return "msd"
    raster = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
    for sub in p.iterdir():
        if sub.is_dir() and any(f.suffix.lower() in raster for f in sub.iterdir()):
            return "folder"
    split_names = {"train", "training", "val", "valid", "validation", "test", "testing"}
    for sub in p.iterdir():  # ROOT/<split>/<class>/<image> (data.folder.SPLIT_FOLDERS)
        if sub.is_dir() and sub.name.lower() in split_names:
            for cls in sub.iterdir():
                if cls.is_dir() and any(f.suffix.lower() in raster for f in cls.iterdir()):
                    return "folder"
    return "dicom"


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split ``KIND:PATH?opt=v&...`` into kind, path and options.

    A spec without ``KIND:`` whose path exists gets the kind :func:`guess_kind` suggests.
    """
    kind, sep, rest = spec.partition(":")
    if (not sep or kind not in _ADAPTERS) and "?" not in spec and Path(spec).exists():
        guessed = guess_kind(spec)
        if guessed is not None:
            return guessed, spec, {}
    if not sep and "?" not in spec and not Path(spec).exists():
        raise InvalidInputError(
            spec, "no such file or folder", hint="give an existing path or KIND:PATH"
        )
    if not sep or not kind or not rest:
        raise InvalidInputError(
            f"data spec {spec!r}",
            "expected KIND:PATH with KIND one of medmnist, msd, folder, csv, dicom",
            hint="e.g. medmnist:data/breastmnist.npz",
        )
    path, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False)) if query else {}
    return kind.strip().lower(), path, options


def load_dataset(spec: str, **options: str) -> Dataset:
    """Read a data set from a ``KIND:PATH`` spec.

    Parameters
    ----------
    spec : str
        ``medmnist:FILE.npz``, ``msd:FOLDER``, ``folder:FOLDER``, ``csv:FILE.csv``,
        ``dicom:FOLDER`` with optional ``?key=value`` options; ``license=`` and ``source=``
        set the Dataset's provenance for every kind.
    **options
        More adapter options (override those in the spec).

    Raises
    ------
    InvalidInputError
        Malformed spec or unknown kind.
    EmptyInputError, UnreadableFileError
        The path does not hold the layout the adapter expects.

    Examples
    --------
    >>> load_dataset("zip:x")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    medsight.core.errors.InvalidInputError: data spec 'zip:x': unknown kind 'zip'; known kinds
    are boxes, coco, csv, dicom, folder, medmnist, mias, msd, voc
    """
    import medsight.data  # noqa: F401  (registers the built-in adapters)

    kind, path, spec_options = parse_spec(spec)
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        raise InvalidInputError(
            f"data spec {spec!r}",
            f"unknown kind {kind!r}; known kinds are {', '.join(adapter_names())}",
        )
    merged = {**spec_options, **options}
    provenance = {key: merged.pop(key) for key in _PROVENANCE_OPTIONS if key in merged}
    ds = adapter(Path(path), **merged)
    return ds.with_provenance(**provenance) if provenance else ds
