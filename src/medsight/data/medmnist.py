"""MedMNIST v2 / MedMNIST+ ``.npz`` files (2D and 3D, any size) with their official splits.

A MedMNIST file holds ``train_images``, ``val_images``, ``test_images`` and the matching
``*_labels``.  The task and the label names are not in the file: they come from the data set's
name (the file name without ``_64``/``_224`` size suffix) looked up in :data:`MEDMNIST_INFO`,
which copies the table of the MedMNIST v2 paper (Yang et al., Scientific Data 2023).

Arrays are stored row-major as Pillow returns them (``(N, H, W[, 3])`` and ``(N, D, H, W)``);
Cases get them in medsight's index order (``(column, row[, channel])``, spatial axes reversed).
MedMNIST carries no patient ids, so each image is its own patient (``patient_id == case_id``).

Every MedMNIST file is CC BY 4.0; the Dataset's ``source`` cites MedMNIST v2 and, where known
(:data:`MEDMNIST_ORIGINS`), the collection the set was derived from.  A file whose name is not
a MedMNIST set (read with ``?task=``) gets no source and no license.

Examples
--------
>>> MEDMNIST_INFO["retinamnist"].task, MEDMNIST_INFO["retinamnist"].labels[4]
(<Task.ORDINAL: 'ordinal'>, '4')
>>> medmnist_name("adrenalmnist3d_64.npz")
'adrenalmnist3d'
>>> medmnist_provenance("retinamnist")[1]
'CC BY 4.0 (MedMNIST v2, Yang et al., Scientific Data 2023; DeepDRiD source)'
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
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
from medsight.data.dataset import Dataset, Task
from medsight.data.registry import register_adapter

__all__ = [
    "MEDMNIST_INFO",
    "MEDMNIST_ORIGINS",
    "MedMNISTInfo",
    "load_medmnist",
    "medmnist_name",
    "medmnist_provenance",
]

#: The citation of the MedMNIST v2 collection.
MEDMNIST_CITATION = "MedMNIST v2, Yang et al., Scientific Data 2023"
#: The license of every MedMNIST file.
MEDMNIST_LICENSE = "CC BY 4.0"
#: The collection a MedMNIST set was derived from, where medsight names it.
MEDMNIST_ORIGINS: dict[str, str] = {"breastmnist": "BUSI", "retinamnist": "DeepDRiD"}


@dataclasses.dataclass(frozen=True)
class MedMNISTInfo:
    """Task, label names and modality of one MedMNIST data set."""

    task: Task
    labels: tuple[str, ...]
    modality: str | None


_ORGANS = (
    "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
    "lung-left", "lung-right", "pancreas", "spleen",
)  # fmt: skip

#: The MedMNIST v2 collection (MedMNIST v2 paper, Table 1; ``medmnist/info.py``).
MEDMNIST_INFO: dict[str, MedMNISTInfo] = {
    "pathmnist": MedMNISTInfo(Task.MULTICLASS, (
        "adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
        "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium",
    ), "SM"),
    "chestmnist": MedMNISTInfo(Task.MULTILABEL, (
        "atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
        "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia",
    ), "DX"),
    "dermamnist": MedMNISTInfo(Task.MULTICLASS, (
        "actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
        "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
        "vascular lesions",
    ), "XC"),
    "octmnist": MedMNISTInfo(Task.MULTICLASS, (
        "choroidal neovascularization", "diabetic macular edema", "drusen", "normal",
    ), "OPT"),
    "pneumoniamnist": MedMNISTInfo(Task.BINARY, ("normal", "pneumonia"), "CR"),
    "retinamnist": MedMNISTInfo(Task.ORDINAL, ("0", "1", "2", "3", "4"), "OP"),
    "breastmnist": MedMNISTInfo(Task.BINARY, ("malignant", "normal, benign"), "US"),
    "bloodmnist": MedMNISTInfo(Task.MULTICLASS, (
        "basophil", "eosinophil", "erythroblast",
        "immature granulocytes (myelocytes, metamyelocytes and promyelocytes)", "lymphocyte",
        "monocyte", "neutrophil", "platelet",
    ), "SM"),
    "tissuemnist": MedMNISTInfo(Task.MULTICLASS, (
        "Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
        "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes",
        "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb",
    ), "SM"),
    "organamnist": MedMNISTInfo(Task.MULTICLASS, _ORGANS, "CT"),
    "organcmnist": MedMNISTInfo(Task.MULTICLASS, _ORGANS, "CT"),
    "organsmnist": MedMNISTInfo(Task.MULTICLASS, _ORGANS, "CT"),
    "organmnist3d": MedMNISTInfo(Task.MULTICLASS, _ORGANS, "CT"),
    "nodulemnist3d": MedMNISTInfo(Task.BINARY, ("benign", "malignant"), "CT"),
    "adrenalmnist3d": MedMNISTInfo(Task.BINARY, ("normal", "hyperplasia"), "CT"),
    "fracturemnist3d": MedMNISTInfo(Task.MULTICLASS, (
        "buckle rib fracture", "nondisplaced rib fracture", "displaced rib fracture",
    ), "CT"),
    "vesselmnist3d": MedMNISTInfo(Task.BINARY, ("vessel", "aneurysm"), "MR"),
    "synapsemnist3d": MedMNISTInfo(Task.BINARY, ("inhibitory synapse", "excitatory synapse"), None),
}  # fmt: skip

_SIZE_SUFFIX = re.compile(r"_(\d+)$")


def medmnist_name(path: str | os.PathLike[str]) -> str:
    """The MedMNIST data set name of a file: lower-case stem without a size suffix."""
    stem = Path(path).name.lower().removesuffix(".npz")
    return _SIZE_SUFFIX.sub("", stem)


def medmnist_provenance(name: str) -> tuple[str, str]:
    """``(source, license)`` of a MedMNIST set; ``("", "")`` for a name that is not one.

    The license names the citation too (``"CC BY 4.0 (MedMNIST v2, ...)"``), as model cards
    print it.

    Examples
    --------
    >>> source, license_ = medmnist_provenance("breastmnist")
    >>> source
    'MedMNIST v2, Yang et al., Scientific Data 2023; BUSI source'
    >>> license_
    'CC BY 4.0 (MedMNIST v2, Yang et al., Scientific Data 2023; BUSI source)'
    >>> medmnist_provenance("mydata")
    ('', '')
    """
    if name not in MEDMNIST_INFO:
        return "", ""
    origin = MEDMNIST_ORIGINS.get(name)
    source = f"{MEDMNIST_CITATION}; {origin} source" if origin else MEDMNIST_CITATION
    return source, f"{MEDMNIST_LICENSE} ({source})"


def _label(row: np.ndarray, task: Task) -> int | tuple[int, ...]:
    if task is Task.MULTILABEL:
        return tuple(int(i) for i in np.flatnonzero(row))
    return int(row.reshape(-1)[0])


@register_adapter("medmnist")
def load_medmnist(path: str | os.PathLike[str], /, **options: str) -> Dataset:
    """Read a MedMNIST ``.npz`` file with its official train/val/test split.

    Parameters
    ----------
    path : path-like
        ``<name>[_<size>].npz``, e.g. ``breastmnist.npz`` or ``organmnist3d_64.npz``.
    **options
        ``task=`` overrides the task taken from the name (``binary``, ``multiclass``,
        ``ordinal``, ``multilabel``) for files with an unknown name.

    Raises
    ------
    UnreadableFileError
        The file is missing, not an npz, or lacks the split arrays.
    InvalidInputError
        The name is not a MedMNIST data set and no ``task`` option was given.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> arrays = {f"{s}_images": np.zeros((2, 4, 4), np.uint8) for s in ("train", "val", "test")}
    >>> arrays |= {f"{s}_labels": np.array([[0], [1]]) for s in ("train", "val", "test")}
    >>> np.savez(os.path.join(d, "breastmnist.npz"), **arrays)
    >>> ds = load_medmnist(os.path.join(d, "breastmnist.npz"))
    >>> len(ds), ds.task, ds.label_names[0], ds[1].split, ds[1].label
    (6, <Task.BINARY: 'binary'>, 'malignant', <Split.TRAIN: 'train'>, 1)
    """
    p = Path(path)
    name = medmnist_name(p)
    info = MEDMNIST_INFO.get(name)
    unknown = set(options) - {"task"}
    if unknown:
        raise InvalidInputError(f"medmnist:{p}", f"unknown options {sorted(unknown)}")
    if "task" in options:
        task = Task(options["task"])
    elif info is None:
        raise InvalidInputError(
            p,
            f"{name!r} is not a MedMNIST data set name ({', '.join(sorted(MEDMNIST_INFO))})",
            hint="rename the file or pass ?task=binary|multiclass|ordinal|multilabel",
        )
    else:
        task = info.task
    if not p.is_file():
        raise UnreadableFileError(p, "file does not exist")
    try:
        with np.load(p) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UnreadableFileError(p, f"not a readable .npz file ({exc})") from exc
    cases: list[Case] = []
    files: dict[str, dict[str, str]] = {}
    for split in Split:
        key_i, key_l = f"{split.value}_images", f"{split.value}_labels"
        if key_i not in arrays or key_l not in arrays:
            raise UnreadableFileError(
                p, f"missing array {key_i!r} or {key_l!r}; has {sorted(arrays)}"
            )
        images, labels = arrays[key_i], arrays[key_l]
        if len(images) != len(labels):
            raise UnreadableFileError(p, f"{len(images)} {key_i} but {len(labels)} {key_l}")
        spatial = 3 if "3d" in name else (3 if images.ndim == 4 and images.shape[-1] > 4 else 2)
        order = tuple(reversed(range(spatial)))
        if images.ndim - 1 == spatial + 1:
            order = (*order, spatial)
        for i in range(len(images)):
            case_id = f"{split.value}_{i:05d}"
            image = Image(
                images[i].transpose(order),
                spatial_ndim=spatial,
                modality=info.modality if info else None,
            )
            cases.append(
                Case(case_id, images={"image": image}, label=_label(labels[i], task), split=split)
            )
            files[case_id] = {"image": f"{p.name}:{key_i}[{i}]"}
    if not cases:
        raise EmptyInputError(p, "holds no images")
    label_names = dict(enumerate(info.labels)) if info else {}
    source, license_ = medmnist_provenance(name)
    return Dataset(
        name,
        cases,
        task=task,
        label_names=label_names,
        files=files,
        official_splits=True,
        root=str(p),
        source=source,
        license=license_,
    )
