"""Provenance of synthetic images: ``synthetic.json`` beside a folder of generated images.

``medsight synthesize`` writes images in the image-folder layout (``ROOT/<class>/<file>.png``,
:mod:`medsight.data.folder`) and, in ``ROOT/synthetic.json``, what made each one::

    {"synthetic": true,
     "models": {"toy-ddpm@0.1.0": {"name": "toy-ddpm", "version": "0.1.0", "sha256": "..."}},
     "images": {"b/toy-ddpm-b-s3-0000.png":
                {"model": "toy-ddpm@0.1.0", "seed": 3, "index": 0, "label": "b", "steps": 50}}}

The folder adapter reads it: every case of such a folder gets ``attributes["synthetic"] =
True`` and ``attributes["source"]`` (``"synthetic: <model id>, seed <s>"``), so quality checks,
reports and training can tell synthetic cases from real ones (an image in the folder that
``synthetic.json`` does not list is still marked synthetic, with source ``"synthetic:
unknown"``, and reported as a layout issue).

Examples
--------
>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = add_provenance(root, {"name": "m", "version": "1", "sha256": "ab"},
...                    {"x/a.png": {"seed": 1, "index": 0, "label": "x"}})
>>> prov = read_provenance(root)
>>> case_attributes(prov, "x/a.png")["source"], case_attributes(prov, "x/b.png")["source"]
('synthetic: m@1, seed 1', 'synthetic: unknown')
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsight.core import InvalidInputError, UnreadableFileError

__all__ = ["PROVENANCE_FILE", "add_provenance", "case_attributes", "read_provenance"]

#: The provenance file of a folder of synthetic images.
PROVENANCE_FILE = "synthetic.json"


def read_provenance(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``ROOT/synthetic.json`` as a dict, None when the folder has none.

    Raises
    ------
    UnreadableFileError
        The file exists but is not a synthetic-provenance JSON object.
    """
    path = Path(root) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnreadableFileError(path, f"is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("synthetic") is not True:
        raise UnreadableFileError(path, 'is not a synthetic-image provenance ("synthetic": true)')
    data.setdefault("images", {})
    data.setdefault("models", {})
    return data


def add_provenance(
    root: str | os.PathLike[str], model: Mapping[str, Any], images: Mapping[str, Mapping[str, Any]]
) -> Path:
    """Merge ``images`` (relative path -> seed, index, label ...) made by ``model`` (``name``,
    ``version``, ``sha256``) into ``ROOT/synthetic.json``, written atomically.

    Raises
    ------
    InvalidInputError
        ``ROOT`` holds images but no ``synthetic.json``: real and synthetic images would mix.
    """
    from medsight.io.atomic import write_text_atomic

    folder = Path(root)
    data = read_provenance(folder)
    if data is None:
        if folder.is_dir() and any(p.is_dir() and any(p.iterdir()) for p in folder.iterdir()):
            raise InvalidInputError(
                folder,
                f"holds images but no {PROVENANCE_FILE}: synthetic images would mix with real ones",
                hint="write synthetic images to a new or an earlier --out of medsight synthesize",
            )
        data = {"synthetic": True, "models": {}, "images": {}}
    model_id = f"{model['name']}@{model['version']}"
    data["models"][model_id] = dict(model)
    for rel, info in images.items():
        data["images"][rel] = {"model": model_id, **info}
    folder.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(folder / PROVENANCE_FILE, json.dumps(data, indent=2) + "\n")


def case_attributes(provenance: Mapping[str, Any], rel: str) -> dict[str, Any]:
    """The case attributes that mark the image at ``rel`` (POSIX, relative to ROOT) synthetic."""
    info = provenance.get("images", {}).get(rel)
    if info is None:
        return {"synthetic": True, "source": "synthetic: unknown"}
    attrs: dict[str, Any] = {
        "synthetic": True,
        "source": f"synthetic: {info.get('model', 'unknown')}, seed {info.get('seed')}",
        "synthetic_model": info.get("model"),
        "synthetic_seed": info.get("seed"),
    }
    return attrs
