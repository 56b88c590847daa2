"""``analyze`` with a prior: two small DICOM studies of one patient made from a real MR image
(MSD hippocampus) and its synthetic growth (+30 % volume, moved rigidly), found automatically or
given with ``--prior``; refused for another patient or a later "prior"; a failed registration
reported as such.

The segmentation package is tiny and its network is not what is tested: its inference is
replaced by the known truth of each synthetic study (looked up by StudyInstanceUID), so that
the masks are certain and the test checks the comparison, the report, SR and FHIR.
"""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medsight.analysis.pipeline import analyze, analyze_studies
from medsight.cli.app import main
from medsight.core.codes import LESION
from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.inference.segment import SegmentationResult, Segmenter
from medsight.models.package import ModelPackage
from medsight.models.registry import build_network
from medsight.models.seg_plan import PLAN_FILE, SegmentationPlan
from medsight.models.spec import (
    ArchitectureSpec,
    InputSpec,
    LabelSpec,
    ModelSpec,
    Significance,
    Task,
)

from ..clinical.synthetic_growth import grow, rotation

PATIENT = {"PatientID": "P7", "PatientName": "DOE^JANE", "PatientBirthDate": "19600101"}


def write_study(folder, image: Image, date: str, patient=PATIENT, description="t1") -> str:
    """``image`` (1 mm, identity direction) as an MR series of one new study; its UID."""
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    arr = np.clip(np.asarray(image.array, float), 0, None)
    arr = np.round(arr * (1000.0 / max(arr.max(), 1.0))).astype(np.uint16)
    for k in range(arr.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "MR"
        for key, value in patient.items():
            setattr(ds, key, value)
        ds.StudyDate, ds.StudyTime, ds.SeriesDescription = date, "120000", description
        ds.InstanceNumber, ds.SeriesNumber = k + 1, 1
        ds.FrameOfReferenceUID = frame
        ds.Rows, ds.Columns = arr.shape[1], arr.shape[0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 1.0
        ds.ImagePositionPatient = [float(v) for v in image.origin + np.array([0.0, 0.0, k])]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(arr[:, :, k].T).tobytes()
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return study


@pytest.fixture(scope="module")
def lesion_package(tmp_path_factory) -> ModelPackage:
    """A tiny 3D MR segmentation package with one actionable "lesion" label."""
    plan = SegmentationPlan(
        spatial_ndim=3,
        modality="MR",
        target_spacing=[1.0, 1.0, 1.0],
        median_shape=[16, 16, 16],
        patch_size=[16, 16, 16],
        batch_size=2,
        kernel_size=[[3, 3, 3]] * 3,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * 2,
        filters=[4, 8, 16],
        normalization="zscore_nonzero",
        label_names={0: "background", 1: "lesion"},
    )
    spec = ModelSpec(
        name="tiny-lesion-seg",
        version="0.0.1",
        task=Task.SEGMENTATION,
        architecture=ArchitectureSpec(
            name="classifier",
            args={"in_shape": [1, 16, 16, 16], "classes": 2, "channels": [4], "strides": [2]},
        ),
        input=InputSpec(modalities=["MR"], spatial_ndim=3),
        preprocessing=plan.preprocessing(1),
        labels=[
            LabelSpec(index=0, name="background", significance=Significance.NORMAL),
            LabelSpec(index=1, name="lesion", code=LESION, significance=Significance.ACTIONABLE),
        ],
        intended_use="Test fixture only: its inference is replaced by the known truth.",
    )
    folder = tmp_path_factory.mktemp("pkg") / "tiny-lesion-seg"
    return ModelPackage.save(
        folder,
        spec,
        build_network(spec.architecture).state_dict(),
        extra_files={PLAN_FILE: plan.model_dump_json()},
    )


@pytest.fixture(scope="module")
def studies(shared_data, tmp_path_factory):
    """prior (2024-01-10) and current (2024-07-08, +30 % lesion, moved) of one patient, plus
    another patient's prior, a later "prior" and an unrelated-content prior; and the truth."""
    from scipy import ndimage

    from medsight.io import read_image

    folder = shared_data / "hippocampus"
    image = read_image(folder / "imagesTr" / "hippocampus_001.nii.gz")
    label = read_image(folder / "labelsTr" / "hippocampus_001.nii.gz")
    image = image.with_array(np.asarray(image.array, np.float32))
    mask = label.with_array((np.asarray(label.array) > 0).astype(np.uint8))
    current, current_mask = grow(image, mask, 1.3, rotation(2, 4.0), np.array([1.5, -1.0, 1.0]))
    root = tmp_path_factory.mktemp("studies")
    truth = {}
    both = root / "both"
    truth[write_study(both / "prior", image, "20240110")] = mask
    truth[write_study(both / "current", current, "20240708")] = current_mask
    other = dict(PATIENT, PatientID="P8", PatientName="ROE^JOHN")
    truth[write_study(root / "other", image, "20240110", patient=other)] = mask
    truth[write_study(root / "later", image, "20250110")] = mask
    noise = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=image.shape), 3)
    truth[write_study(root / "noise", image.with_array(200 + 100 * noise), "20240110")] = mask
    return root, truth


@pytest.fixture
def oracle(monkeypatch, studies):
    """The segmenter answers each synthetic study with its known mask."""
    _root, truth = studies

    def known(self, image, probabilities=False, features=False):
        mask = truth[image.source.study_instance_uid]
        assert mask.shape == image.shape
        return SegmentationResult(image.with_array(np.asarray(mask.array)), None, {1: "lesion"})

    monkeypatch.setattr(Segmenter, "__call__", known)


def _change_findings(report):
    return [f for f in report["findings"] if f["kind"] == "change"]


def test_prior_found_among_the_studies_gives_change_report_sr_and_fhir(
    studies, oracle, lesion_package, tmp_path, debian_tool
):
    root, _truth = studies
    outcomes = analyze_studies(root / "both", tmp_path / "out", [lesion_package])
    by_date = {o.group.study.series[0].dicom.header.StudyDate: o for o in outcomes}
    prior, current = by_date["20240110"], by_date["20240708"]
    assert prior.result.report.comparison is None  # nothing earlier than the prior itself
    report = json.loads((current.out_dir / "report.json").read_text())
    section = report["comparison"]
    assert section["prior_date"] == "2024-01-10" and section["interval_days"] == 180
    (registration,) = section["registrations"]
    assert registration["ok"] and registration["kind"] == "rigid"
    (row,) = section["rows"]
    percent = float(row["percent"].split()[0])
    assert percent == pytest.approx(30.0, abs=4.0) and row["category"].startswith("SD")
    assert row["doubling_time"].endswith("days")
    (change,) = _change_findings(report)
    assert "RECIST-style" in change["note"] and "not a RECIST read" in change["note"]
    assert change["prior_source"]["study_instance_uid"] == prior.group.study_uid
    assert "Compared with the prior of 2024-01-10" in report["impression"]
    html = (current.out_dir / "report.html").read_text()
    assert "Comparison with prior (2024-01-10)" in html and 'id="comparison"' in html
    # SR: the change group names a prior instance as a source; the prior is other evidence
    debian_tool("dciodvfy")
    assert current.result.dicom_errors == {}
    sr = hd.sr.srread(current.out_dir / report["outputs"]["DICOM SR"])
    other = sr.PertinentOtherEvidenceSequence
    assert [item.StudyInstanceUID for item in other] == [prior.group.study_uid]
    prior_sops = {
        s.ReferencedSOPInstanceUID
        for item in other
        for series in item.ReferencedSeriesSequence
        for s in series.ReferencedSOPSequence
    }
    groups = sr.content.get_planar_roi_measurement_groups() + list(
        sr.content.get_image_measurement_groups()
    )
    change_group = [
        g for g in groups if "Progressive" in str(g.finding_type) or "Stable" in str(g.finding_type)
    ]
    assert change_group, [str(g.finding_type) for g in groups]
    sources = {img.referenced_sop_instance_uid for img in change_group[0].source_images}
    assert sources & prior_sops
    # FHIR: two ImagingStudies, the change Observation derived from both
    bundle = json.loads((current.out_dir / "fhir_bundle.json").read_text())
    refs = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    imaging = [u for u, r in refs.items() if r["resourceType"] == "ImagingStudy"]
    assert {refs[u].get("started") for u in imaging} == {"2024-07-08", "2024-01-10"}
    changed = [
        r
        for r in refs.values()
        if r["resourceType"] == "Observation"
        and r["code"]["coding"][0]["code"] in {"112041", "112042", "112043", "112044"}
    ]  # DCM CID 6144 target lesion response codes of the RECIST-style category
    assert len(changed) == 1
    assert {d["reference"] for d in changed[0]["derivedFrom"]} == set(imaging)


def test_explicit_prior_of_another_patient_is_refused(studies, oracle, lesion_package, tmp_path):
    root, _truth = studies
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError, match="not the same patient"):
        analyze(root / "both" / "current", out, [lesion_package], prior=root / "other")
    assert not out.exists()  # refused before anything was written
    with pytest.raises(InvalidInputError, match="not earlier"):
        analyze(root / "both" / "current", out, [lesion_package], prior=root / "later")
    result = analyze(
        root / "both" / "current",
        out,
        [lesion_package],
        prior=root / "other",
        allow_identity_mismatch=True,
    )
    assert any("identity check overridden" in w for w in result.report.warnings)
    assert result.report.comparison["rows"]


def test_unrelated_prior_reports_a_failed_registration(studies, oracle, lesion_package, tmp_path):
    root, _truth = studies
    result = analyze(
        root / "both" / "current",
        tmp_path / "out",
        [lesion_package],
        prior=root / "noise",
        dicom_outputs=False,
    )
    section = result.report.comparison
    (registration,) = section["registrations"]
    assert not registration["ok"] and section["rows"] == []
    assert not [f for f in result.report.findings if f.kind == "change"]
    assert any("registration of the prior failed" in w for w in result.report.warnings)


def test_cli_prior_option(studies, oracle, lesion_package, tmp_path, capsys):
    root, _truth = studies
    args = ["analyze", str(root / "both" / "current"), "--model", str(lesion_package.path)]
    code = main(
        [*args, "--prior", str(root / "both" / "prior"), "--out", str(tmp_path / "a"), "--no-dicom"]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Compared with the prior of 2024-01-10" in " ".join(printed.split())
    code = main([*args, "--prior", str(root / "other"), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not the same patient" in err[0]


def test_automatic_prior_is_the_latest_earlier_study_of_the_same_patient(tmp_path):
    from medsight.analysis.prior import find_priors
    from medsight.analysis.studies import split_studies
    from medsight.io import read_study

    image = Image(np.arange(4 * 4 * 2, dtype=np.float32).reshape(4, 4, 2))
    renamed = dict(PATIENT, PatientName="ROE^JOHN")  # same ID, another name: never compared
    uids = {
        "old": write_study(tmp_path / "a", image, "20230101"),
        "latest": write_study(tmp_path / "b", image, "20240101"),
        "renamed": write_study(tmp_path / "c", image, "20240301", patient=renamed),
        "current": write_study(tmp_path / "d", image, "20240701"),
        "later": write_study(tmp_path / "e", image, "20250101"),
    }
    groups = split_studies(read_study(tmp_path))
    index = {g.study_uid: n for n, g in enumerate(groups)}
    found = find_priors(groups)
    prior, note = found[index[uids["current"]]]
    assert "not the same patient" in note and prior is None  # the latest earlier is "renamed"
    prior, note = found[index[uids["latest"]]]
    assert note == "" and prior.identity.study_uid == uids["old"]
    assert found[index[uids["old"]]] == (None, "")  # nothing earlier
