"""One bounded, thread-safe cache of built predictors, so the service reuses loaded models.

Building a predictor (reading the weights, checking their hash, building the network, moving
it to the device, opening an ONNX Runtime session) costs far more than one small analysis.
:func:`cached_model` returns the predictor built earlier for the same

* **factory** (``Predictor``, ``Segmenter``, ``RiskPredictor``, ``Detector``, ``Denoiser`` ...;
  the factory object itself is the key, not its name),
* **package folder** (resolved path) *and its files' state*: the name, size, modification
  time and inode of every file at the top of the folder (``model.json``, the weights,
  ``plan.json``, the ONNX files; a package keeps all its files there) and the digest of the
  small ones (:func:`package_signature`); a package rewritten in place (retrained,
  re-exported, a threshold edited) is therefore built anew, and every predictor built from
  the folder's old files is dropped,
* **options** (device, tta, crop, ...), and the **backend** the call would resolve to
  (:func:`medsight.inference.onnx_backend.resolve_backend`: ``--backend`` is a context value,
  so the same package may run on torch in one request and ONNX in another).

The cache is least-recently-used with ``MEDSIGHT_MODEL_CACHE`` entries (default 8; ``0``
turns caching off, every call builds; ``medsight serve`` sizes it from its ``model_cache``
setting, which reads the same variable).  Two threads asking for the same missing entry build
it once (the second waits for the first).  A call whose options cannot be a key (a list, a
dict), or whose package has no folder on disk, builds uncached rather than guess.

Sharing a predictor between threads
-----------------------------------
A cached predictor is used by several threads at once (the service's worker and its what-if
routes).  The plain forward pass stays lock-free: torch inference under ``no_grad`` keeps no
state on the network, ONNX Runtime sessions may be run concurrently.  Whatever keeps state on
a shared predictor or network for longer than one forward pass must not see another thread's
work:

* forward hooks (:func:`medsight.inference.features.capture`, Grad-CAM in
  :mod:`medsight.explain.cam`) record only the forward passes of the thread that registered
  them, and are removed when the call ends;
* state a library keeps on the object between calls (e.g. MONAI's RetinaNet detector stores the
  anchors of the last image shape) is per call or held under :func:`model_lock`.

Examples
--------
>>> calls = []
>>> def build(folder, **options):
...     calls.append(options)
...     return object()
>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> cache = ModelCache(size=2)
>>> cache.get(build, folder, tta=True) is cache.get(build, folder, tta=True)
True
>>> len(calls), len(cache)
(1, 1)
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from medsight.core.errors import InvalidInputError

__all__ = [
    "ENV_SIZE",
    "ModelCache",
    "cached_model",
    "clear",
    "configure",
    "default_cache",
    "model_lock",
    "package_signature",
]

T = TypeVar("T")

#: The environment variable that sizes the process-wide cache (``0`` = off).
ENV_SIZE = "MEDSIGHT_MODEL_CACHE"
DEFAULT_SIZE = 8
#: Files up to this size are hashed into a package's signature (see :func:`package_signature`).
SMALL_FILE = 256 * 1024


def _checked_size(size: Any, where: str) -> int:
    try:
        value = int(str(size).strip())
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidInputError(where, f"is {size!r}", hint="give a whole number >= 0 (0 = off)")
    return value


def _env_size() -> int:
    raw = os.environ.get(ENV_SIZE, "").strip()
    return _checked_size(raw, f"environment variable {ENV_SIZE}") if raw else DEFAULT_SIZE


def package_signature(folder: Path) -> tuple[tuple[str, int, int, int, str], ...]:
    """``(name, size, mtime_ns, inode, digest)`` of every file at the top of a package folder.

    ``digest`` is the sha256 of files up to :data:`SMALL_FILE` bytes (``model.json``,
    ``plan.json``, ``weights.sha256``, the card) and empty for larger ones (the weights, whose
    digest file changes with them; ONNX files, recorded in ``model.json``): a file's
    modification time ticks only every few milliseconds, so a small file rewritten at once
    with the same length (a threshold edited from 0.5 to 0.7) is still noticed.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "model.json").write_text("{}")
    >>> [(row[0], row[1], row[4][:8]) for row in package_signature(folder)]
    [('model.json', 2, '44136fa3')]
    """
    rows = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_file():
                st = entry.stat()
                digest = ""
                if st.st_size <= SMALL_FILE:
                    with open(entry.path, "rb") as fh:
                        digest = hashlib.sha256(fh.read()).hexdigest()
                rows.append((entry.name, st.st_size, st.st_mtime_ns, st.st_ino, digest))
    return tuple(sorted(rows))


def _package_path(package: Any) -> Path | None:
    """The package's folder, or None where it has none (an in-memory stand-in)."""
    path = getattr(package, "path", package)
    try:
        return Path(os.fspath(path)).resolve()
    except TypeError:
        return None


def _backend_of(package: Any, backend: Any) -> str | None:
    from medsight.inference.onnx_backend import resolve_backend

    try:
        return resolve_backend(package if hasattr(package, "spec") else None, backend)
    except InvalidInputError:
        return None  # the factory raises the same error itself


class ModelCache:
    """A least-recently-used map from (factory, package, options) to a built predictor.

    Parameters
    ----------
    size : int, optional
        Entries kept (default ``MEDSIGHT_MODEL_CACHE``, else 8); 0 keeps none.

    Raises
    ------
    InvalidInputError
        ``size`` (or the environment variable) is not a whole number >= 0.
    """

    def __init__(self, size: int | None = None) -> None:
        self._size = _env_size() if size is None else _checked_size(size, "model cache size")
        self._lock = threading.Lock()
        # key -> (package files' signature, predictor)
        self._entries: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()
        self._building: dict[Hashable, threading.Lock] = {}
        self.builds = 0
        self.hits = 0

    @property
    def size(self) -> int:
        """How many predictors are kept (0: caching is off)."""
        return self._size

    def resize(self, size: int) -> None:
        """Keep at most ``size`` predictors from now on (the least recently used go first)."""
        size = _checked_size(size, "model cache size")
        with self._lock:
            self._size = size
            self._evict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, factory: Callable[..., T], package: Any, /, **options: Any) -> T:
        """The predictor ``factory(package, **options)``, built once while the package is
        unchanged on disk."""
        path = _package_path(package)
        if self._size <= 0 or path is None:  # off, or no folder to watch
            return factory(package, **options)
        backend = _backend_of(package, options.get("backend"))
        key = (factory, str(path), backend, tuple(sorted(options.items())))
        try:
            hash(key)
            signature = package_signature(path)
        except (TypeError, OSError):  # options that cannot be a key; no folder to read
            return factory(package, **options)
        with self._lock:
            found = self._lookup(key, signature)
            if found is not None:
                return found[0]  # type: ignore[no-any-return]
            build_lock = self._building.setdefault(key, threading.Lock())
        with build_lock:  # one build per key at a time; the others wait and find it
            with self._lock:
                found = self._lookup(key, signature)
                if found is not None:
                    return found[0]  # type: ignore[no-any-return]
            try:
                value = factory(package, **options)
            except BaseException:
                with self._lock:
                    if self._building.get(key) is build_lock:
                        del self._building[key]
                raise
            with self._lock:  # stored and unregistered at once: no window for a second build
                if self._building.get(key) is build_lock:
                    del self._building[key]
                self._forget_stale(str(path), signature)
                self._entries[key] = (signature, value)
                self._entries.move_to_end(key)
                self.builds += 1
                self._evict()
        return value

    def _lookup(self, key: Hashable, signature: Any) -> tuple[Any] | None:
        """The entry for ``key`` if built from the same files (call with the lock held)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] != signature:  # the package was rewritten: forget the stale predictors
            self._forget_stale(key[1], signature)  # type: ignore[index]
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return (entry[1],)

    def _forget_stale(self, path: str, signature: Any) -> None:
        """Drop every entry of folder ``path`` built from other files (lock held)."""
        stale = [k for k, (sig, _) in self._entries.items() if k[1] == path and sig != signature]
        for k in stale:
            del self._entries[k]

    def _evict(self) -> None:
        while len(self._entries) > max(self._size, 0):
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every predictor (they are freed once no caller holds them)."""
        with self._lock:
            self._entries.clear()


_default: ModelCache | None = None
_default_lock = threading.Lock()


def default_cache() -> ModelCache:
    """The process-wide cache (created on first use, sized from ``MEDSIGHT_MODEL_CACHE``)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ModelCache()
        return _default


def configure(size: int) -> ModelCache:
    """Size the process-wide cache (``medsight serve``/``worker`` from their settings)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ModelCache(size)
        else:
            _default.resize(size)
        return _default


def cached_model(factory: Callable[..., T], package: Any, /, **options: Any) -> T:
    """``factory(package, **options)`` from the process-wide cache (see the module notes)."""
    return default_cache().get(factory, package, **options)


def clear() -> None:
    """Empty the process-wide cache."""
    default_cache().clear()


_locks: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_locks_lock = threading.Lock()


def model_lock(model: Any) -> threading.RLock:
    """A lock owned by ``model`` (a predictor or network) for work that must not interleave
    with another thread's on the same model (state a library keeps on the object between
    calls); freed with the model.

    Examples
    --------
    >>> class Net:
    ...     pass
    >>> net = Net()
    >>> model_lock(net) is model_lock(net), model_lock(net) is model_lock(Net())
    (True, False)
    """
    with _locks_lock:
        lock = _locks.get(model)
        if lock is None:
            lock = _locks[model] = threading.RLock()
        return lock
