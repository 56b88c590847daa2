"""Medical Segmentation Decathlon / nnU-Net raw layout (``imagesTr``, ``labelsTr``, JSON).

Both flavours of ``dataset.json`` are read: MSD (``modality`` by channel index, ``labels`` as
``{"0": "background", ...}``, a ``training`` list of image/label pairs) and nnU-Net v2
(``channel_names``, ``labels`` as ``{"background": 0, ...}``, ``file_ending``, one file per
channel named ``<case>_<XXXX><ending>``).  Without ``dataset.json`` the adapter infers what it
can: case ids and channels from the file names, label values from the first label files.

Images without a label stay in the data set with ``label=None`` and are reported as a layout
issue, as are labels without an image and files the ``training`` list of ``dataset.json``
names but the folder lacks (MSD lists ``./imagesTr/x.nii.gz`` paths); ``imagesTs`` cases get
``split=test``.
Masks are read lazily (``Case.mask()``).

Examples
--------
>>> split_channel("prostate_00_0001.nii.gz", ".nii.gz")
('prostate_00', 1)
>>> split_channel("hippocampus_001.nii.gz", ".nii.gz")
('hippocampus_001', None)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from medsight.core import (
    Case,
    EmptyInputError,
    Image,
    InvalidInputError,
    Split,
    UnreadableFileError,
)
from medsight.data._read import read_image
from medsight.data.dataset import Dataset, LayoutIssue, Task
from medsight.data.registry import register_adapter

__all__ = ["load_msd", "split_channel"]

_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".tif", ".tiff")
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")


def split_channel(file_name: str, ending: str) -> tuple[str, int | None]:
    """Case id and nnU-Net channel index (``_0000``) of a file name, channel None if absent."""
    stem = file_name[: -len(ending)] if file_name.endswith(ending) else file_name
    m = _CHANNEL.match(stem)
    return (m["case"], int(m["ch"])) if m else (stem, None)


def _ending(folder: Path, declared: str | None) -> str:
    if declared:
        return declared
    names = [p.name for p in folder.iterdir() if p.is_file()]
    for end in _ENDINGS:
        if any(n.endswith(end) for n in names):
            return end
    raise EmptyInputError(folder, f"no image files ({', '.join(_ENDINGS)})")


#: ``dataset.json`` channel names that name an imaging modality unambiguously -> DICOM code.
#: Sequence names (T1, T2, FLAIR, ADC ...) and anything else leave the modality unknown.
_MODALITY_OF_CHANNEL = {"CT": "CT", "MR": "MR", "MRI": "MR", "PET": "PT", "PT": "PT", "US": "US"}


def modality_of_channels(channel_names: Mapping[int, str]) -> str | None:
    """The DICOM modality every channel of ``dataset.json`` names, or None (never guessed).

    Examples
    --------
    >>> modality_of_channels({0: "MRI"}), modality_of_channels({0: "CT", 1: "PET"})
    ('MR', None)
    >>> modality_of_channels({0: "FLAIR", 1: "T1w"}) is None
    True
    """
    found = {_MODALITY_OF_CHANNEL.get(str(v).strip().upper()) for v in channel_names.values()}
    return found.pop() if len(found) == 1 and None not in found else None


def _with_modality(image: Image, modality: str | None) -> Image:
    if modality is None or image.modality:
        return image
    return Image(
        image.array,
        image.affine,
        spatial_ndim=image.spatial_ndim,
        modality=modality,
        source=image.source,
        meta=image.meta,
    )


def _loader(path: Path, modality: str | None = None) -> Callable[[], Image]:
    return lambda: _with_modality(read_image(path), modality)


def _stack_loader(paths: list[Path], modality: str | None = None) -> Callable[[], Image]:
    def load() -> Image:
        parts = [read_image(p) for p in paths]
        first = parts[0]
        return _with_modality(
            first.with_array(np.stack([p.array for p in parts], axis=-1)), modality
        )

    return load


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UnreadableFileError(path, f"not valid JSON ({exc})") from exc


def _meta_text(meta: dict, *keys: str) -> str:
    """The first non-empty string among ``meta[key]`` (empty when none is)."""
    for key in keys:
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _parse_labels(raw: object) -> dict[int, str]:
    if not isinstance(raw, dict):
        return {}
    out: dict[int, str] = {}
    for k, v in raw.items():
        if isinstance(v, int | list):  # nnU-Net v2: name -> value (or region list)
            if isinstance(v, int):
                out[v] = str(k)
        else:
            out[int(k)] = str(v)
    return out


def _infer_labels(paths: list[Path]) -> dict[int, str]:
    values: set[int] = set()
    for p in paths[:5]:
        try:
            arr = read_image(p).array
        except UnreadableFileError:
            continue
        values |= {int(v) for v in np.unique(arr)}
    return {v: ("background" if v == 0 else f"label_{v}") for v in sorted(values)}


def _group(folder: Path, ending: str) -> dict[str, dict[int | None, Path]]:
    groups: dict[str, dict[int | None, Path]] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or not p.name.endswith(ending) or p.name.startswith("."):
            continue
        case_id, ch = split_channel(p.name, ending)
        groups.setdefault(case_id, {})[ch] = p
    # a lone "_0000" file per case and no channel-less files: nnU-Net single channel
    return groups


@register_adapter("msd")
def load_msd(path: str | os.PathLike[str], /, **options: str) -> Dataset:
    """Read an MSD / nnU-Net raw folder.

    Parameters
    ----------
    path : path-like
        The task folder holding ``imagesTr`` (and usually ``labelsTr``, ``dataset.json``).
    **options
        ``name=`` overrides the data set name.

    The Dataset's ``license`` is ``dataset.json``'s ``licence`` (or ``license``) and its
    ``source`` the ``reference``; each is empty when ``dataset.json`` does not state it.

    Raises
    ------
    EmptyInputError
        No ``imagesTr`` folder or no image files in it.
    UnreadableFileError
        ``dataset.json`` is not valid JSON.

    Examples
    --------
    >>> load_msd("no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medsight.core.errors.EmptyInputError: no/such/folder: no imagesTr folder ...
    """
    root = Path(path)
    images_tr = root / "imagesTr"
    if not images_tr.is_dir():
        raise EmptyInputError(
            root, "no imagesTr folder", hint="point msd: at the folder holding imagesTr/labelsTr"
        )
    meta_path = root / "dataset.json"
    meta = _read_json(meta_path) if meta_path.is_file() else {}
    ending = _ending(images_tr, meta.get("file_ending"))
    labels_tr = root / "labelsTr"
    channel_names: dict[int, str] = {}
    for key in ("channel_names", "modality"):
        if isinstance(meta.get(key), dict):
            channel_names = {int(k): str(v) for k, v in meta[key].items()}
            break
    issues: list[LayoutIssue] = []
    image_groups = _group(images_tr, ending)
    label_files = (
        {split_channel(p.name, ending)[0]: p for p in sorted(labels_tr.glob(f"*{ending}"))}
        if labels_tr.is_dir()
        else {}
    )
    label_names = _parse_labels(meta.get("labels"))
    if not label_names and label_files:
        label_names = _infer_labels(list(label_files.values()))
    modality = modality_of_channels(channel_names) if channel_names else None
    if not channel_names:
        n_ch = max(len(g) for g in image_groups.values()) if image_groups else 0
        if n_ch > 1 or any(None not in g for g in image_groups.values()):
            channel_names = {i: f"channel_{i}" for i in range(n_ch)}
    cases: list[Case] = []
    files: dict[str, dict[str, str]] = {}
    unlabelled: list[str] = []

    def add(groups: dict[str, dict[int | None, Path]], split: Split | None) -> None:
        for case_id, chans in groups.items():
            paths = [chans[k] for k in sorted(chans, key=lambda c: -1 if c is None else c)]
            source = (
                _loader(paths[0], modality) if len(paths) == 1 else _stack_loader(paths, modality)
            )
            label_path = label_files.get(case_id) if split is None else None
            case_files = {"image": str(paths[0])}
            if len(paths) > 1:
                case_files = {f"channel_{i}": str(p) for i, p in enumerate(paths)}
            if label_path is not None:
                case_files["label"] = str(label_path)
            elif split is None and labels_tr.is_dir():
                unlabelled.append(str(paths[0]))
            cases.append(
                Case(
                    case_id,
                    images={"image": source},
                    label=_loader(label_path) if label_path is not None else None,
                    split=split,
                )
            )
            files[case_id] = case_files

    add(image_groups, None)
    images_ts = root / "imagesTs"
    if images_ts.is_dir():
        add(
            {k: v for k, v in _group(images_ts, ending).items() if k not in image_groups},
            Split.TEST,
        )
    if unlabelled:
        issues.append(
            LayoutIssue(
                "missing_label", f"{len(unlabelled)} images have no label", tuple(unlabelled)
            )
        )
    listed = [
        str(root / rel)
        for entry in meta.get("training", [])
        if isinstance(entry, dict)
        for rel in (entry.get("image"), entry.get("label"))
        if isinstance(rel, str) and not (root / rel).is_file()
    ]
    if listed:
        issues.append(
            LayoutIssue("missing_file", f"{len(listed)} files listed in dataset.json do not exist",
                        tuple(listed))
        )  # fmt: skip
    orphans = sorted(str(p) for cid, p in label_files.items() if cid not in image_groups)
    if orphans:
        issues.append(
            LayoutIssue("orphan_file", f"{len(orphans)} label files have no image", tuple(orphans))
        )
    if not cases:
        raise EmptyInputError(images_tr, f"no files ending in {ending}")
    name = options.get("name") or str(meta.get("name") or root.name)
    if set(options) - {"name"}:
        raise InvalidInputError(f"msd:{root}", f"unknown options {sorted(set(options) - {'name'})}")
    return Dataset(
        name,
        cases,
        task=Task.SEGMENTATION if label_files else Task.NONE,
        label_names=label_names,
        channel_names=channel_names,
        files=files,
        official_splits=False,
        source=_meta_text(meta, "reference"),
        license=_meta_text(meta, "licence", "license"),
        layout_issues=issues,
        root=str(root),
    )
