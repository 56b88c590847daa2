"""NIfTI headers and PNG/JPEG metadata: identifying text gone, pixels bit for bit."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from medsight.privacy.batch import deidentify_folder
from medsight.privacy.errors import DeidError
from medsight.privacy.leaks import verify
from medsight.privacy.other_formats import clean_jpeg, clean_nifti, clean_png
from medsight.privacy.profile import DeidConfig

NAME = b"Zebulon Quixote"


def nifti_bytes(gz: bool) -> bytes:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = nib.Nifti1Image(data, np.diag([0.9, 0.9, 3.0, 1.0]))
    img.header["descrip"] = NAME
    img.header["aux_file"] = b"quixote.lut"
    img.header["intent_name"] = b"Zebulon"
    img.header["db_name"] = b"Quixote DB"
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"ward St. Elsewhere " + NAME))
    buf = io.BytesIO()
    img.to_file_map({"image": nib.FileHolder(fileobj=buf), "header": nib.FileHolder(fileobj=buf)})
    raw = buf.getvalue()
    return gzip.compress(raw) if gz else raw


@pytest.mark.parametrize("gz", [False, True])
def test_nifti_header_cleaned_and_voxels_identical(gz):
    raw = nifti_bytes(gz)
    name = "scan.nii.gz" if gz else "scan.nii"
    cleaned = clean_nifti(raw, name=name)
    plain = gzip.decompress(cleaned) if gz else cleaned
    assert b"Zebulon" not in plain and b"Quixote" not in plain and b"Elsewhere" not in plain
    before, after = (
        nib.Nifti1Image.from_bytes(gzip.decompress(raw) if gz else raw),
        nib.Nifti1Image.from_bytes(plain),
    )
    np.testing.assert_array_equal(np.asanyarray(after.dataobj), np.asanyarray(before.dataobj))
    np.testing.assert_array_equal(after.affine, before.affine)
    assert after.header.extensions == [] and after.header["descrip"] == b""
    assert clean_nifti(raw, name=name) == cleaned  # deterministic (no gzip time stamp)


def test_png_text_chunks_dropped_pixels_identical():
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Zebulon Quixote")
    info.add_itxt("Comment", "DOB 1950-02-03", zip=True)
    pixels = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", pnginfo=info)
    cleaned = clean_png(buf.getvalue())
    assert b"Zebulon" not in cleaned and b"Comment" not in cleaned
    out = Image.open(io.BytesIO(cleaned))
    assert out.info.get("Author") is None
    np.testing.assert_array_equal(np.asarray(out), pixels)


def test_jpeg_exif_and_comment_dropped_scan_identical():
    pixels = np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x013B] = "Zebulon Quixote"  # Artist
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", exif=exif.tobytes(), comment=b"patient Quixote")
    cleaned = clean_jpeg(buf.getvalue())
    assert b"Quixote" not in cleaned and b"Zebulon" not in cleaned
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(cleaned))), np.asarray(Image.open(buf))
    )
    with pytest.raises(DeidError, match=r"photo\.jpg: not a JPEG"):
        clean_jpeg(b"GIF89a", name="photo.jpg")


def test_folder_with_non_dicom_files_verifies_clean(key, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "scan.nii.gz").write_bytes(nifti_bytes(True))
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Zebulon Quixote")
    Image.new("L", (8, 8)).save(src / "Quixote_photo.png", "PNG", pnginfo=info)
    assert not verify(src, src).ok  # the checker sees the metadata
    out = tmp_path / "out"
    report = deidentify_folder(src, out, key, DeidConfig(), workers=1)
    assert report.failed == [] and len(report.written) == 2
    assert all(str(o.output).startswith("files/") for o in report.written)  # names not kept
    leaks = verify(src, out)
    assert leaks.ok, [str(h) for h in leaks.hits]
    mirrored = deidentify_folder(src, tmp_path / "m", key, DeidConfig(layout="mirror"))
    assert len(mirrored.written) == 2
