"""Conformance: every file of pydicom's and nibabel's bundled test data, against the references.

Each file goes through ``medsight info`` and :func:`medsight.io.read_image`.  It either reads or
is refused with one clean line (a :class:`~medsight.core.errors.MedsightError`, no traceback, no
warning on stderr).  Where the reference reader reads it too (SimpleITK/GDCM for DICOM images,
highdicom for DICOM SEG, nibabel for NIfTI/MGH), shape, spacing, origin, direction and pixel
values must agree within the tolerances below, except for the entries of
``conformance_differences.json``: each names the file, the field, both values and why.  The
list is exact: a listed difference that no longer occurs fails the test too.

Run this module as a script to print the summary written in ``docs/conformance.md``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medsight.core.errors import MedsightError
from medsight.io import read_image

DIFFERENCES = Path(__file__).with_name("conformance_differences.json")
#: Tolerances: geometry in mm (and direction cosines), pixel values relative to their range.
GEOMETRY_ATOL = 1e-3
VALUE_RTOL = 1e-4


def _pydicom_files() -> list[Path]:
    from pydicom.data import get_testdata_files

    # only what is on disk: get_testdata_files never downloads (get_testdata_file would)
    return sorted(Path(f) for f in get_testdata_files() if Path(f).is_file())


def _nibabel_files() -> list[Path]:
    import nibabel

    root = Path(nibabel.__file__).parent / "tests" / "data"
    return sorted(p for p in root.iterdir() if p.is_file())


def _name(path: Path) -> str:
    """A stable name: ``pydicom/<path in its test_files>`` or ``nibabel/<file>``."""
    parts = path.parts
    if "test_files" in parts:
        return "pydicom/" + "/".join(parts[parts.index("test_files") + 1 :])
    return "nibabel/" + path.name


def corpus() -> list[Path]:
    """Every bundled test file of pydicom and nibabel."""
    return _pydicom_files() + _nibabel_files()


@contextlib.contextmanager
def _quiet() -> Iterator[list[str]]:
    """Collect Python warnings (they would reach stderr) instead of showing them."""
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        yield caught
    caught.extend(f"{r.category.__name__}: {r.message}" for r in records)


# --- the reference readers ----------------------------------------------------------------
def _geometry(shape: Any, spacing: Any, origin: Any, direction: Any) -> dict[str, Any]:
    return {
        "shape": [int(v) for v in shape],
        "spacing": [float(v) for v in spacing],
        "origin": [float(v) for v in origin],
        "direction": np.asarray(direction, dtype=float).reshape(3, 3),
    }


def _simpleitk(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """GDCM through SimpleITK: geometry and the array in (i, j[, k][, c]) order."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)  # (k, j, i[, c])
    arr = np.swapaxes(arr, 0, 2) if img.GetDimension() == 3 else np.swapaxes(arr, 0, 1)
    dim = img.GetDimension()
    direction = np.eye(3)
    direction[:dim, :dim] = np.asarray(img.GetDirection()).reshape(dim, dim)
    pad = (0.0,) * (3 - dim)
    geom = _geometry(img.GetSize(), img.GetSpacing(), (*img.GetOrigin(), *pad), direction)
    return geom, arr


def _highdicom_seg(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """highdicom's own volume of a SEG (its frames' grid), labels combined."""
    import highdicom as hd

    vol = hd.seg.segread(path).get_volume(combine_segments=True)
    affine = np.asarray(vol.affine)[:, [2, 1, 0, 3]]  # (slice, row, column) -> (i, j, k)
    arr = np.swapaxes(np.asarray(vol.array), 0, 2)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return _geometry(arr.shape[:3], spacing, affine[:3, 3], affine[:3, :3] / spacing), arr


def _nibabel(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """nibabel's image, its RAS affine turned to LPS."""
    import nibabel as nib

    img = nib.load(path)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    arr = np.asarray(img.get_fdata())
    return _geometry(arr.shape[:3], spacing, affine[:3, 3], affine[:3, :3] / spacing), arr


def reference(path: Path) -> tuple[str, Any]:
    """(reader name, (geometry, array) or the error it raised) of the reference reader."""
    from pydicom import dcmread

    from medsight.io.dicom.seg import is_segmentation

    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith((".nii", ".nii.gz", ".mgz", ".mgh")):
        reader, fn = "nibabel", _nibabel
    else:
        try:
            with _quiet():
                seg = is_segmentation(dcmread(path, stop_before_pixels=True, force=True))
        except Exception:
            seg = False
        reader, fn = ("highdicom", _highdicom_seg) if seg else ("SimpleITK", _simpleitk)
    try:
        with _quiet():
            return reader, fn(path)
    except Exception as exc:
        return reader, exc


def _ours(path: Path) -> tuple[dict[str, Any], np.ndarray] | MedsightError:
    """medsight's geometry and array; a refusal must be one line and warn nothing."""
    with _quiet() as caught:
        try:
            img = read_image(path)
        except MedsightError as err:
            img = err
    assert caught == [], f"read_image({_name(path)}) warned: {caught}"
    if isinstance(img, MedsightError):
        assert "\n" not in str(img) and "Traceback" not in str(img), str(img)
        return img
    arr = np.asarray(img.array)
    direction = np.eye(3)
    direction[:, : img.spatial_ndim] = img.direction[:, : img.spatial_ndim]
    if img.spatial_ndim == 2:
        direction[:, 2] = np.cross(direction[:, 0], direction[:, 1])
    spacing = list(img.spacing) + [1.0] * (3 - img.spatial_ndim)
    return _geometry(
        list(img.shape) + [1] * (3 - img.spatial_ndim), spacing, img.origin, direction
    ), arr


def _fmt(v: Any) -> str:
    a = np.round(np.asarray(v, dtype=float), 4)
    return json.dumps(a.tolist())


@functools.cache
def compare(path: Path) -> tuple[str, dict[str, tuple[str, str]]]:
    """Outcome (``read``, ``refused``) and the fields that differ from the reference reader."""
    ours = _ours(path)
    reader, theirs = reference(path)
    diffs: dict[str, tuple[str, str]] = {}
    if isinstance(ours, MedsightError):
        if not isinstance(theirs, Exception):
            diffs["read"] = (f"refused: {ours.problem}", f"{reader} reads it")
        return "refused", diffs
    if isinstance(theirs, Exception):
        first = (str(theirs).strip().splitlines() or [type(theirs).__name__])[-1][:120]
        diffs["read"] = ("reads it", f"{reader} fails: {first}")
        return "read", diffs
    (g, a), (rg, ra) = ours, theirs
    if g["shape"] != rg["shape"]:
        diffs["shape"] = (_fmt(g["shape"]), _fmt(rg["shape"]))
    for field in ("spacing", "origin", "direction"):
        if not np.allclose(g[field], rg[field], atol=GEOMETRY_ATOL, rtol=0):
            diffs[field] = (_fmt(g[field]), _fmt(rg[field]))
    if "shape" not in diffs:
        a, ra = a.astype(np.float64), ra.astype(np.float64)
        ra = ra.reshape(a.shape) if ra.size == a.size else ra
        scale = max(1.0, float(np.nanmax(np.abs(ra))) if np.isfinite(ra).any() else 1.0)
        tol = {"atol": VALUE_RTOL * scale, "rtol": 0, "equal_nan": True}
        if a.shape != ra.shape:
            diffs["values"] = (f"array {list(a.shape)}", f"array {list(ra.shape)}")
        elif not np.allclose(a, ra, **tol):
            bad = ~np.isclose(a, ra, **tol)
            k = int(np.argmax(bad))
            diffs["values"] = (
                f"{bad.mean():.1%} of values differ (max {np.nanmax(np.abs(a - ra)):.6g}), "
                f"e.g. {a.ravel()[k]:.6g}",
                f"{ra.ravel()[k]:.6g}",
            )
    return "read", diffs


# --- the tests ----------------------------------------------------------------------------
def _listed() -> dict[tuple[str, str], dict[str, str]]:
    entries = json.loads(DIFFERENCES.read_text())["differences"]
    return {(e["file"], e["field"]): e for e in entries}


FILES = corpus()


@pytest.mark.parametrize("path", FILES, ids=[_name(p) for p in FILES])
def test_info_and_read_image_read_or_refuse_in_one_clean_line(path, capsys):
    from medsight.cli.app import main

    with _quiet() as caught:
        code = main(["info", str(path), "--json"])
    out = capsys.readouterr()
    assert caught == [], caught
    assert code in (0, 2)
    if code == 0:
        assert json.loads(out.out)["series"], out.out
        assert out.err == ""
    else:  # nothing usable: one "error: FILE: problem" line per bad file, no traceback
        assert "Traceback" not in out.err
        assert all(line.startswith("error: ") for line in out.err.splitlines()), out.err
    compare(path)  # read_image against the reference reader (checked in the next test)


def test_every_reference_reader_agrees_except_the_listed_differences():
    listed = _listed()
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for path in FILES:
        _, diffs = compare(path)
        for field, values in diffs.items():
            found[(_name(path), field)] = values
    unlisted = {k: v for k, v in found.items() if k not in listed}
    stale = sorted(k for k in listed if k not in found)
    assert not unlisted, "differences not in conformance_differences.json:\n" + "\n".join(
        f"{f} {field}: ours {o} theirs {t}" for (f, field), (o, t) in sorted(unlisted.items())
    )
    assert not stale, f"listed differences that no longer occur (remove them): {stale}"
    for entry in listed.values():
        assert entry["why"].strip() and entry["ours"].strip() and entry["theirs"].strip()


def summary() -> str:
    """The counts and the differences table for ``docs/conformance.md``."""
    listed = _listed()
    counts = {"identical": 0, "justified": 0, "refused": 0}
    for path in FILES:
        outcome, diffs = compare(path)
        if outcome == "refused" and not diffs:
            counts["refused"] += 1
        elif diffs:
            counts["justified"] += 1
        else:
            counts["identical"] += 1
    lines = [
        f"- files: {len(FILES)} (pydicom {len(_pydicom_files())}, nibabel {len(_nibabel_files())})",
        f"- read, identical to the reference reader: {counts['identical']}",
        f"- read or refused with a justified difference: {counts['justified']}",
        f"- refused cleanly (one line), as the reference reader does: {counts['refused']}",
        "",
        "| file | field | medsight | reference | why |",
        "|---|---|---|---|---|",
    ]
    for (f, field), e in sorted(listed.items()):
        cells = [f, field, e["ours"], e["theirs"], e["why"]]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # print what docs/conformance.md shows
    with contextlib.redirect_stderr(io.StringIO()):
        text = summary()
    sys.stdout.write(text + os.linesep)
