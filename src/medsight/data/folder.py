"""Image folders: one subfolder per class, optional masks found by a naming pattern.

``ROOT/<class>/<name>.png`` is an image of class ``<class>``; ``<name>_mask.png``,
``<name>_mask_1.png`` ... beside it are its masks (BUSI's layout), merged into one mask.
Masks stored as ``{0, 255}`` or ``{0, 1}`` become ``{0, 1}``; a mask with other values is kept
as it is, so the quality report can flag it.

The label is the merged mask when the folder has masks (``target=mask``, the default then),
else the class index (``target=class``).  The class name is always in
``case.attributes["class"]``.  Folders carry no patient ids: each image is its own patient.
A folder with a ``synthetic.json`` (written by ``medsight synthesize``) holds synthetic
images: every case gets ``attributes["synthetic"] = True`` and its ``source``
(:mod:`medsight.data.synthetic`), and the Dataset's source says so.

Examples
--------
>>> mask_of("benign (1)_mask_1.png", "_mask")
'benign (1).png'
>>> mask_of("benign (1).png", "_mask") is None
True
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medsight.core import Case, EmptyInputError, GeometryError, Image, InvalidInputError
from medsight.data._arrays import value_counts
from medsight.data._read import read_image
from medsight.data.dataset import Dataset, LayoutIssue, Task
from medsight.data.registry import register_adapter
from medsight.data.synthetic import case_attributes, read_provenance

__all__ = ["load_folder", "mask_of", "merge_masks"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def mask_of(file_name: str, mask_suffix: str) -> str | None:
    """The image file name a mask file belongs to, None if the name is not a mask's."""
    stem, dot, ext = file_name.rpartition(".")
    m = re.fullmatch(rf"(?P<base>.+){re.escape(mask_suffix)}(_\d+)?", stem)
    return f"{m['base']}{dot}{ext}" if m else None


def merge_masks(masks: list[Image], names: list[str]) -> Image:
    """Merge several masks of one image into one (union); check they share a shape.

    Examples
    --------
    >>> a = Image(np.array([[0, 255], [0, 0]], np.uint8))
    >>> b = Image(np.array([[0, 0], [255, 0]], np.uint8))
    >>> merge_masks([a, b], ["a", "b"]).array.tolist()
    [[0, 1], [1, 0]]
    """
    arrays = []
    for m in masks:
        arr = m.array
        if m.has_channels:  # an RGB-encoded mask: take the brightest channel
            arr = arr.max(axis=-1)
        arrays.append(arr)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise GeometryError(", ".join(names), f"masks of one image differ in shape: {shapes}")
    merged = np.maximum.reduce(arrays) if len(arrays) > 1 else arrays[0]
    values = set(value_counts(merged)[0].tolist())
    if values <= {0, 255} or values <= {0, 1}:
        merged = (merged > 0).astype(np.uint8)
    return Image(merged, masks[0].affine, spatial_ndim=masks[0].spatial_ndim)


def _mask_loader(paths: list[Path]) -> Callable[[], Image]:
    return lambda: merge_masks([read_image(p) for p in paths], [str(p) for p in paths])


def _image_loader(path: Path) -> Callable[[], Image]:
    return lambda: read_image(path)


@register_adapter("folder")
def load_folder(path: str | os.PathLike[str], /, **options: str) -> Dataset:
    """Read a class-per-subfolder image folder with optional masks.

    Parameters
    ----------
    path : path-like
        The folder holding one subfolder per class.
    **options
        ``mask_suffix=`` (default ``_mask``), ``target=class|mask``, ``name=``.

    Raises
    ------
    EmptyInputError
        No class subfolders with images.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from PIL import Image as P
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for cls in ("a", "b"):
    ...     (root / cls).mkdir()
    ...     P.new("L", (4, 3)).save(root / cls / "x.png")
    >>> ds = load_folder(root)
    >>> len(ds), ds.task, ds[1].label, ds[1].attributes["class"], ds[1].image().shape
    (2, <Task.BINARY: 'binary'>, 1, 'b', (4, 3))
    """
    root = Path(path)
    allowed = {"mask_suffix", "target", "name"}
    if set(options) - allowed:
        raise InvalidInputError(
            f"folder:{root}", f"unknown options {sorted(set(options) - allowed)}"
        )
    if not root.is_dir():
        raise EmptyInputError(root, "not a folder")
    suffix = options.get("mask_suffix", "_mask")
    classes = sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir()
        and not d.name.startswith(".")
        and any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir())
    )
    if not classes:
        raise EmptyInputError(
            root, "no class subfolders holding images", hint="expected ROOT/<class>/<image>.png"
        )
    entries: list[tuple[str, int, Path, list[Path]]] = []
    issues: list[LayoutIssue] = []
    for index, cls in enumerate(classes):
        files = sorted(
            p for p in (root / cls).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        masks: dict[str, list[Path]] = {}
        images = []
        for p in files:
            owner = mask_of(p.name, suffix)
            if owner is not None:
                masks.setdefault(owner, []).append(p)
            else:
                images.append(p)
        for p in images:
            entries.append((cls, index, p, masks.get(p.name, [])))
        names = {p.name for p in images}
        orphans = [str(m) for owner, ms in masks.items() if owner not in names for m in ms]
        if orphans:
            issues.append(LayoutIssue("orphan_file", "masks without an image", tuple(orphans)))
    has_masks = any(m for *_, m in entries)
    target = options.get("target", "mask" if has_masks else "class")
    if target not in ("mask", "class"):
        raise InvalidInputError("target", f"{target!r} is not 'mask' or 'class'")
    provenance = read_provenance(root)
    cases, files, unlisted = [], {}, []
    for cls, index, p, masks in entries:
        case_id = f"{cls}/{p.stem}"
        mask = _mask_loader(masks) if masks else None
        label: object = mask if target == "mask" else index
        attributes: dict[str, object] = {"class": cls}
        if provenance is not None:
            attributes |= case_attributes(provenance, f"{cls}/{p.name}")
            if f"{cls}/{p.name}" not in provenance["images"]:
                unlisted.append(str(p))
        cases.append(
            Case(
                case_id,
                images={"image": _image_loader(p)},
                label=label,  # type: ignore[arg-type]
                attributes=attributes,
            )
        )
        files[case_id] = {"image": str(p), **{f"mask_{i}": str(m) for i, m in enumerate(masks)}}
    if unlisted:
        issues.append(LayoutIssue("orphan_file", "images not in synthetic.json", tuple(unlisted)))
    if target == "mask":
        task, label_names = Task.SEGMENTATION, {0: "background", 1: "foreground"}
    else:
        task = Task.BINARY if len(classes) == 2 else Task.MULTICLASS
        label_names = dict(enumerate(classes))
    return Dataset(
        options.get("name", root.name),
        cases,
        task=task,
        label_names=label_names,
        files=files,
        layout_issues=issues,
        root=str(root),
        source=_synthetic_source(provenance),
    )


def _synthetic_source(provenance: dict[str, object] | None) -> str:
    if provenance is None:
        return ""
    models = ", ".join(sorted(provenance.get("models", {})))  # type: ignore[call-overload]
    return f"SYNTHETIC images generated by {models or 'an unknown model'} (synthetic.json)"
