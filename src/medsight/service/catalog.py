"""The model packages a service can run, by id (``name@version``), loaded once on first use.

Examples
--------
>>> catalog = PackageCatalog([])
>>> catalog.resolve(["nope@1"]) # doctest: +ELLIPSIS
Traceback (most recent call last):
...
medsight.core.errors.InvalidInputError: packages: unknown package id 'nope@1' (available: ...)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from medsight.core.errors import InvalidInputError
from medsight.models.package import ModelPackage

__all__ = ["PackageCatalog"]


class PackageCatalog:
    """Packages from folders (or the model zoo when none are given)."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self._folders = list(folders)
        self._packages: dict[str, ModelPackage] | None = None
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def packages(self) -> dict[str, ModelPackage]:
        """Every usable package by id."""
        with self._lock:
            if self._packages is None:
                if self._folders:
                    found = [ModelPackage.load(f) for f in self._folders]
                else:
                    from medsight.models.zoo import zoo_packages

                    found, self.problems = zoo_packages()
                self._packages = {p.id: p for p in found}
            return self._packages

    def resolve(self, ids: Sequence[str] | None) -> list[ModelPackage]:
        """Packages for ``ids`` (all when ``ids`` is empty or None)."""
        known = self.packages()
        if not ids:
            if not known:
                raise InvalidInputError("packages", "the service has no model package configured")
            return list(known.values())
        for pid in ids:
            if pid not in known:
                have = ", ".join(sorted(known)) or "none"
                raise InvalidInputError(
                    "packages", f"unknown package id {pid!r} (available: {have})"
                )
        return [known[pid] for pid in ids]
