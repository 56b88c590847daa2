"""Burned-in text: flags, OCR scrubbing, and correct pixel data afterwards (also from RLE)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage

from medsight.privacy.batch import deidentify_folder
from medsight.privacy.keys import PseudonymKey
from medsight.privacy.leaks import verify
from medsight.privacy.pixels import burned_in_risk, find_text, scrub_burned_in_text
from medsight.privacy.profile import DeidConfig


def screenshot(seed: int = 0) -> Dataset:
    """A 16-bit secondary capture of a 'scan' (a bright disc) with a name burned in."""
    img = Image.new("L", (256, 256), 0)
    draw = ImageDraw.Draw(img)
    draw.ellipse((60, 80, 200, 220), fill=120)
    draw.text((8, 8), "QUIXOTE ZEBULON", fill=255, font=ImageFont.load_default(size=18))
    pixels = np.asarray(img).astype(np.uint16) * 16
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{seed + 17}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4.5", "1.2.3.4.5.6"
    ds.Modality, ds.ConversionType, ds.PatientName = "OT", "WSD", "Quixote^Zebulon"
    ds.set_pixel_data(pixels, "MONOCHROME2", 12, generate_instance_uid=False)
    return ds


def test_burned_in_risk_flags():
    ds = screenshot()
    reasons = burned_in_risk(ds)
    assert "secondary capture image" in reasons and any("WSD" in r for r in reasons)
    ds.BurnedInAnnotation = "YES"
    assert "Burned In Annotation is YES" in burned_in_risk(ds)


def _name_is_readable(pixels: np.ndarray) -> bool:
    words = " ".join(b.text.upper() for b in find_text(pixels))
    return "QUIXOTE" in words or "ZEBULON" in words


@pytest.mark.integration
def test_scrub_removes_the_text_and_keeps_the_rest(debian_tool):
    debian_tool("tesseract")
    ds = screenshot()
    before = ds.pixel_array.copy()
    assert _name_is_readable(before)  # OCR does see it
    boxes = scrub_burned_in_text(ds)
    assert any("name" in b.kinds and b.masked.startswith("Q****** Z******") for b in boxes)
    assert all("QUIXOTE" not in str(b).upper() for b in boxes)  # never the value in clear
    after = ds.pixel_array
    assert not _name_is_readable(after)
    top, left, bottom, right = 0, 0, 40, 200
    assert after[top:bottom, left:right].max() == 0  # blacked out
    np.testing.assert_array_equal(after[60:, :], before[60:, :])  # the 'scan' is untouched


@pytest.mark.integration
def test_scrub_rewrites_compressed_input_uncompressed(debian_tool, tmp_path):
    debian_tool("tesseract")
    ds = screenshot(seed=1)
    ds.compress(RLELossless, generate_instance_uid=False)
    src = tmp_path / "in"
    src.mkdir()
    ds.save_as(src / "shot.dcm", enforce_file_format=True)
    config = DeidConfig(scrub_pixels=True, layout="mirror")
    report = deidentify_folder(src, tmp_path / "out", PseudonymKey(bytes(32)), config, workers=1)
    assert report.failed == []
    outcome = report.written[0]
    assert any("name" in s and "Q******" in s for s in outcome.scrubbed)
    assert outcome.regions and outcome.regions[0]["matched"] == ["name"]
    out = dcmread(tmp_path / "out" / "shot.dcm")
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert len(out.PixelData) == 256 * 256 * 2
    assert (
        out.Rows == 256 and out.BitsStored == 12 and out.PhotometricInterpretation == "MONOCHROME2"
    )
    assert out.pixel_array[:40, :200].max() == 0 and out.pixel_array.max() == 120 * 16
    assert "113101" in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert not _name_is_readable(out.pixel_array)


@pytest.mark.integration
def test_scrub_leaves_images_without_text_alone(debian_tool, pydicom_file):
    debian_tool("tesseract")
    ds = dcmread(pydicom_file("MR_small.dcm"))
    before = ds.PixelData
    assert scrub_burned_in_text(ds) == []
    assert ds.PixelData == before


@pytest.mark.integration
def test_only_flagged_images_are_scrubbed_unless_all(debian_tool, tmp_path):
    debian_tool("tesseract")
    ds = screenshot(seed=2)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage: nothing flags it
    ds.Modality = "CT"
    del ds.ConversionType
    assert burned_in_risk(ds) == []
    src = tmp_path / "in"
    src.mkdir()
    ds.save_as(src / "ct.dcm", enforce_file_format=True)
    key = PseudonymKey(bytes(32))
    flagged = deidentify_folder(src, tmp_path / "a", key, DeidConfig(scrub_pixels=True))
    assert flagged.written[0].scrubbed == []
    everything = deidentify_folder(src, tmp_path / "b", key, DeidConfig(scrub_pixels="all"))
    assert any("Z******" in s for s in everything.written[0].scrubbed)


@pytest.mark.integration
def test_leak_checker_reads_burned_in_names_with_ocr(debian_tool, tmp_path):
    debian_tool("tesseract")
    src = tmp_path / "in"
    src.mkdir()
    screenshot(seed=3).save_as(src / "shot.dcm", enforce_file_format=True)
    key = PseudonymKey(bytes(32))
    deidentify_folder(src, tmp_path / "plain", key, DeidConfig(), workers=1)
    assert verify(src, tmp_path / "plain").ok  # the header is clean...
    hits = verify(src, tmp_path / "plain", ocr=True).hits  # ...the pixels are not
    assert all(h.location.startswith("pixels (OCR, frame 0") for h in hits)
    assert {"Q******", "Z******"} <= {h.value for h in hits}  # masked, never in clear
    assert not any("uixote" in str(h).lower() for h in hits)
    deidentify_folder(src, tmp_path / "scrubbed", key, DeidConfig(scrub_pixels=True))
    assert verify(src, tmp_path / "scrubbed", ocr=True).ok
