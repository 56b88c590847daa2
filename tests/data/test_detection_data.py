"""Detection data: mini-MIAS circles, COCO / VOC / box-list boxes, patient-level splits."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image as P

from medsight.core import Box, Case, EmptyInputError, InvalidInputError, UnreadableFileError
from medsight.core.findings import Region
from medsight.data import SplitConfig, load_dataset
from medsight.data.detection import Annotation, annotations_of, detection_splits


@pytest.fixture(scope="module")
def mias(shared_data):
    return load_dataset(
        f"mias:{shared_data / 'mammography_mias'}?classes=CIRC,SPIC,MISC&merge=mass"
    )


def test_mias_masses_are_circles_and_normals_are_negatives(mias):
    assert mias.task.value == "detection" and dict(mias.label_names) == {0: "mass"}
    positives = [c for c in mias if c.label]
    negatives = [c for c in mias if not c.label]
    # 48 located CIRC / SPIC / MISC masses on 45 mammograms; NORM images kept as negatives
    assert (len(positives), sum(len(c.label) for c in positives)) == (45, 48)
    assert len(negatives) > 100 and all(c.label == () for c in negatives)
    first = mias.case("mdb001").label[0]
    assert first.region == Region((267.5, 299.5), (197.0, 197.0), "ellipse")
    assert first.label == "mass" and first.attributes["class"] == "CIRC"
    image = mias.case("mdb001").image()
    assert image.shape == (512, 512) and image.modality == "MG"
    assert image.spacing.tolist() == [0.4, 0.4]  # as the data's PROVENANCE states
    # images holding only calcifications, distortions or asymmetries are left out, and said so
    assert any(i.kind == "excluded" for i in mias.layout_issues)
    assert "mdb211" not in {c.case_id for c in mias}  # a calcification only


def test_mias_circles_land_on_the_masses(mias):
    """Top-left origin: masses are brighter than the ring around them, not when y is flipped."""

    def contrast(arr, centre, r):
        ii, jj = np.mgrid[0 : arr.shape[0], 0 : arr.shape[1]]
        d = np.hypot(ii - centre[0], jj - centre[1])
        return arr[d <= r].mean() - arr[(d > r) & (d <= 2 * r)].mean()

    right = flipped = n = 0
    for case in (c for c in mias if c.label):
        arr = np.asarray(case.image().array, float)  # axes (i = column, j = row)
        for a in case.label:
            r = a.region.size[0] / 2
            right += contrast(arr, a.region.center, r) > 0
            flipped += contrast(arr, (a.region.center[0], 511 - a.region.center[1]), r) > 0
            n += 1
    assert right >= 0.9 * n
    assert flipped < 0.8 * n


def test_mias_classes_options(shared_data):
    root = shared_data / "mammography_mias"
    each = load_dataset(f"mias:{root}?classes=SPIC,CIRC")
    assert list(each.label_names.values()) == ["spiculated mass", "circumscribed mass"]
    kept = load_dataset(f"mias:{root}?classes=SPIC&others=negative")
    assert kept.case("mdb001").label == ()  # a circumscribed mass: a negative for SPIC
    with pytest.raises(InvalidInputError, match="not among"):
        load_dataset(f"mias:{root}?classes=TUMOUR")
    with pytest.raises(InvalidInputError, match="unknown options"):
        load_dataset(f"mias:{root}?colour=red")


def test_patient_level_split_keeps_both_breasts_together(mias):
    splits = detection_splits(mias, SplitConfig(val_fraction=0.2, test_fraction=0.3, seed=3))
    parts = splits.assignment()
    by_woman = defaultdict(set)
    for case in mias:
        by_woman[case.patient_id].add(parts[case.case_id])
    assert sum(len({c.case_id for c in mias if c.patient_id == w}) == 2 for w in by_woman) > 80
    assert all(len(p) == 1 for p in by_woman.values())
    assert splits.leaks(mias) == {}
    for part in ("train", "val", "test"):  # stratified: every part has masses
        assert any(mias.case(cid).label for cid, p in parts.items() if p.value == part)


def _png(path, size=(20, 10)):
    P.new("L", size).save(path)


def test_coco_boxes_to_index_space_regions(tmp_path):
    for name in ("a.png", "b.png"):
        _png(tmp_path / name)
    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "patient_id": "w1"},
            {"id": 2, "file_name": "b.png"},
        ],
        "categories": [{"id": 7, "name": "mass"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 4]}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    ds = load_dataset(f"coco:{tmp_path / 'ann.json'}")
    a, b = ds.case("a"), ds.case("b")
    # pixels 2..11 and 3..6: centre (6.5, 4.5), size (10, 4)
    assert annotations_of(a) == (Annotation(Region((6.5, 4.5), (10.0, 4.0)), "mass"),)
    assert a.patient_id == "w1" and b.label == () and b.patient_id == "b"
    assert a.image().shape == (20, 10)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UnreadableFileError, match="not a COCO"):
        load_dataset(f"coco:{tmp_path / 'bad.json'}")


def test_voc_one_based_corners(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    _png(tmp_path / "JPEGImages" / "x.png")
    (tmp_path / "Annotations" / "x.xml").write_text(
        "<annotation><filename>x.png</filename><object><name>nodule</name><difficult>1"
        "</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>5</ymax>"
        "</bndbox></object></annotation>"
    )
    ds = load_dataset(f"voc:{tmp_path}")
    (ann,) = annotations_of(ds.case("x"))
    assert ann.region.box == ((-0.5, 0.5), (9.5, 4.5))  # pixels 0..9 and 1..4
    assert ann.label == "nodule" and ann.attributes["difficult"] == "1"
    (tmp_path / "Annotations" / "x.xml").write_text("<annotation><object/></annotation>")
    with pytest.raises(UnreadableFileError):
        load_dataset(f"voc:{tmp_path}")


def test_box_list_per_dicom_instance_and_per_file(tmp_path, pydicom_file):
    import pydicom

    src = pydicom_file("CT_small.dcm")
    shutil.copy(src, tmp_path / "ct.dcm")
    uid = str(pydicom.dcmread(src).SOPInstanceUID)
    _png(tmp_path / "n.png")
    (tmp_path / "boxes.csv").write_text(
        f"sop_instance_uid,x0,y0,x1,y1,label\n{uid},10,20,30,24,mass\n{uid},0,0,4,4,mass\n"
    )
    ds = load_dataset(f"boxes:{tmp_path / 'boxes.csv'}")
    (case,) = list(ds)
    assert [a.region.center for a in annotations_of(case)] == [(19.5, 21.5), (1.5, 1.5)]
    assert case.patient_id == str(pydicom.dcmread(src).PatientID)
    assert case.image().source is not None  # the DICOM references travel with the image
    (tmp_path / "files.json").write_text(
        json.dumps({"instances": [{"file": "n.png", "patient": "p9", "boxes": []}]})
    )
    neg = load_dataset(f"boxes:{tmp_path / 'files.json'}")
    assert neg[0].label == () and neg[0].patient_id == "p9"
    (tmp_path / "none.csv").write_text("file,x0,y0,x1,y1\nmissing.png,0,0,1,1\n")
    with pytest.raises(EmptyInputError):
        load_dataset(f"boxes:{tmp_path / 'none.csv'}")


def test_annotations_of_refuses_other_labels_and_converts_boxes():
    with pytest.raises(InvalidInputError, match="no detection label"):
        annotations_of(Case("c", label=1))
    with pytest.raises(InvalidInputError, match="unlabelled"):
        annotations_of(Case("c"))
    (a,) = annotations_of(Case("d", label=(Box(0, 0, 10, 4, "lung"),)))
    assert a.region == Region((4.5, 1.5), (10.0, 4.0)) and a.label == "lung"
