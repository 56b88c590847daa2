"""Burned-in text on drawn images and pydicom's ultrasound: found, scrubbed, verified.

Every image here is drawn (``medsight.privacy.drawn``) or bundled with pydicom; the checks are
on the pixels: every inked pixel of an identifying string is covered by a scrub box, and OCR
with the verification's renderings reads none of the header's values afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread

from medsight.privacy.drawn import draw_case
from medsight.privacy.identifiers import IdentifyingValue, header_values, mask, match_text
from medsight.privacy.pixels import read_burned_in, scrub_burned_in_text
from medsight.privacy.text_regions import find_text_lines

FAILING = {"name", "id", "institution", "date", "date pattern"}


def _covered(case, regions) -> list[str]:
    """Kinds of the drawn strings with ink outside every scrub box."""
    shape = case.strings[0].ink.shape
    cover = np.zeros(shape, bool)
    for r in regions:
        cover[r.top : r.top + r.height, r.left : r.left + r.width] = True
    return [s.kind for s in case.strings if (s.ink & ~cover).any()]


def test_header_values_and_matching():
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PatientName, ds.PatientID = "QUIXOTE^Amara", "PX-448812"
    ds.StudyDate, ds.InstitutionName = "20240131", "Northfield Clinic"
    values = header_values(ds)
    for text, kind in [
        ("Amara Quixote", "name"),
        ("QUIXOTE^AMARA", "name"),
        ("ID: PX448812", "id"),
        ("NORTHF1ELD CLINIC", "institution"),  # one OCR confusion
        ("31.01.2024", "date"),
        ("Jan 31 2024", "date"),
        ("31-Jan-2024", "date"),
        ("01/31/2024", "date"),
    ]:
        assert kind in {m.kind for m in match_text(text, values)}, text
    assert [m.kind for m in match_text("exam 2019-07-04", values)] == ["date pattern"]
    assert match_text("L  R  5 cm  MI 1.1", values) == []  # scale markers match nothing
    assert mask("Amara Quixote") == "A**** Q******"
    assert IdentifyingValue("id", "PX-448812").folded == "PX448812"


def test_text_lines_found_without_ocr_and_not_in_speckle():
    rng = np.random.default_rng(3)
    text_free = draw_case(rng, with_text=False)
    assert find_text_lines(text_free.dataset.pixel_array) == []
    drawn = draw_case(np.random.default_rng(4), text_size=18)
    lines = find_text_lines(drawn.dataset.pixel_array)
    assert len(lines) >= len(drawn.strings) - 1


@pytest.mark.integration
@pytest.mark.parametrize(("seed", "size"), [(11, 12), (12, 22), (13, 36)])
def test_drawn_identifiers_are_unreadable_after_scrubbing(debian_tool, seed, size):
    """Drawn images (12, 22 and 36 px text): verification reads identifiers before the scrub
    (it can fail) and none after; every string but at most one is covered pixel for pixel
    (text drawn over speckle is the known weak spot, measured by the benchmark)."""
    debian_tool("tesseract")
    case = draw_case(np.random.default_rng(seed), text_size=size, seed=seed)
    ds = case.dataset
    values = header_values(ds)
    before = {leak.kind for leak in read_burned_in(ds, values)}
    assert before & FAILING  # the verification can fail: it reads them unscrubbed
    regions = scrub_burned_in_text(ds)
    assert [x for x in read_burned_in(ds, values) if x.kind in FAILING] == []
    assert all(r.masked == "" or "*" in r.masked for r in regions)
    assert len(_covered(case, regions)) <= 1


def _marker_image(seed: int):
    """A text-free drawn frame with the patient's family name top left and a scale marker
    ("GAIN 60", not identifying) top right, both on the black border."""
    from PIL import Image, ImageDraw, ImageFont

    ds = draw_case(np.random.default_rng(seed), with_text=False, seed=seed).dataset
    img = Image.fromarray(ds.pixel_array)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(18)
    draw.text((4, 4), str(ds.PatientName).split("^")[0], fill=(255, 255, 255), font=font)
    draw.text((236, 4), "GAIN 60", fill=(255, 255, 0), font=font)
    ds.set_pixel_data(np.asarray(img), "RGB", 8, generate_instance_uid=False)
    return ds


@pytest.mark.integration
def test_keep_readable_text_keeps_scale_markers_only(debian_tool):
    debian_tool("tesseract")
    kept = _marker_image(21)
    regions = scrub_burned_in_text(kept, keep_readable=True)
    assert [r.kinds for r in regions] == [("name",)]
    assert kept.pixel_array[4:24, 4:100].max() == 0  # the name goes
    assert kept.pixel_array[4:24, 236:316].max() > 200  # the marker stays
    default = _marker_image(21)
    scrub_burned_in_text(default)
    assert default.pixel_array[4:24, 236:316].max() == 0  # by default all text goes


@pytest.mark.integration
def test_pydicom_ultrasound_institution_is_scrubbed(debian_tool, pydicom_file):
    debian_tool("tesseract")
    ds = dcmread(pydicom_file("examples_jpeg2k.dcm"))  # "BAPTIST MED CTR" burned in
    values = header_values(ds)
    assert "institution" in {x.kind for x in read_burned_in(ds, values)}
    regions = scrub_burned_in_text(ds)
    assert any("institution" in r.kinds for r in regions)
    assert [x for x in read_burned_in(ds, values) if x.kind in FAILING] == []
    pixels = ds.pixel_array
    assert pixels[20:40, 18:170].max() == 0  # the whole line, margin included
    assert pixels[150:300, 100:300].mean() > 20  # the anatomy stays


@pytest.mark.integration
def test_palette_ultrasound_keeps_its_palette_and_loses_its_dates(debian_tool, pydicom_file):
    debian_tool("tesseract")
    ds = dcmread(pydicom_file("examples_palette.dcm"))  # study date as 5/25/2011, institution
    values = header_values(ds)
    assert {"date", "institution"} <= {x.kind for x in read_burned_in(ds, values)}
    before = ds.pixel_array.copy()
    regions = scrub_burned_in_text(ds)
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    assert [x for x in read_burned_in(ds, values) if x.kind in FAILING] == []
    changed = ds.pixel_array != before
    boxes = np.zeros_like(changed)
    for r in regions:
        boxes[r.top : r.top + r.height, r.left : r.left + r.width] = True
    assert not (changed & ~boxes).any()  # nothing outside the boxes changed


@pytest.mark.integration
def test_cine_loop_static_text_is_scrubbed_in_every_frame(debian_tool):
    """Four frames, moving speckle, the same burned-in lines: boxes apply to all frames."""
    debian_tool("tesseract")
    case = draw_case(np.random.default_rng(31), text_size=16, seed=31)
    first = case.dataset.pixel_array
    text = np.zeros(first.shape[:2], bool)
    for s in case.strings:
        text |= s.ink
    frames = []
    for i in range(4):
        moving = draw_case(np.random.default_rng(100 + i), with_text=False).dataset.pixel_array
        frames.append(np.where(text[..., None], first, moving))
    ds = case.dataset
    ds.NumberOfFrames = 4
    ds.set_pixel_data(np.stack(frames), "RGB", 8, generate_instance_uid=False)
    regions = scrub_burned_in_text(ds)
    assert regions and all(r.frame is None for r in regions)
    out = ds.pixel_array
    assert out.shape == (4, *first.shape)
    cover = np.zeros(first.shape[:2], bool)
    for r in regions:
        cover[r.top : r.top + r.height, r.left : r.left + r.width] = True
    for frame in out:
        assert frame[cover].max() == 0
    assert sum(not (s.ink & ~cover).any() for s in case.strings) >= len(case.strings) - 1


@pytest.mark.integration
def test_monochrome1_radiograph_name_in_the_margin(debian_tool):
    """A CR (MONOCHROME1: low values are bright) with the patient's name in a corner: found
    as displayed, blacked out as displayed (the maximum stored value), the anatomy kept."""
    from PIL import Image, ImageDraw, ImageFont

    debian_tool("tesseract")
    shown = Image.new("L", (320, 320), 10)
    draw = ImageDraw.Draw(shown)
    draw.ellipse((70, 60, 250, 300), fill=150)  # the 'anatomy'
    draw.text((6, 6), "OKONKWO, Margot", fill=235, font=ImageFont.load_default(16))
    ds = draw_case(np.random.default_rng(41), with_text=False, seed=41).dataset
    ds.Modality, ds.PatientName = "CR", "OKONKWO^Margot"
    stored = (4095 - np.asarray(shown).astype(np.uint16) * 16).astype(np.uint16)
    ds.set_pixel_data(stored, "MONOCHROME1", 12, generate_instance_uid=False)
    from medsight.privacy.pixels import burned_in_risk

    assert burned_in_risk(ds) == ["modality CR without Burned In Annotation NO"]
    regions = scrub_burned_in_text(ds)
    assert any("name" in r.kinds for r in regions)
    out = ds.pixel_array
    assert out[6:22, 6:140].min() == stored.max()  # the darkest value as displayed
    np.testing.assert_array_equal(out[120:240, 120:200], stored[120:240, 120:200])
    assert [x for x in read_burned_in(ds, header_values(ds)) if x.kind in FAILING] == []
