"""``analyze`` on the real brain MR study with the zoo's hippocampus segmentation package."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest

from medsight.analysis.pipeline import analyze
from medsight.io import read_image, read_study
from medsight.models import ModelPackage


@pytest.fixture(scope="module")
def hippocampus_package() -> ModelPackage:
    path = Path(str(files("medsight") / "zoo" / "hippocampus-dynunet"))
    if not path.is_dir():
        pytest.fail("the zoo's hippocampus-dynunet package is missing")
    return ModelPackage.load(path)


def test_brain_study_gives_valid_seg_sr_and_measurements(
    shared_data, tmp_path, debian_tool, hippocampus_package
):
    debian_tool("dciodvfy")
    study = shared_data / "dicom" / "brain_mr_study1"
    out = tmp_path / "out"
    result = analyze(study, out, [hippocampus_package])
    assert result.dicom_errors == {}
    report = json.loads((out / "report.json").read_text())
    run = report["models"][0]
    assert run["status"] == "ran" and "HippoCrop" in run["series"]
    found = {f["note"]: f for f in report["findings"]}
    assert set(found) == {"anterior", "posterior"}
    volume = {m["concept"]["meaning"]: m for m in found["anterior"]["measurements"]}["Volume"]
    assert volume["unit"]["value"] == "mL" and 0.5 < volume["value"] < 6  # adult hippocampus
    # the SEG holds exactly the predicted mask, on the source instances
    mask = read_image(
        out / report["outputs"]["mask hippocampus-dynunet@" + hippocampus_package.spec.version]
    )
    image = read_image(study, series="HippoCrop")
    np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
    seg = hd.seg.segread(out / report["outputs"][f"DICOM SEG {hippocampus_package.id}"])
    arr = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(image.source.sop_instance_uids), combine_segments=True
    )
    np.testing.assert_array_equal(arr, np.transpose(np.asarray(mask.array), (2, 1, 0)))
    sr = hd.sr.srread(out / report["outputs"]["DICOM SR"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 2
    assert {g.referenced_segment.referenced_sop_instance_uid for g in groups} == {
        seg.SOPInstanceUID
    }


def test_de_identified_study_stays_analysable(shared_data, tmp_path, hippocampus_package):
    """The Basic Profile removes Series Description; the crop is still found by its header."""
    from medsight.privacy.batch import deidentify_folder
    from medsight.privacy.keys import PseudonymKey
    from medsight.privacy.profile import DeidConfig

    deid = tmp_path / "deid"
    deidentify_folder(
        shared_data / "dicom" / "brain_mr_study1",
        deid,
        PseudonymKey(bytes(32)),
        DeidConfig(),
        workers=1,
    )
    assert not any(s.description for s in read_study(deid))
    result = analyze(deid, tmp_path / "out", [hippocampus_package], dicom_outputs=False)
    run = result.report.models[0]
    assert run.status == "ran", run.reason
    assert any("no description" in w for w in run.warnings)
    assert {f.note for f in result.report.findings} == {"anterior", "posterior"}
