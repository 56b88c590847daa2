"""Decoder failures and pydicom warnings become one-line messages and problem lines."""

from __future__ import annotations

import shutil

import pydicom
import pytest

from medsight.cli.app import main
from medsight.core.errors import MedsightError
from medsight.io import read_image, read_study


def test_jpeg2000_decode_error_names_plugins_and_what_to_install(pydicom_file, capsys):
    path = pydicom_file("JPEG2000-embedded-sequence-delimiter.dcm")
    with pytest.raises(MedsightError) as info:
        read_image(path)
    err = info.value
    assert "JPEG 2000" in err.problem and "every installed decoder failed" in err.problem
    assert "pylibjpeg: " in err.problem and "failed to read the header" in err.problem
    assert "\n" not in str(err) and "all available plugins:" not in str(err)
    assert "pylibjpeg-openjpeg or python-gdcm" in err.hint and "gdcmconv" in err.hint
    assert main(["info", str(path)]) == 2
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "python-gdcm" in lines[0]


def test_badvr_file_is_one_clean_error_and_no_warning_on_stderr(pydicom_file, capfd):
    path = pydicom_file("badVR.dcm")
    assert main(["info", str(path)]) == 2
    err = capfd.readouterr().err
    assert "Warning" not in err and "warn" not in err
    assert err.strip() == f"error: {path}: Number of Frames (0028,0008) is '1A', not a number"


def test_invalid_header_values_become_problem_lines(pydicom_file, tmp_path, capfd):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    with pytest.warns(UserWarning):  # an LO longer than 64 characters: pydicom warns
        ds.StudyDescription = "x" * 70
        target = tmp_path / "ct.dcm"
        ds.save_as(target)
    capfd.readouterr()
    study = read_study(target)
    problems = study.series[0].problems
    assert any("Study Description (0008,1030)" in p and "64" in p for p in problems), problems
    assert all("Please see" not in p for p in problems)
    img = study.series[0].load()
    assert img.shape == (128, 128, 1)
    assert capfd.readouterr().err == ""  # captured, not printed
    # a series whose files share the oddity: one line, with the count
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + 5.0]
    ds.save_as(tmp_path / "ct2.dcm")
    lines = [p for p in read_study(tmp_path).series[0].problems if "Study Description" in p]
    assert len(lines) == 1 and lines[0].endswith("(in 2 of 2 files)")


def test_missing_decoder_says_what_to_install(pydicom_file, tmp_path, monkeypatch):
    from pydicom.pixels.decoders import base

    src = pydicom_file("JPEG2000.dcm")
    shutil.copy(src, tmp_path / "j2k.dcm")

    def no_decoders(self, *args, **kwargs):
        raise RuntimeError(  # pydicom's message when no plug-in for the syntax is installed
            "Unable to decompress 'JPEG 2000 Image Compression' pixel data because all plugins "
            "are missing dependencies:\n\tgdcm - requires gdcm\n\tpylibjpeg - requires "
            "pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0"
        )

    monkeypatch.setattr(base.Decoder, "as_array", no_decoders)
    with pytest.raises(MedsightError) as info:
        read_image(tmp_path / "j2k.dcm")
    assert "no installed decoder handles it" in info.value.problem
    assert "\n" not in str(info.value)
    assert "install pylibjpeg-openjpeg" in info.value.hint
