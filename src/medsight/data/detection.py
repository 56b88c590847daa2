"""Detection data sets: lesions as boxes or circles per image, read from four layouts.

A detection Case's label is a tuple of :class:`Annotation` (empty for an image without lesions,
which stays in the data set as a negative); each holds a :class:`~medsight.core.findings.Region`
in the index space of the Case's Image (``i`` = column / x, ``j`` = row / y, ``k`` = slice) and
a class name from ``Dataset.label_names`` (0-based over the foreground classes).  Index space
means pixel centres sit at integer coordinates: a COCO / VOC / box-list box whose left edge is
at ``x = 0`` and right edge at ``x = 10`` covers pixels 0..9 and becomes a Region centred at
``i = 4.5`` with width 10.

Adapters (registered with :mod:`medsight.data.registry`, so ``--data KIND:PATH`` works):

* ``mias:FOLDER`` (mini-MIAS as in ``../shared/data/mammography_mias``: ``annotations.csv`` with
  ``image, patient, side, tissue, class, severity, x, y, radius``, top-left origin, images in
  ``images/``): circles.  ``classes=CIRC,SPIC,MISC`` keeps those abnormality classes (default:
  every abnormal class); ``merge=mass`` gives them one label; NORM images are negatives; an
  image whose only abnormalities are of other classes is dropped (``others=negative`` keeps it
  as a negative instead); a kept abnormality without coordinates drops its image (a layout
  issue says so).  ``spacing=`` sets the pixel size in mm (default 0.4, the spacing the
  folder's PROVENANCE states); modality MG.
* ``coco:FILE.json`` (``images=DIR``, default the JSON's folder or its ``images/``): ``bbox``
  ``[x, y, w, h]``; images without annotations are negatives; an image entry's ``patient_id``
  (or ``patient``) field is the patient.
* ``voc:FOLDER`` (PASCAL VOC: ``Annotations/*.xml`` or XML files in the folder, images in
  ``JPEGImages/`` or beside the XML, ``images=DIR`` to say): ``<object><name>`` and
  ``<bndbox>`` (VOC's 1-based inclusive pixel corners); objects marked ``difficult`` are kept.
* ``boxes:FILE.csv`` or ``.json``: a box list per DICOM instance or image file.  Rows are keyed
  by ``sop_instance_uid`` (looked up in the DICOM files of ``dicom=DIR``, default the list's
  folder) or ``file`` (relative to the list); corners ``x0, y0, x1, y1`` (+ ``z0, z1`` for
  volumes) in pixel-edge coordinates, ``label``, optional ``patient``; a row without corners
  marks a negative image.  JSON: ``{"instances": [{"sop_instance_uid" | "file": ...,
  "patient": ..., "boxes": [{"box": [x0, y0, x1, y1], "label": ...}]}]}``.

:func:`annotations_of` reads a Case's annotations (also the :class:`~medsight.core.case.Box`
labels the CSV manifest makes of COCO files); :func:`detection_splits` splits by patient (a
woman's two breasts stay together), stratified by lesion-positive / negative images.

Examples
--------
>>> a = Annotation(Region((10.0, 20.0), (8.0, 8.0), "ellipse"), "mass")
>>> a.region.contains((12.0, 22.0)), a.label
(True, 'mass')
>>> coco_region(0, 0, 10, 4).center, coco_region(0, 0, 10, 4).size
((4.5, 1.5), (10.0, 4.0))
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from medsight.core import (
    Box,
    Case,
    EmptyInputError,
    Image,
    InvalidInputError,
    UnreadableFileError,
)
from medsight.core.findings import Region
from medsight.data._read import read_image
from medsight.data.dataset import Dataset, LayoutIssue, Task
from medsight.data.folder import IMAGE_SUFFIXES
from medsight.data.registry import register_adapter
from medsight.data.splits import SplitConfig, Splits, make_splits

__all__ = [
    "MIAS_CLASSES",
    "Annotation",
    "annotations_of",
    "coco_region",
    "detection_splits",
    "is_detection_case",
    "load_box_list",
    "load_coco",
    "load_mias",
    "load_voc",
]

#: mini-MIAS abnormality classes (the ``class`` column) and the label names they get.
MIAS_CLASSES: Mapping[str, str] = MappingProxyType(
    {
        "CALC": "calcification",
        "CIRC": "circumscribed mass",
        "SPIC": "spiculated mass",
        "MISC": "ill-defined mass",
        "ARCH": "architectural distortion",
        "ASYM": "asymmetry",
    }
)
#: mini-MIAS pixel size of the 512 x 512 images (mm), as their PROVENANCE file states.
MIAS_SPACING_MM = 0.4


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One annotated lesion.

    Parameters
    ----------
    region : Region
        Box or circle / sphere in the index space of the Case's image.
    label : str
        Class name, one of the data set's ``label_names`` values.
    attributes : mapping of str to str
        What the source says beyond the class (``severity``, ``difficult`` ...).
    """

    region: Region
    label: str
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))


def coco_region(x: float, y: float, w: float, h: float) -> Region:
    """A Region from a pixel-edge box ``x, y, w, h`` (COCO's ``bbox``), in index space."""
    if w < 0 or h < 0:
        raise InvalidInputError("box", f"negative width or height in {[x, y, w, h]}")
    return Region((x + w / 2 - 0.5, y + h / 2 - 0.5), (w, h))


def _edge_region(lo: Sequence[float], hi: Sequence[float], where: str) -> Region:
    if any(b < a for a, b in zip(lo, hi, strict=True)):
        raise InvalidInputError(where, f"box corners {list(lo)} / {list(hi)} are reversed")
    return Region(
        tuple((a + b) / 2 - 0.5 for a, b in zip(lo, hi, strict=True)),
        tuple(b - a for a, b in zip(lo, hi, strict=True)),
    )


def is_detection_case(case: Case) -> bool:
    """Whether the Case's label is a (possibly empty) tuple of Annotations or Boxes."""
    label = case.label
    return isinstance(label, tuple) and all(isinstance(a, Annotation | Box) for a in label)


def annotations_of(case: Case) -> tuple[Annotation, ...]:
    """The Case's lesions (empty: a negative image).

    A tuple of :class:`~medsight.core.case.Box` (the CSV manifest's COCO boxes, pixel-edge
    corners) is converted to box Annotations.

    Raises
    ------
    InvalidInputError
        The Case carries no detection label (``None``: unlabelled; a class or a mask).

    Examples
    --------
    >>> annotations_of(Case("a", label=(Box(0, 0, 4, 2, "lung"),)))[0].region.center
    (1.5, 0.5)
    >>> annotations_of(Case("b", label=()))
    ()
    """
    if not is_detection_case(case):
        raise InvalidInputError(
            f"case {case.case_id}",
            "has no detection label (boxes or circles)"
            + (" (unlabelled)" if case.label is None else ""),
            hint="read the data with a detection adapter: mias:, coco:, voc: or boxes:",
        )
    out = []
    for a in case.label:  # type: ignore[union-attr]
        if isinstance(a, Box):
            out.append(Annotation(_edge_region((a.i0, a.j0), (a.i1, a.j1), case.case_id), a.label))
        else:
            out.append(a)
    return tuple(out)


def detection_splits(dataset: Dataset, config: SplitConfig | None = None) -> Splits:
    """Patient-level splits of a detection data set, stratified by lesion-positive images.

    All images of a patient (a woman's two breasts, a patient's CT scans) land in one part;
    the stratum of a patient is whether most of her images hold a lesion.

    Examples
    --------
    >>> cases = [Case(f"c{i}", patient_id=f"p{i // 2}", label=() if i % 4 else
    ...     (Annotation(Region((1, 1), (2, 2)), "mass"),)) for i in range(40)]
    >>> ds = Dataset("toy", cases, task="detection")
    >>> s = detection_splits(ds, SplitConfig(val_fraction=0.2, test_fraction=0.2))
    >>> s.leaks(ds), len(s.test)
    ({}, 8)
    """
    relabelled = [
        c.replace(label=int(bool(annotations_of(c)))) if is_detection_case(c) else c
        for c in dataset
    ]
    return make_splits(dataset.with_cases(relabelled), config)


# --- helpers -----------------------------------------------------------------------------------


def _loader(path: Path, spacing: float | None = None, modality: str | None = None) -> Callable:
    """A lazy reader of ``path``; a 2D raster gets the stated pixel size and modality."""

    def load() -> Image:
        image = read_image(path)
        if spacing is None and modality is None:
            return image
        meta = dict(image.meta)
        if spacing is not None:
            meta |= {"spacing_known": True, "spacing_source": "data set provenance"}
        return Image(
            image.array,
            spatial_ndim=image.spatial_ndim,
            spacing=(spacing,) * image.spatial_ndim if spacing is not None else image.spacing,
            modality=modality or image.modality,
            source=image.source,
            meta=meta,
        )

    return load


def _float(value: str | None) -> float | None:
    if value is None or not str(value).strip():
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _check_options(kind: str, path: Path, options: Mapping[str, str], allowed: set[str]) -> None:
    extra = sorted(set(options) - allowed)
    if extra:
        raise InvalidInputError(
            f"{kind}:{path}", f"unknown options {extra}; known: {sorted(allowed)}"
        )


def _dataset(
    name: str,
    cases: list[Case],
    files: dict[str, dict[str, str]],
    labels: list[str],
    issues: list[LayoutIssue],
    root: Path,
    source: str = "",
    license: str = "",
) -> Dataset:
    if not cases:
        raise EmptyInputError(root, "holds no usable images with detection labels")
    return Dataset(
        name,
        cases,
        task=Task.DETECTION,
        label_names=dict(enumerate(labels)),
        files=files,
        layout_issues=issues,
        root=str(root),
        source=source,
        license=license,
    )


# --- mini-MIAS ---------------------------------------------------------------------------------


@register_adapter("mias")
def load_mias(path: str | os.PathLike[str], /, **options: str) -> Dataset:
    """Read mini-MIAS (``annotations.csv`` + ``images/``) as circles per mammogram.

    Parameters
    ----------
    path : path-like
        The folder holding ``annotations.csv`` (or the CSV itself).
    **options
        ``classes=`` (comma-separated MIAS codes), ``merge=`` (one label name for them all),
        ``others=drop|negative``, ``spacing=`` (mm, default 0.4), ``name=``.

    Raises
    ------
    UnreadableFileError, EmptyInputError, InvalidInputError
        No readable CSV, no usable image, or bad options.
    """
    p = Path(path)
    _check_options("mias", p, options, {"classes", "merge", "others", "spacing", "name"})
    table = p if p.is_file() else p / "annotations.csv"
    base = table.parent
    try:
        with open(table, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise UnreadableFileError(table, f"cannot read the MIAS annotations ({exc})") from exc
    need = {"image", "patient", "class", "x", "y", "radius"}
    if not rows or not need <= set(rows[0]):
        raise UnreadableFileError(
            table, f"not a MIAS annotations.csv (needs columns {sorted(need)})"
        )
    wanted = [c.strip().upper() for c in options.get("classes", ",".join(MIAS_CLASSES)).split(",")]
    unknown = [c for c in wanted if c not in MIAS_CLASSES]
    if unknown or not wanted:
        raise InvalidInputError(
            "mias classes", f"{unknown or wanted} not among {', '.join(MIAS_CLASSES)}"
        )
    others = options.get("others", "drop")
    if others not in ("drop", "negative"):
        raise InvalidInputError("mias others", f"{others!r} is not 'drop' or 'negative'")
    spacing = float(options.get("spacing", MIAS_SPACING_MM))
    merge = options.get("merge")
    labels = [merge] if merge else [MIAS_CLASSES[c] for c in wanted]

    by_image: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_image.setdefault(row["image"].strip(), []).append(row)
    cases: list[Case] = []
    files: dict[str, dict[str, str]] = {}
    dropped_other, no_coords, missing = [], [], []
    for image_name, image_rows in by_image.items():
        f = base / "images" / image_name
        if not f.is_file():
            f = base / image_name
        if not f.is_file():
            missing.append(image_name)
            continue
        annotations: list[Annotation] = []
        other = False
        located = True
        for row in image_rows:
            cls = row["class"].strip().upper()
            if cls == "NORM":
                continue
            if cls not in wanted:
                other = True
                continue
            x, y, r = _float(row["x"]), _float(row["y"]), _float(row["radius"])
            if x is None or y is None or r is None:
                located = False
                continue
            attrs = {"class": cls, "severity": (row.get("severity") or "").strip()}
            annotations.append(
                Annotation(
                    Region((x, y), (2 * r, 2 * r), "ellipse"), merge or MIAS_CLASSES[cls], attrs
                )
            )
        if not located:
            no_coords.append(str(f))
            continue
        if other and not annotations and others == "drop":
            dropped_other.append(str(f))
            continue
        first = image_rows[0]
        case_id = Path(image_name).stem
        cases.append(
            Case(
                case_id,
                patient_id=first["patient"].strip() or None,
                images={"image": _loader(f, spacing, "MG")},
                label=tuple(annotations),  # type: ignore[arg-type]
                attributes={
                    "side": (first.get("side") or "").strip() or None,
                    "tissue": (first.get("tissue") or "").strip() or None,
                    "class": "lesion" if annotations else "negative",
                },
            )
        )
        files[case_id] = {"image": str(f)}
    issues = []
    if missing:
        issues.append(
            LayoutIssue(
                "missing_file", f"{len(missing)} annotated images do not exist", tuple(missing)
            )
        )
    if no_coords:
        issues.append(
            LayoutIssue(
                "missing_label",
                f"{len(no_coords)} images have a {'/'.join(wanted)} abnormality without "
                "coordinates and were left out",
                tuple(no_coords),
            )
        )
    if dropped_other:
        issues.append(
            LayoutIssue(
                "excluded",
                f"{len(dropped_other)} images hold only abnormalities of other classes and were "
                "left out (others=negative keeps them as negatives)",
                tuple(dropped_other),
            )
        )
    return _dataset(
        options.get("name", "mini-mias"),
        cases,
        files,
        labels,
        issues,
        base,
        source="mini-MIAS, J Suckling et al (1994) The Mammographic Image Analysis Society "
        "Digital Mammogram Database, Excerpta Medica ICS 1069:375-378",
        license="MIAS terms: research use only, cite the paper",
    )


# --- COCO ----------------------------------------------------------------------------------------


def _find_image(candidates: Sequence[Path]) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)


@register_adapter("coco")
def load_coco(path: str | os.PathLike[str], /, **options: str) -> Dataset:
    """Read a COCO ``annotations.json`` (``bbox`` boxes; images without any are negatives).

    Parameters
    ----------
    path : path-like
        The JSON file.
    **options
        ``images=`` folder of the image files, ``name=``.
    """
    p = Path(path)
    _check_options("coco", p, options, {"images", "name"})
    try:
        coco = json.loads(p.read_text(encoding="utf-8"))
        categories = {c["id"]: str(c["name"]) for c in coco.get("categories", [])}
        images = list(coco["images"])
        anns = list(coco.get("annotations", []))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableFileError(p, f"not a COCO annotation file ({exc})") from exc
    folders = [Path(options["images"])] if "images" in options else [p.parent, p.parent / "images"]
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for ann in anns:
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    labels = sorted(set(categories.values()))
    cases, files, missing, bad = [], {}, [], []
    for entry in images:
        name = str(entry.get("file_name", ""))
        f = _find_image([folder / name for folder in folders])
        if f is None:
            missing.append(name)
            continue
        found = []
        for ann in by_image.get(entry.get("id"), []):
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
                label = categories[ann["category_id"]]
                found.append(Annotation(coco_region(x, y, w, h), label))
            except (KeyError, TypeError, ValueError, InvalidInputError) as exc:
                bad.append(f"{name}: annotation {ann.get('id')} ({exc})")
        case_id = str(Path(name).with_suffix(""))
        if case_id in files:
            bad.append(f"{name}: listed twice")
            continue
        patient = entry.get("patient_id", entry.get("patient"))
        cases.append(
            Case(
                case_id,
                patient_id=str(patient) if patient not in (None, "") else None,
                images={"image": _loader(f)},
                label=tuple(found),  # type: ignore[arg-type]
            )
        )
        files[case_id] = {"image": str(f)}
    issues = []
    if missing:
        issues.append(
            LayoutIssue("missing_file", f"{len(missing)} images not found", tuple(missing))
        )
    if bad:
        issues.append(LayoutIssue("bad_annotation", f"{len(bad)} unusable annotations", tuple(bad)))
    return _dataset(options.get("name", p.stem), cases, files, labels, issues, p)


# --- PASCAL VOC ----------------------------------------------------------------------------------


def _voc_file(xml: Path) -> tuple[str, list[tuple[str, list[float], bool]]]:
    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError) as exc:
        raise UnreadableFileError(xml, f"not a PASCAL VOC annotation ({exc})") from exc
    name = (root.findtext("filename") or "").strip()
    objects = []
    for obj in root.iter("object"):
        label = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if bb is None or not label:
            raise UnreadableFileError(xml, "an <object> has no <name> or <bndbox>")
        try:
            corners = [float(bb.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError as exc:
            raise UnreadableFileError(xml, f"a <bndbox> is not numeric ({exc})") from exc
        objects.append((label, corners, (obj.findtext("difficult") or "0").strip() == "1"))
    return name, objects


@register_adapter("voc")
def load_voc(path: str | os.PathLike[str], /, **options: str) -> Dataset:
    """Read PASCAL VOC XML annotations (one file per image).

    VOC corners are 1-based inclusive pixel numbers: ``xmin=1, xmax=10`` covers the first ten
    pixels, index space ``i`` 0..9 (centre 4.5, width 10).

    Parameters
    ----------
    path : path-like
        The folder (with ``Annotations/`` or the XML files themselves).
    **options
        ``images=`` folder of the image files, ``name=``.
    """
    p = Path(path)
    _check_options("voc", p, options, {"images", "name"})
    xml_dir = p / "Annotations" if (p / "Annotations").is_dir() else p
    xmls = sorted(xml_dir.glob("*.xml"))
    if not xmls:
        raise EmptyInputError(p, "holds no PASCAL VOC .xml annotations")
    folders = [Path(options["images"])] if "images" in options else [p / "JPEGImages", xml_dir, p]
    cases, files, missing, labels = [], {}, [], set()
    for xml in xmls:
        name, objects = _voc_file(xml)
        name = name or next(
            (xml.with_suffix(s).name for s in IMAGE_SUFFIXES if xml.with_suffix(s).exists()), ""
        )
        f = _find_image([folder / name for folder in folders]) if name else None
        if f is None:
            missing.append(str(xml))
            continue
        found = []
        for label, (x0, y0, x1, y1), difficult in objects:
            region = _edge_region((x0 - 1, y0 - 1), (x1, y1), str(xml))
            found.append(Annotation(region, label, {"difficult": "1" if difficult else "0"}))
            labels.add(label)
        case_id = xml.stem
        cases.append(Case(case_id, images={"image": _loader(f)}, label=tuple(found)))  # type: ignore[arg-type]
        files[case_id] = {"image": str(f), "label": str(xml)}
    issues = []
    if missing:
        issues.append(
            LayoutIssue("missing_file", f"{len(missing)} annotations name no image", tuple(missing))
        )
    return _dataset(options.get("name", p.name), cases, files, sorted(labels), issues, p)


# --- box list per DICOM instance or file ---------------------------------------------------------


def _dicom_index(folder: Path) -> dict[str, tuple[Path, str]]:
    """SOP Instance UID -> (file, PatientID) of the DICOM files under ``folder``."""
    import pydicom

    out: dict[str, tuple[Path, str]] = {}
    for f in sorted(folder.rglob("*")):
        if not f.is_file():
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # not DICOM: skip it
            continue
        uid = str(getattr(ds, "SOPInstanceUID", "") or "")
        if uid:
            out[uid] = (f, str(getattr(ds, "PatientID", "") or ""))
    return out


def _box_rows(p: Path) -> list[dict[str, Any]]:
    """Rows ``{key, patient, boxes: [(lo, hi, label)]}`` of a CSV or JSON box list."""
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UnreadableFileError(p, f"cannot read the box list ({exc})") from exc
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(kind: str, key: str, patient: str | None) -> dict[str, Any]:
        row = rows.setdefault((kind, key), {"kind": kind, "key": key, "patient": None, "boxes": []})
        row["patient"] = row["patient"] or patient
        return row

    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
            instances = data["instances"] if isinstance(data, dict) else data
            for inst in instances:
                kind = "sop_instance_uid" if inst.get("sop_instance_uid") else "file"
                row = entry(kind, str(inst[kind]), inst.get("patient"))
                for b in inst.get("boxes", []):
                    c = [float(v) for v in b["box"]]
                    half = len(c) // 2
                    if len(c) not in (4, 6):
                        raise ValueError(f"box {c} has not 4 or 6 values")
                    row["boxes"].append((c[:half], c[half:], str(b.get("label", "lesion"))))
        except (ValueError, KeyError, TypeError) as exc:
            raise UnreadableFileError(p, f"not a medsight box list ({exc})") from exc
        return list(rows.values())
    reader = csv.DictReader(text.splitlines())
    header = set(reader.fieldnames or [])
    kind = "sop_instance_uid" if "sop_instance_uid" in header else "file"
    if kind not in header or not {"x0", "y0", "x1", "y1"} <= header:
        raise UnreadableFileError(
            p, "a box list needs a sop_instance_uid or file column and x0, y0, x1, y1"
        )
    for line, r in enumerate(reader, start=2):
        key = (r.get(kind) or "").strip()
        if not key:
            raise UnreadableFileError(p, f"line {line}: no {kind}")
        row = entry(kind, key, (r.get("patient") or "").strip() or None)
        axes = ["x", "y"] + (["z"] if "z0" in header and (r.get("z0") or "").strip() else [])
        lo = [_float(r.get(f"{a}0")) for a in axes]
        hi = [_float(r.get(f"{a}1")) for a in axes]
        if all(v is None for v in lo + hi):
            continue  # a negative image
        if any(v is None for v in lo + hi):
            raise UnreadableFileError(p, f"line {line}: incomplete box corners")
        row["boxes"].append((lo, hi, (r.get("label") or "lesion").strip()))
    return list(rows.values())


@register_adapter("boxes")
def load_box_list(path: str | os.PathLike[str], /, **options: str) -> Dataset:
    """Read a box list keyed by SOP Instance UID or file (see the module's docstring).

    Parameters
    ----------
    path : path-like
        The ``.csv`` or ``.json`` box list.
    **options
        ``dicom=`` folder searched for the instances (default: the list's folder), ``name=``.
    """
    p = Path(path)
    _check_options("boxes", p, options, {"dicom", "name"})
    rows = _box_rows(p)
    index: dict[str, tuple[Path, str]] | None = None
    cases, files, missing, labels = [], {}, [], set()
    for row in rows:
        patient = row["patient"]
        if row["kind"] == "sop_instance_uid":
            if index is None:
                index = _dicom_index(Path(options.get("dicom", p.parent)))
            hit = index.get(row["key"])
            if hit is None:
                missing.append(row["key"])
                continue
            f, dicom_patient = hit
            patient = patient or dicom_patient or None
        else:
            f = p.parent / row["key"]
            if not f.is_file():
                missing.append(row["key"])
                continue
        found = []
        for lo, hi, label in row["boxes"]:
            found.append(Annotation(_edge_region(lo, hi, f"{p}: {row['key']}"), label))
            labels.add(label)
        case_id = row["key"]
        cases.append(
            Case(case_id, patient_id=patient, images={"image": _loader(f)}, label=tuple(found))  # type: ignore[arg-type]
        )
        files[case_id] = {"image": str(f)}
    issues = []
    if missing:
        issues.append(
            LayoutIssue(
                "missing_file", f"{len(missing)} listed instances not found", tuple(missing)
            )
        )
    return _dataset(options.get("name", p.stem), cases, files, sorted(labels), issues, p)
