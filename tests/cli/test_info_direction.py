"""``medsight info`` shows each series' direction cosines and obliquity, not only 'LPS'."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from medsight.cli.app import main
from medsight.core.geometry import obliquity_degrees


def _series(pydicom_file, folder, degrees: float, n: int = 3):
    """``n`` CT slices whose rows stay along x and columns are tilted ``degrees`` about x."""
    t = np.radians(degrees)
    row, col = np.array([1.0, 0, 0]), np.array([0, np.cos(t), np.sin(t)])
    normal = np.cross(row, col)
    folder.mkdir()
    uid = pydicom.uid.generate_uid()
    for k in range(n):
        ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.ImagePositionPatient = [float(v) for v in 2.5 * k * normal]
        ds.InstanceNumber = k + 1
        ds.SliceThickness = 2.5
        ds.save_as(folder / f"s{k}.dcm")
    return row, col, normal


def test_an_11_degree_oblique_series_shows_its_angle_and_direction(pydicom_file, tmp_path, capsys):
    row, col, normal = _series(pydicom_file, tmp_path / "oblique", 11.0)
    assert main(["info", str(tmp_path / "oblique"), "--json"]) == 0
    (series,) = json.loads(capsys.readouterr().out)["series"]
    assert series["orientation"] == "LPS"  # the nearest code alone hides the tilt
    assert series["obliquity_deg"] == pytest.approx(11.0, abs=0.01)
    direction = np.array(series["direction"])  # columns: i (rows' direction), j, k
    np.testing.assert_allclose(direction, np.column_stack([row, col, normal]), atol=1e-4)
    assert all(len(str(v).split(".")[-1]) <= 4 for r in series["direction"] for v in r)


def test_the_table_shows_the_angle_and_the_cosines(pydicom_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    _series(pydicom_file, tmp_path / "oblique", 11.0)
    assert main(["info", str(tmp_path / "oblique")]) == 0
    out = capsys.readouterr().out
    assert "LPS (11.0 deg oblique)" in out
    assert "+0.9816" in out and "+0.1908" in out  # cos 11 deg, sin 11 deg


def test_an_axis_aligned_series_is_zero_degrees(pydicom_file, tmp_path, capsys):
    _series(pydicom_file, tmp_path / "axial", 0.0)
    assert main(["info", str(tmp_path / "axial"), "--json"]) == 0
    (series,) = json.loads(capsys.readouterr().out)["series"]
    assert series["obliquity_deg"] == 0.0
    assert series["direction"] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


@pytest.mark.parametrize("degrees", [3.0, 11.0, 30.0])
def test_obliquity_of_a_compound_tilt_is_its_rotation_angle(degrees):
    # a rotation by `degrees` about an arbitrary axis, after an axis permutation with flips
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    t = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k  # Rodrigues' formula
    perm = np.array([[0, -1, 0], [0, 0, 1], [-1, 0, 0]], float)
    affine = np.eye(4)
    affine[:3, :3] = rot @ perm @ np.diag([0.7, 0.7, 3.0])
    assert obliquity_degrees(affine) == pytest.approx(degrees, abs=1e-6)
