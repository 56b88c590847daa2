"""Synthetic images as extra training cases (``medsight train classify --synthetic DIR``).

``DIR`` is a folder written by ``medsight synthesize`` (image-folder layout plus
``synthetic.json``).  Its images join the **training** split only, never validation or test,
so every reported metric stays on real images.  Classes are matched by name onto the real
data's labels (a synthetic class the real data lacks is an error); ``ratio`` synthetic images
per real training image are drawn without replacement with the run's seed (all of them when the
folder holds fewer, which the summary records).

Examples
--------
>>> import tempfile, pathlib
>>> synthetic_training_cases(pathlib.Path(tempfile.mkdtemp()), ["a"], 4, 0.5, 0)
Traceback (most recent call last):
...
medsight.core.errors.EmptyInputError: ...: no class subfolders holding images ...
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from medsight.core import Case, InvalidInputError, Split
from medsight.data.folder import load_folder
from medsight.data.synthetic import PROVENANCE_FILE, read_provenance

__all__ = ["synthetic_training_cases"]


def synthetic_training_cases(
    folder: Path, names: list[str], n_real: int, ratio: float, seed: int
) -> tuple[list[Case], dict[str, Any]]:
    """``round(ratio * n_real)`` synthetic training cases labelled by ``names``, and a summary.

    Raises
    ------
    InvalidInputError
        The folder has no ``synthetic.json``, or a class name the real data does not have.
    """
    ds = load_folder(folder)
    provenance = read_provenance(folder)
    if provenance is None:
        raise InvalidInputError(
            folder,
            f"has no {PROVENANCE_FILE}: it is not a folder of synthetic images",
            hint="pass a folder written by `medsight synthesize` (real images go in --data)",
        )
    unknown = sorted(set(ds.label_names.values()) - set(names))
    if unknown:
        raise InvalidInputError(
            f"--synthetic {folder}",
            f"class folders {', '.join(map(repr, unknown))} are not labels of the real data "
            f"({', '.join(map(repr, names))})",
            hint="synthesize with a model trained on the same data set and label names",
        )
    to_real = {i: names.index(n) for i, n in ds.label_names.items()}
    wanted = round(ratio * n_real)
    rng = np.random.default_rng([seed, 7])
    pick = np.sort(rng.choice(len(ds), size=min(wanted, len(ds)), replace=False))
    cases = []
    for i in pick:
        c = ds[int(i)]
        cid = f"synthetic:{c.case_id}"
        cases.append(c.replace(case_id=cid, patient_id=cid, label=to_real[int(c.label)],  # type: ignore[arg-type]
                               split=Split.TRAIN))  # fmt: skip
    summary = {
        "folder": Path(folder).name,
        "ratio": ratio,
        "n_requested": wanted,
        "n_used": len(cases),
        "n_available": len(ds),
        "models": sorted(provenance.get("models", {})),
        "class_counts": dict(sorted(Counter(names[int(c.label)] for c in cases).items())),  # type: ignore[arg-type]
    }
    return cases, summary
