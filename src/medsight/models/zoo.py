"""The model zoo: small, verified ModelPackages that ship inside the installed package.

Each sub-folder of ``medsight/zoo`` holding a ``model.json`` is a package, trained by a script
in the repository (named in its model card) on public data.  ``MEDSIGHT_ZOO`` may point at
another folder of packages (several separated by ``os.pathsep``) to extend it.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from medsight.core.errors import MedsightError
from medsight.models.package import ModelPackage, PackageError

__all__ = ["zoo_folders", "zoo_packages"]


def zoo_folders() -> list[Path]:
    """Folders searched for packages: the bundled zoo, then ``MEDSIGHT_ZOO`` entries."""
    folders = [Path(str(files("medsight") / "zoo"))]
    extra = os.environ.get("MEDSIGHT_ZOO", "")
    folders += [Path(p) for p in extra.split(os.pathsep) if p]
    return [f for f in folders if f.is_dir()]


def zoo_packages(*, strict: bool = False) -> tuple[list[ModelPackage], list[str]]:
    """Every package in the zoo, verified; and the problems of those that failed to load.

    Parameters
    ----------
    strict : bool
        Raise on the first broken package instead of listing it.
    """
    packages, problems = [], []
    for folder in zoo_folders():
        for candidate in sorted(p for p in folder.iterdir() if (p / "model.json").is_file()):
            try:
                packages.append(ModelPackage.load(candidate))
            except (PackageError, MedsightError) as err:
                if strict:
                    raise
                problems.append(str(err))
    return packages, problems
