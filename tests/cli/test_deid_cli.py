"""``medsight deid`` and ``medsight audit verify``: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest

from medsight.cli.app import main
from medsight.privacy.keys import PseudonymKey


@pytest.fixture
def small_input(pydicom_file, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
        shutil.copy(pydicom_file(name), src / name)
    return src


def test_deid_verify_and_audit(small_input, tmp_path, capsys):
    out, key, log = tmp_path / "out", tmp_path / "keys" / "site.key", tmp_path / "audit.jsonl"
    argv = ["deid", str(small_input), str(out), "--key-file", str(key), "--verify"]
    argv += ["-o", "retain-patient-characteristics", "--audit-log", str(log), "--workers", "1"]
    argv += ["--reid-table", str(tmp_path / "reid.csv")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "de-identified 3 of 3 files" in text and "no leak found" in text
    assert "JPEG2000.dcm: may carry burned-in text" in text and "--scrub-pixels" in text
    assert key.exists() and len(list(out.rglob("*.dcm"))) == 3
    assert (tmp_path / "reid.csv").read_text().count("\n") == 4  # header + 3 patients
    record = json.loads(log.read_text())
    assert record["key_id"] == PseudonymKey.load(key).key_id and record["leak_hits"] == 0
    assert len(record["outputs"]) == 3 and record["inputs"]["files"] == 3
    assert record["command"][:2] == ["medsight", "deid"] and "--verify" in record["command"]
    assert main(["audit", "verify", str(log)]) == 0
    assert "ok: 1 records" in capsys.readouterr().out
    log.write_text(log.read_text().replace("retain-patient-characteristics", "retain-uids"))
    assert main(["audit", "verify", str(log)]) == 1
    assert "TAMPERED" in capsys.readouterr().out


def test_deid_refuses_reid_table_in_out_with_exit_2(small_input, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["deid", str(small_input), str(out), "--key-file", str(tmp_path / "k.key")]
    assert main([*argv, "--reid-table", str(out / "reid.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "reid.csv" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert main([*argv[:3], "--key-file", str(out / "site.key")]) == 2
    assert "site.key: the key file must not be inside the output folder" in capsys.readouterr().err
    assert not out.exists()


def _pdf_dataset(tmp_path):
    """An Encapsulated PDF report naming the patient (in the header and in the PDF)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = EncapsulatedPDFStorage, "1.2.826.0.1.3680043.8.498.991"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.99", "1.2.3.99.1"
    ds.Modality, ds.PatientName, ds.MIMETypeOfEncapsulatedDocument = (
        "DOC",
        "Quixote^Z",
        "application/pdf",
    )
    ds.EncapsulatedDocument = b"%PDF-1.4 report for Zebulon Quixote %%EOF\n"
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_non_images_are_noted_not_failed_and_pdf_never_passes(small_input, tmp_path, capsys):
    import shutil as sh

    (small_input / "notes.txt").write_text("Zebulon Quixote")
    sh.move(_pdf_dataset(tmp_path), small_input / "report.dcm")
    out = tmp_path / "out"
    argv = ["deid", str(small_input), str(out), "--key-file", str(tmp_path / "k")]
    assert main([*argv, "--report", str(tmp_path / "report.json")]) == 0
    captured = capsys.readouterr()
    assert "note: notes.txt: not a DICOM, NIfTI, PNG or JPEG file" in captured.out
    assert "note: report.dcm: Encapsulated PDF Storage: dropped" in captured.out
    assert "de-identified 3 of 5 files" in captured.out and "2 not images" in captured.out
    assert not any(b"%PDF" in p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert len(list(out.rglob("*.dcm"))) == 3
    report = json.loads((tmp_path / "report.json").read_text())
    assert {f["status"] for f in report["files"]} == {"written", "noted"}


@pytest.mark.integration
def test_pixel_verify_fails_on_burned_in_text_and_passes_after_scrub(
    debian_tool, pydicom_file, tmp_path, capsys
):
    """pydicom's ultrasound has "BAPTIST MED CTR" (its Institution Name) burned in."""
    debian_tool("tesseract")
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(pydicom_file("examples_rgb_color.dcm"), src / "us.dcm")
    key = ["--key-file", str(tmp_path / "k"), "--layout", "mirror"]
    assert main(["deid", str(src), str(tmp_path / "plain"), *key]) == 0
    capsys.readouterr()
    argv = ["deid", str(src), str(tmp_path / "plain"), "--verify-only", "--scrub-pixels"]
    assert main(argv) == 1  # the header is clean, the pixels are not
    text = capsys.readouterr().out
    assert "LEAK: us.dcm: pixels (OCR, frame 0" in text and "'B****** M** C**'" in text
    assert "BAPTIST" not in text.upper()
    report = tmp_path / "report.json"
    argv = ["deid", str(src), str(tmp_path / "clean"), *key, "--scrub-pixels", "--verify"]
    assert main([*argv, "--report", str(report)]) == 0
    text = capsys.readouterr().out
    assert "no leak found" in text and "scrubbed: us.dcm" in text and "BAPTIST" not in text
    data = json.loads(report.read_text())
    removed = data["files"][0]["pixels_removed"]
    assert any("institution" in r["matched"] for r in removed)
    assert all(len(r["box"]) == 4 and r["found_by"] for r in removed)
    assert "BAPTIST" not in report.read_text().upper()


def test_two_processes_give_identical_outputs(small_input, tmp_path):
    """Same inputs and key in two separate interpreters: byte-identical files, same names."""
    import hashlib
    import subprocess
    import sys

    key = tmp_path / "site.key"
    PseudonymKey(bytes(range(32))).save(key)
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        code = (  # the library call the CLI makes (importing the whole CLI takes longer)
            "from medsight.privacy import DeidConfig, PseudonymKey, deidentify_folder; "
            "from medsight.privacy.profile import profile_defaults; "
            f"deidentify_folder({str(small_input)!r}, {str(out)!r}, "
            f"PseudonymKey.load({str(key)!r}), "
            "DeidConfig(**profile_defaults('hospital-analysis')), workers=1)"
        )
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        files = sorted(p for p in out.rglob("*") if p.is_file())
        digests.append(
            {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        )
    assert len(digests[0]) == 3 and digests[0] == digests[1]


def test_deid_bad_key_file_and_bad_option(small_input, tmp_path, capsys):
    key = tmp_path / "k.key"
    key.write_text("{}")
    assert main(["deid", str(small_input), str(tmp_path / "o"), "--key-file", str(key)]) == 2
    assert "k.key: not a readable medsight key file" in capsys.readouterr().err
    argv = ["deid", str(small_input), str(tmp_path / "o"), "--key-file", str(tmp_path / "n")]
    assert main([*argv, "-o", "retain-everything"]) == 2
    assert main([*argv, "--safe-private", "0019,GEMS"]) == 2
    assert "safe private tag: '0019,GEMS' is not of the form" in capsys.readouterr().err
    assert main([*argv, "-o", "retain-full-dates", "-o", "retain-modified-dates"]) == 2
    assert "options: retain-full-dates and retain-modified-dates" in capsys.readouterr().err


def test_verify_only_reports_leaks_in_an_untouched_copy(small_input, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(small_input, copy)
    assert main(["deid", str(small_input), str(copy), "--verify-only"]) == 1
    out = capsys.readouterr().out
    assert "LEAK: CT_small.dcm: (0010,0010) PatientName contains 'c****************'" in out
    assert "compressedsamples" not in out.lower()  # values are printed masked
    assert main(["deid", str(small_input), str(tmp_path / "o")]) == 2  # no key to de-identify
    assert "--key-file: a key file is needed" in capsys.readouterr().err
