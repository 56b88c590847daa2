"""Image folders: one subfolder per class, optional masks found by a naming pattern.

``ROOT/<class>/<name>.png`` is an image of class ``<class>``; ``<name>_mask.png``,
``<name>_mask_1.png`` ... beside it are its masks (BUSI's layout), merged into one mask.
Masks stored as ``{0, 255}`` or ``{0, 1}`` become ``{0, 1}``; a mask with other values is kept
as it is, so the quality report can flag it.

The label is the merged mask when the folder has masks (``target=mask``, the default then),
else the class index (``target=class``).  The class name is always in
``case.attributes["class"]``.  Folders carry no patient ids: each image is its own patient.
Public sets often ship their split as folders, ``ROOT/<split>/<class>/<name>.png``
(``Training/`` and ``Testing/``, ``train/ val/ test/``): split folder names are matched
case-insensitively against train/training, val/valid/validation and test/testing, and each
case's ``split`` is taken from its folder (the Dataset's splits are then official: nothing is
re-split across them; a missing val part is carved from train at split time).  An image's
patient is ``<class>/<name stem>``: the same one in two split folders is an error naming both
files.  A root where some folders are split names and others are not is refused, naming them.
A folder with a ``synthetic.json`` (written by ``medsight synthesize``) holds synthetic
images: every case gets ``attributes["synthetic"] = True`` and its ``source``
(:mod:`medsight.data.synthetic`), and the Dataset's source says so.

Examples
--------
>>> mask_of("benign (1)_mask_1.png", "_mask")
'benign (1).png'
>>> mask_of("benign (1).png", "_mask") is None
True
>>> split_of("Training"), split_of("VALID"), split_of("benign")
(<Split.TRAIN: 'train'>, <Split.VAL: 'val'>, None)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medsight.core import Case, EmptyInputError, GeometryError, Image, InvalidInputError, Split
from medsight.data._arrays import value_counts
from medsight.data._read import read_image
from medsight.data.dataset import Dataset, LayoutIssue, Task
from medsight.data.registry import register_adapter
from medsight.data.synthetic import case_attributes, read_provenance

__all__ = ["load_folder", "mask_of", "merge_masks", "split_of"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Split folder names (compared in lower case) and the split they hold.
SPLIT_FOLDERS = {
    "train": Split.TRAIN,
    "training": Split.TRAIN,
    "val": Split.VAL,
    "valid": Split.VAL,
    "validation": Split.VAL,
    "test": Split.TEST,
    "testing": Split.TEST,
}


def split_of(folder_name: str) -> Split | None:
    """The split a folder name stands for (case-insensitive), None for any other name."""
    return SPLIT_FOLDERS.get(folder_name.lower())


def _subfolders(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _holds_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def _class_folders(folder: Path) -> list[Path]:
    return [d for d in _subfolders(folder) if _holds_images(d)]


def _layout(root: Path) -> list[tuple[Split | None, Path]]:
    """``(split, folder of class subfolders)`` parts: ``[(None, root)]`` for ``ROOT/<class>/``.

    Raises
    ------
    InvalidInputError
        Some top folders are split folders and others hold images too, a split folder holds
        images itself, or two folders name the same split.
    """
    tops = _subfolders(root)
    splits = [d for d in tops if split_of(d.name) is not None and _class_folders(d)]
    if not splits:
        return [(None, root)]
    where = f"folder:{root}"
    others = [d.name for d in tops if d not in splits and (_holds_images(d) or _class_folders(d))]
    loose = [d.name for d in splits if _holds_images(d)]
    if others or loose:
        raise InvalidInputError(
            where,
            f"mixes split folders {[d.name for d in splits]} with "
            + (f"other folders {others}" if others else f"images directly in {loose}"),
            hint="use ROOT/<class>/<image> or ROOT/<split>/<class>/<image> throughout",
        )
    by_split: dict[Split, list[str]] = {}
    for d in splits:
        by_split.setdefault(split_of(d.name), []).append(d.name)  # type: ignore[arg-type]
    twice = {s.value: names for s, names in by_split.items() if len(names) > 1}
    if twice:
        raise InvalidInputError(where, f"several folders name one split: {twice}")
    return [(split_of(d.name), d) for d in splits]


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
        The folder holding one subfolder per class, or one per split (``Training/``,
        ``test/`` ...) each holding one per class.
    **options
        ``mask_suffix=`` (default ``_mask``), ``target=class|mask``, ``name=``.

    Raises
    ------
    EmptyInputError
        No class subfolders with images.
    InvalidInputError
        A mixed layout (split folders beside other folders), two folders for one split, class
        names differing only in case between splits, or a patient in two splits.

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
    parts = _layout(root)
    classes = sorted({d.name for _, base in parts for d in _class_folders(base)})
    folded: dict[str, list[str]] = {}
    for cls in classes:
        folded.setdefault(cls.lower(), []).append(cls)
    clash = [names for names in folded.values() if len(names) > 1]
    if clash:
        raise InvalidInputError(
            f"folder:{root}",
            f"class folders differ only in case: {clash}",
            hint="give each class one spelling in every split folder",
        )
    if not classes:
        raise EmptyInputError(
            root,
            "no class subfolders holding images",
            hint="expected ROOT/<class>/<image>.png or ROOT/<split>/<class>/<image>.png",
        )
    entries: list[tuple[str, int, Path, list[Path], Split | None]] = []
    issues: list[LayoutIssue] = []
    for split, base in parts:
        for cls_dir in _class_folders(base):
            found, orphans = _scan_class(cls_dir, suffix)
            entries += [(cls_dir.name, classes.index(cls_dir.name), p, m, split) for p, m in found]
            if orphans:
                issues.append(LayoutIssue("orphan_file", "masks without an image", orphans))
    if parts[0][0] is not None:
        _check_patients(root, entries)
    has_masks = any(masks for _, _, _, masks, _ in entries)
    target = options.get("target", "mask" if has_masks else "class")
    if target not in ("mask", "class"):
        raise InvalidInputError("target", f"{target!r} is not 'mask' or 'class'")
    provenance = read_provenance(root)
    cases, files, unlisted = [], {}, []
    for cls, index, p, masks, split in entries:
        relative = p.relative_to(root).as_posix()  # <class>/<name> or <split>/<class>/<name>
        case_id = relative.rsplit(".", 1)[0]
        mask = _mask_loader(masks) if masks else None
        label: object = mask if target == "mask" else index
        attributes: dict[str, object] = {"class": cls}
        if provenance is not None:
            attributes |= case_attributes(provenance, relative)
            if relative not in provenance["images"]:
                unlisted.append(str(p))
        cases.append(
            Case(
                case_id,
                patient_id=f"{cls}/{p.stem}",
                images={"image": _image_loader(p)},
                label=label,  # type: ignore[arg-type]
                attributes=attributes,
                split=split,
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
        official_splits=parts[0][0] is not None,
        layout_issues=issues,
        root=str(root),
        source=_synthetic_source(provenance),
    )


def _scan_class(folder: Path, suffix: str) -> tuple[list[tuple[Path, list[Path]]], tuple[str, ...]]:
    """``([(image, its masks)], orphan masks)`` of one class folder."""
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    masks: dict[str, list[Path]] = {}
    images = []
    for p in files:
        owner = mask_of(p.name, suffix)
        if owner is not None:
            masks.setdefault(owner, []).append(p)
        else:
            images.append(p)
    names = {p.name for p in images}
    orphans = tuple(str(m) for owner, ms in masks.items() if owner not in names for m in ms)
    return [(p, masks.get(p.name, [])) for p in images], orphans


def _check_patients(
    root: Path, entries: list[tuple[str, int, Path, list[Path], Split | None]]
) -> None:
    """A patient (``<class>/<stem>``) in two split folders is an error naming both files."""
    first: dict[str, tuple[Split | None, Path]] = {}
    for cls, _index, p, _masks, split in entries:
        patient = f"{cls}/{p.stem}"
        seen = first.setdefault(patient, (split, p))
        if seen[0] != split:
            raise InvalidInputError(
                f"folder:{root}",
                f"patient {patient} is in two splits: {seen[1]} and {p}",
                hint="a patient's images must all be in one split folder",
            )


def _synthetic_source(provenance: dict[str, object] | None) -> str:
    if provenance is None:
        return ""
    models = ", ".join(sorted(provenance.get("models", {})))  # type: ignore[call-overload]
    return f"SYNTHETIC images generated by {models or 'an unknown model'} (synthetic.json)"
