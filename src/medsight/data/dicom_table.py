"""A DICOM folder plus a label table keyed by a DICOM attribute.

Every series found under the folder (any depth, via :func:`medsight.io.read_study`) becomes a
Case, read lazily.  The optional label table is a CSV with a column named after the key
attribute (``StudyInstanceUID`` by default; ``SeriesInstanceUID``, ``PatientID``,
``AccessionNumber`` ... work too) and a label column (``label``, ``finding``, ``class`` ...);
every series whose attribute matches a row gets that row's label.  Other columns of the row
and header attributes (sex, age, site, scanner, series description) become attributes.

Files that cannot be read and table rows that match no series are layout issues.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

from medsight.core import Case, EmptyInputError, InvalidInputError, UnreadableFileError
from medsight.data.dataset import Dataset, LayoutIssue, Task
from medsight.data.manifest import is_placeholder
from medsight.data.registry import register_adapter

__all__ = ["load_dicom_folder"]

_LABEL_NAMES = ("label", "finding", "class", "diagnosis", "target", "y")
_NOT_IMAGES = {".txt", ".md", ".csv", ".tsv", ".json", ".xml", ".pdf", ".html", ".htm", ".py"}


def _header_attributes(header: Any) -> dict[str, Any]:
    def get(name: str) -> Any:
        value = header.get(name) if header is not None else None
        text = str(value).strip() if value is not None else ""
        return text or None

    scanner = " ".join(v for v in (get("Manufacturer"), get("ManufacturerModelName")) if v)
    return {
        "sex": get("PatientSex"),
        "age": get("PatientAge"),
        "site": get("InstitutionName"),
        "scanner": scanner or None,
        "series_description": get("SeriesDescription"),
        "study_instance_uid": get("StudyInstanceUID"),
        "series_instance_uid": get("SeriesInstanceUID"),
        "accession_number": get("AccessionNumber"),
    }


def _role(description: str, taken: dict[str, object]) -> str:
    """A role name from a series description: lower case, ``_`` for other characters, unique.

    Examples
    --------
    >>> _role("T1 post (Gd)", {}), _role("FLAIR", {"flair": 1})
    ('t1_post_gd', 'flair_2')
    """
    base = re.sub(r"[^a-z0-9]+", "_", description.lower()).strip("_") or "series"
    role, n = base, 1
    while role in taken:
        n += 1
        role = f"{base}_{n}"
    return role


def _read_table(path: Path, key: str, label: str | None) -> tuple[dict[str, dict[str, str]], str]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot read the label table ({exc})") from exc
    if key not in header:
        raise InvalidInputError(
            path, f"no column {key!r} (the key attribute)", hint=f"columns are {header}"
        )
    lower = {h.lower(): h for h in header}
    label_col = label or next((lower[n] for n in _LABEL_NAMES if n in lower), None)
    if label_col is None or label_col not in header:
        raise InvalidInputError(path, "no label column", hint="name it 'label' or pass ?label=COL")
    return {r[key].strip(): r for r in rows if r.get(key)}, label_col


@register_adapter("dicom")
def load_dicom_folder(path: str | os.PathLike[str], /, **options: str) -> Dataset:
    r"""Read every DICOM series under a folder, labelled from a table keyed by an attribute.

    Parameters
    ----------
    path : path-like
        The folder (searched recursively).
    **options
        ``labels=FILE.csv`` the label table; ``key=`` the DICOM attribute keyword its key
        column is named after (default ``StudyInstanceUID``); ``label=`` the label column;
        ``case=series`` (default: one Case per series) or ``case=study`` (one Case per study,
        its series as image roles named after their descriptions); ``name=``.

    Raises
    ------
    EmptyInputError, UnreadableFileError
        No readable DICOM series; an unreadable table.
    InvalidInputError
        The table lacks the key or label column; unknown options.

    Examples
    --------
    >>> import pathlib, shutil, tempfile
    >>> from pydicom import dcmread
    >>> from pydicom.data import get_testdata_file
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "dcm").mkdir()
    >>> _ = shutil.copy(get_testdata_file("CT_small.dcm"), root / "dcm" / "ct.dcm")
    >>> uid = dcmread(root / "dcm" / "ct.dcm").StudyInstanceUID
    >>> _ = (root / "labels.csv").write_text(f"StudyInstanceUID,label\n{uid},nodule\n")
    >>> ds = load_dicom_folder(root / "dcm", labels=str(root / "labels.csv"))
    >>> len(ds), ds.label_names[ds[0].label], ds[0].image().shape
    (1, 'nodule', (128, 128, 1))
    """
    from medsight.io import read_study

    root = Path(path)
    allowed = {"labels", "key", "label", "name", "case"}
    if set(options) - allowed:
        raise InvalidInputError(
            f"dicom:{root}", f"unknown options {sorted(set(options) - allowed)}"
        )
    grouping = options.get("case", "series")
    if grouping not in ("series", "study"):
        raise InvalidInputError("case", f"{grouping!r} is not 'series' or 'study'")
    study = read_study(root)
    key = options.get("key", "StudyInstanceUID")
    table: dict[str, dict[str, str]] = {}
    label_col: str | None = None
    if "labels" in options:
        table, label_col = _read_table(Path(options["labels"]), key, options.get("label"))
    issues: list[LayoutIssue] = []
    # documentation and tables beside the images are not failed DICOM files
    bad = [b for b in study.bad_files if Path(b.path).suffix.lower() not in _NOT_IMAGES]
    if bad:
        issues.append(
            LayoutIssue(
                "unreadable",
                f"{len(bad)} files could not be read as DICOM",
                tuple(f"{b.path}: {b.problem}" for b in bad),
            )
        )
    classes = sorted(
        {r[label_col].strip() for r in table.values() if not is_placeholder(r.get(label_col))}
        if label_col
        else set()
    )
    index = {c: i for i, c in enumerate(classes)}
    cases, files, matched = [], {}, set()
    entries = [e for e in study if e.dicom is not None]
    if grouping == "series":
        groups = [[e] for e in entries]
    else:  # one Case per study, its series as image roles
        by_study: dict[str, list] = {}
        for e in entries:
            by_study.setdefault(e.study_instance_uid or e.key, []).append(e)
        groups = list(by_study.values())
    for group in groups:
        header = group[0].dicom.header
        attrs = _header_attributes(header)
        value = str(header.get(key, "") or "").strip()
        label = None
        row = table.get(value)
        if row is not None and label_col is not None:
            matched.add(value)
            if not is_placeholder(row.get(label_col)):
                label = index[row[label_col].strip()]
            attrs.update({k: v for k, v in row.items() if k not in (key, label_col)})
        problems = [p for e in group for p in e.problems]
        if problems:
            attrs["series_problems"] = "; ".join(problems)
        roles: dict[str, object] = {}
        case_files: dict[str, str] = {}
        for e in group:
            role = "image" if grouping == "series" else _role(e.description or e.modality, roles)
            roles[role] = e.load
            first = e.files[0]
            case_files[role] = str(first.parent if len(e.files) > 1 else first)
        case_id = group[0].key if grouping == "series" else group[0].study_instance_uid
        if grouping == "study":
            attrs["series_descriptions"] = ", ".join(roles)
        cases.append(
            Case(
                case_id or group[0].key,
                patient_id=group[0].patient_id or None,
                images=roles,  # type: ignore[arg-type]
                label=label,
                attributes=attrs,
            )
        )
        files[case_id or group[0].key] = case_files
    if not cases:
        raise EmptyInputError(root, "no DICOM series")
    unmatched = sorted(set(table) - matched)
    if unmatched:
        issues.append(
            LayoutIssue(
                "orphan_file",
                f"{len(unmatched)} rows of {options['labels']} match no series by {key}",
                tuple(unmatched),
            )
        )
    task = Task.NONE
    if table:
        task = Task.BINARY if len(classes) == 2 else Task.MULTICLASS
    return Dataset(
        options.get("name", root.name),
        cases,
        task=task,
        label_names=dict(enumerate(classes)),
        files=files,
        layout_issues=issues,
        root=str(root),
    )
