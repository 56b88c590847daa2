"""``analyze`` with a tiny classification package on DICOM (pydicom's CT) and on a PNG."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle
from PIL import Image as PILImage

from medsight.analysis.pipeline import analyze
from medsight.core import InvalidInputError
from medsight.core.codes import NEOPLASM


def test_dicom_input_gives_report_sr_sc_and_fhir(
    tmp_path, pydicom_file, debian_tool, tiny_classifier
):
    debian_tool("dciodvfy")
    pkg = tiny_classifier()
    out = tmp_path / "out"
    result = analyze(pydicom_file("CT_small.dcm"), out, [pkg])
    assert result.dicom_errors == {}
    report = json.loads((out / "report.json").read_text())
    assert [m["status"] for m in report["models"]] == ["ran"]
    finding = report["findings"][0]
    assert finding["finding"]["value"] == NEOPLASM.value and 0 <= finding["probability"] <= 1
    assert finding["positive"] == (finding["probability"] >= 0.5)
    assert "requires review by a qualified clinician" in report["disclaimer"]
    assert (out / "overlay_tiny-ct.png").is_file()
    sr = hd.sr.srread(out / report["outputs"]["DICOM SR"])
    groups = sr.content.get_image_measurement_groups()
    assert groups[0].get_qualitative_evaluations()[0].value.meaning in ("Present", "Absent")
    sc = hd.imread(out / report["outputs"]["DICOM SC tiny-ct@0.0.1"])
    assert sc.StudyInstanceUID == sr.StudyInstanceUID
    Bundle.model_validate(json.loads((out / "fhir_bundle.json").read_text()))
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "tiny-ct@0.0.1" in html


def test_png_input_and_skipped_models(tmp_path, tiny_classifier):
    arr = (np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)
    PILImage.fromarray(arr).save(tmp_path / "x.png")
    ok = tiny_classifier()
    wrong = tiny_classifier(name="us-only", modalities=("US",))
    result = analyze(tmp_path / "x.png", tmp_path / "out", [ok, wrong])
    status = {m.model_id: m.status for m in result.report.models}
    # a PNG says no modality: a model listing OT runs, one made for US only is not guessed to fit
    assert status == {"tiny-ct@0.0.1": "ran", "us-only@0.0.1": "withheld"}
    why = next(m.reason for m in result.report.models if m.model_id == "us-only@0.0.1")
    assert "does not say its modality" in why and "--modality" in why
    declared = analyze(tmp_path / "x.png", tmp_path / "out2", [wrong], modality="US")
    assert declared.report.models[0].status == "ran"
    assert not (tmp_path / "out" / "dicom").exists()


def test_nothing_can_run_is_a_clear_error(tmp_path, pydicom_file, tiny_classifier):
    wrong = tiny_classifier(name="us-only", modalities=("US",))
    with pytest.raises(InvalidInputError, match="no model could run"):
        analyze(pydicom_file("CT_small.dcm"), tmp_path / "out", [wrong])
