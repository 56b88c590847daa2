"""CSV manifests (path, label, patient id, clinical columns) with optional COCO boxes.

Each row names one image file.  Columns are found by name unless given as options:

* ``path``: the column whose values resolve to existing files most often (relative to the
  CSV's folder, its ``images/`` folder or the row's ``folder`` column);
* ``label``: ``label``, ``finding``, ``class``, ``diagnosis``, ``target`` or ``y``;
* ``patient``: ``patient_id``, ``patientid``, ``patient``, ``subject_id``, ``subject``.

Every other column becomes a clinical attribute (empty cells become None).  Placeholder
labels (``todo``, ``unknown``, ``?``, empty) give ``label=None`` and a layout issue; rows whose
file is missing, files no row names, and repeated rows are layout issues too.

COCO boxes come from ``annotations.json`` beside the CSV (or ``coco=FILE``): they are the label
when the manifest has no label column, otherwise they go to ``case.attributes["boxes"]``.  A COCO
``bbox`` ``[x, y, w, h]`` becomes ``Box(x, y, x + w, y + h)`` (x is the column index ``i``).

Examples
--------
>>> is_placeholder(" TODO "), is_placeholder("COVID-19")
(True, False)
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

from medsight.core import Box, Case, EmptyInputError, InvalidInputError, UnreadableFileError
from medsight.data._read import read_image
from medsight.data.dataset import Dataset, LayoutIssue, Task
from medsight.data.folder import IMAGE_SUFFIXES
from medsight.data.registry import register_adapter

__all__ = ["is_placeholder", "load_coco_boxes", "load_manifest"]

_LABEL_NAMES = ("label", "finding", "class", "diagnosis", "target", "y")
_PATIENT_NAMES = ("patient_id", "patientid", "patient", "subject_id", "subject")
_PLACEHOLDERS = {"", "todo", "unknown", "?", "na", "n/a", "nan", "none", "null", "-"}


def is_placeholder(value: str | None) -> bool:
    """Whether a cell means 'no value' (empty, ``todo``, ``unknown``, ``?`` ...)."""
    return value is None or value.strip().lower() in _PLACEHOLDERS


def load_coco_boxes(
    path: str | os.PathLike[str], problems: list[str] | None = None
) -> dict[str, tuple[Box, ...]]:
    """Boxes by image file name from a COCO ``annotations.json``.

    An annotation without a ``category_id`` gets the label ``"unknown"``; one without a usable
    ``bbox`` is skipped.  Both are described in ``problems`` when a list is given.

    Examples
    --------
    >>> import json, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.json")
    >>> _ = open(p, "w").write(json.dumps({"images": [{"id": 1, "file_name": "x.jpg"}],
    ...     "categories": [{"id": 3, "name": "lung"}],
    ...     "annotations": [{"image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 20]},
    ...                     {"id": 7, "image_id": 1, "bbox": [0, 0, 1, 1]}]}))
    >>> problems = []
    >>> load_coco_boxes(p, problems)["x.jpg"][0]
    Box(i0=1.0, j0=2.0, i1=11.0, j1=22.0, label='lung')
    >>> problems
    ['x.jpg: annotation 7 has no category_id']
    """
    p = Path(path)
    try:
        coco = json.loads(p.read_text(encoding="utf-8"))
        names = {c["id"]: str(c["name"]) for c in coco.get("categories", [])}
        files = {im["id"]: str(im["file_name"]) for im in coco["images"]}
        annotations = list(coco.get("annotations", []))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableFileError(p, f"not a COCO annotation file ({exc})") from exc
    boxes: dict[str, list[Box]] = {}
    for ann in annotations:
        file_name = files.get(ann.get("image_id"), f"image_id {ann.get('image_id')}")
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
            category = ann.get("category_id")
            if category is None and problems is not None:
                problems.append(f"{file_name}: annotation {ann.get('id')} has no category_id")
            label = names.get(category, "unknown" if category is None else str(category))
            box = Box(x, y, x + w, y + h, label)
        except (KeyError, TypeError, ValueError) as exc:
            if problems is not None:
                problems.append(f"{file_name}: annotation {ann.get('id')} has a bad bbox ({exc})")
            continue
        boxes.setdefault(file_name, []).append(box)
    return {k: tuple(v) for k, v in boxes.items()}


def _pick(header: list[str], wanted: tuple[str, ...], given: str | None, what: str) -> str | None:
    if given is not None:
        if given not in header:
            raise InvalidInputError(f"{what} column {given!r}", f"not in the CSV header {header}")
        return given
    lower = {h.lower(): h for h in header}
    return next((lower[w] for w in wanted if w in lower), None)


_FILE_SUFFIXES = (*IMAGE_SUFFIXES, ".dcm", ".nii", ".gz", ".nrrd", ".mha")


def _resolve(base: Path, row: dict[str, str], value: str) -> Path | None:
    if not value or len(value) > 250 or not value.lower().endswith(_FILE_SUFFIXES):
        return None
    candidates = [base / value, base / "images" / value]
    if row.get("folder"):
        candidates.insert(1, base / row["folder"] / value)
    return next((c for c in candidates if c.is_file()), None)


def _loader(path: Path):  # noqa: ANN202
    return lambda: read_image(path)


@register_adapter("csv")
def load_manifest(path: str | os.PathLike[str], /, **options: str) -> Dataset:
    r"""Read a CSV manifest of image files with labels and clinical columns.

    Parameters
    ----------
    path : path-like
        The CSV file.
    **options
        ``path=``, ``label=``, ``patient=`` column names; ``coco=`` annotation file; ``name=``.

    Raises
    ------
    UnreadableFileError
        The CSV cannot be read.
    EmptyInputError
        No row names an existing file.
    InvalidInputError
        A column given as an option is not in the header; unknown options.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from PIL import Image as P
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "images").mkdir()
    >>> for name in ("a.png", "b.png"):
    ...     P.new("L", (5, 4)).save(root / "images" / name)
    >>> rows = ["file,patient_id,finding,age", "a.png,p1,pneumonia,60", "b.png,p1,todo,",
    ...         "c.png,p2,normal,7"]
    >>> _ = (root / "meta.csv").write_text("\n".join(rows))
    >>> ds = load_manifest(root / "meta.csv")
    >>> [(c.case_id, c.patient_id, c.label, c.attributes["age"]) for c in ds]
    [('images/a.png', 'p1', 0, '60'), ('images/b.png', 'p1', None, None)]
    >>> sorted(issue.kind for issue in ds.layout_issues)
    ['missing_file', 'missing_label']
    """
    p = Path(path)
    allowed = {"path", "label", "patient", "coco", "name"}
    if set(options) - allowed:
        raise InvalidInputError(f"csv:{p}", f"unknown options {sorted(set(options) - allowed)}")
    try:
        with open(p, newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if p.suffix.lower() == ".tsv" else ",")
            rows = list(reader)
            header = [h for h in (reader.fieldnames or []) if h]
    except OSError as exc:
        raise UnreadableFileError(p, f"cannot read CSV ({exc})") from exc
    if not rows or not header:
        raise EmptyInputError(p, "no rows")
    base = p.parent
    path_col = options.get("path")
    if path_col is None:
        hits = {h: sum(_resolve(base, r, r.get(h) or "") is not None for r in rows) for h in header}
        path_col = max(hits, key=lambda h: hits[h])
        if hits[path_col] == 0:
            raise EmptyInputError(p, "no column names existing image files", hint="pass ?path=COL")
    elif path_col not in header:
        raise InvalidInputError(f"path column {path_col!r}", f"not in the CSV header {header}")
    label_col = _pick(header, _LABEL_NAMES, options.get("label"), "label")
    patient_col = _pick(header, _PATIENT_NAMES, options.get("patient"), "patient")
    coco_path = Path(options["coco"]) if "coco" in options else base / "annotations.json"
    coco_problems: list[str] = []
    boxes = load_coco_boxes(coco_path, coco_problems) if coco_path.is_file() else {}

    issues: list[LayoutIssue] = []
    if coco_problems:
        issues.append(
            LayoutIssue("bad_annotation", f"{coco_path.name}: " + "; ".join(coco_problems),
                        (str(coco_path),))
        )  # fmt: skip
    resolved: list[tuple[dict[str, str], Path]] = []
    missing: list[str] = []
    for line, row in enumerate(rows, start=2):
        value = (row.get(path_col) or "").strip()
        found = _resolve(base, row, value)
        if found is None:
            missing.append(f"{p.name} line {line}: {value or f'no {path_col}'}")
        else:
            resolved.append((row, found))
    if not resolved:
        raise EmptyInputError(p, f"no value of column {path_col!r} names an existing file")
    if missing:
        issues.append(
            LayoutIssue("missing_file", f"{len(missing)} rows name files that do not exist",
                        tuple(missing))
        )  # fmt: skip
    counts = Counter(f for _, f in resolved)
    repeated = sorted(str(f) for f, n in counts.items() if n > 1)
    if repeated:
        issues.append(LayoutIssue("duplicate_row", "files named by several rows", tuple(repeated)))
    folders = Counter(f.parent for _, f in resolved)
    used = set(counts)
    for folder in folders:
        orphans = sorted(
            str(f) for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f not in used
        )
        if orphans:
            issues.append(
                LayoutIssue("orphan_file", f"{len(orphans)} images in {folder.name}/ have no row",
                            tuple(orphans))
            )  # fmt: skip

    classes = sorted(
        {r[label_col].strip() for r, _ in resolved if not is_placeholder(r.get(label_col))}
        if label_col
        else set()
    )
    index = {c: i for i, c in enumerate(classes)}
    unlabelled: list[str] = []
    cases: list[Case] = []
    files: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    for row, f in resolved:
        case_id = str(f.relative_to(base)) if f.is_relative_to(base) else str(f)
        if case_id in seen:
            continue
        seen.add(case_id)
        attrs: dict[str, object] = {
            k: (None if is_placeholder(v) else v.strip())
            for k, v in row.items()
            if k and k not in (path_col, label_col, patient_col)
        }
        file_boxes = boxes.get(f.name)
        label: object = None
        if label_col:
            raw = row.get(label_col)
            if is_placeholder(raw):
                unlabelled.append(str(f))
            else:
                label = index[raw.strip()]
            if file_boxes:
                attrs["boxes"] = file_boxes
        elif file_boxes:
            label = file_boxes
        patient = (row.get(patient_col) or "").strip() if patient_col else ""
        cases.append(
            Case(
                case_id,
                patient_id=patient or None,
                images={"image": _loader(f)},
                label=label,  # type: ignore[arg-type]
                attributes=attrs,
            )
        )
        files[case_id] = {"image": str(f)}
    if unlabelled:
        issues.append(
            LayoutIssue("missing_label", f"{len(unlabelled)} rows have no usable label "
                        f"(empty or a placeholder in column {label_col!r})", tuple(unlabelled))
        )  # fmt: skip
    if label_col:
        task = Task.BINARY if len(classes) == 2 else Task.MULTICLASS
        label_names = dict(enumerate(classes))
    elif boxes:
        task = Task.DETECTION
        label_names = dict(enumerate(sorted({b.label for bs in boxes.values() for b in bs})))
    else:
        task, label_names = Task.NONE, {}
    return Dataset(
        options.get("name", base.name),
        cases,
        task=task,
        label_names=label_names,
        files=files,
        layout_issues=issues,
        root=str(p),
    )
