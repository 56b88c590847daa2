"""fMRI clusters in the DICOM SR: one TID 1411 group per cluster (peak z, size in mm3) that
references its segment in the fMRI SEG, and dciodvfy accepts the SR."""

from __future__ import annotations

import highdicom as hd
import pandas as pd
import pydicom
import pytest
from tests.analysis import fmri_synthetic as syn

from medsight.analysis.functional_report import MODEL_ID
from medsight.analysis.pipeline import analyze
from medsight.reporting.validate import dciodvfy


def test_every_cluster_is_a_volumetric_group_referencing_its_segment(tmp_path, debian_tool):
    debian_tool("dciodvfy")
    folder = syn.write_bold_dicom(tmp_path / "bold")
    events = tmp_path / "events.tsv"
    syn.EVENTS.to_csv(events, sep="\t", index=False)
    out = tmp_path / "out"
    result = analyze(folder, out, [], events=events, explain=False)
    outputs = result.report.outputs
    table = pd.read_csv(out / "clusters.csv")
    assert len(table) >= 1
    sr_file = out / outputs["DICOM SR fMRI task"]
    seg_file = out / outputs["DICOM SEG fMRI task"]
    assert dciodvfy(sr_file)[0] == []
    sr = hd.sr.srread(sr_file)
    seg = pydicom.dcmread(seg_file, stop_before_pixels=True)
    assert sr.PatientID == "FMRI1" and sr.StudyInstanceUID == seg.StudyInstanceUID
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(table)
    for n, (group, row) in enumerate(zip(groups, table.itertuples(), strict=True), start=1):
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert ref.referenced_segment_numbers == [n]
        label = seg.SegmentSequence[n - 1].SegmentLabel
        assert label.endswith(f"cluster {row.cluster}")
        by_name = {m.name.meaning: m for m in group.get_measurements()}
        assert by_name["Z-score"].value == pytest.approx(row.peak_z, abs=1e-3)
        assert by_name["Z-score"].derivation.meaning == "Maximum"
        volume = by_name["Volume"]
        assert volume.unit.value == "mm3" and volume.value == pytest.approx(row.size_mm3, rel=1e-3)
        assert [site.value.meaning for site in group.finding_sites] == ["Brain"]
    assert not [w for w in result.report.warnings if "dicom/" in w]
    assert all(f.model_id == MODEL_ID for f in result.report.findings)
