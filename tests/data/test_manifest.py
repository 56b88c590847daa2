"""CSV manifest + COCO adapter on the real COVID chest X-ray set."""

from __future__ import annotations

import pytest

from medsight.core import Box, InvalidInputError
from medsight.data import Task, load_dataset


@pytest.fixture(scope="module")
def covid(shared_data):
    return load_dataset(f"csv:{shared_data / 'covid_cxr' / 'metadata.csv'}")


def test_rows_patients_labels_and_boxes(covid):
    # PROVENANCE: 605 rows reference a present X-ray image; 360 patients
    assert len(covid) == 605 and covid.task is Task.MULTICLASS
    assert len({c.patient_id for c in covid}) == 360
    first = covid.case(
        "images/auntminnie-a-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpg"
    )
    assert first.patient_id == "2" and covid.label_names[first.label] == "COVID-19"
    assert first.attributes["sex"] == "M" and first.attributes["age"] == "65"
    boxes = first.attributes["boxes"]
    assert {b.label for b in boxes} == {"Right Lung", "Left Lung"}
    # COCO [24.22, 41.51, 141.26, 290.59] -> (x, y, x + w, y + h)
    assert boxes[0] == Box(24.22, 41.51, 24.22 + 141.26, 41.51 + 290.59, "Right Lung")
    assert first.image().shape == (509, 512)  # COCO width 509, height 512


def test_layout_issues_name_the_files(covid):
    issues = {i.kind: i for i in covid.layout_issues}
    assert {f.rsplit("/", 1)[-1] for f in issues["orphan_file"].files} == {
        "4-x-day1.jpg",
        "4-x-day4.jpg",
        "4-x-day8.jpg",
        "4-x-day13.jpg",
    }
    assert "270_2020_2470_Fig1_HTML-a.jpg: annotation 850 has no category_id" in (
        issues["bad_annotation"].message
    )
    # 84 'todo' findings and one 'Unknown'
    assert len(issues["missing_label"].files) == 85
    assert sum(c.label is None for c in covid) == 85


def test_options_and_errors(shared_data, tmp_path):
    csv = shared_data / "covid_cxr" / "metadata.csv"
    ds = load_dataset(f"csv:{csv}?label=view&path=image_file")
    assert "PA" in ds.label_names.values()
    with pytest.raises(InvalidInputError, match="nope"):
        load_dataset(f"csv:{csv}?label=nope")
    boxes_only = tmp_path / "m.csv"
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.jpg").write_bytes(
        (
            shared_data
            / "covid_cxr"
            / "images"
            / ("auntminnie-a-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpg")
        ).read_bytes()
    )
    boxes_only.write_text("file,patient\nx.jpg,p1\n")
    (tmp_path / "annotations.json").write_text(
        '{"images":[{"id":1,"file_name":"x.jpg"}],"categories":[{"id":1,"name":"lung"}],'
        '"annotations":[{"image_id":1,"category_id":1,"bbox":[1,1,5,5]}]}'
    )
    ds = load_dataset(f"csv:{boxes_only}")
    assert ds.task is Task.DETECTION and ds[0].label[0].label == "lung"
    assert ds[0].patient_id == "p1"


def test_tab_separated_manifest(shared_data, tmp_path):
    (tmp_path / "images").mkdir()
    src = shared_data / "covid_cxr" / "images" / "AR-1.jpg"
    (tmp_path / "images" / "a.jpg").write_bytes(src.read_bytes())
    (tmp_path / "m.tsv").write_text("path\tlabel\tsex\na.jpg\tcovid\tF\n")
    ds = load_dataset(str(tmp_path / "m.tsv"))
    assert ds[0].case_id == "images/a.jpg" and ds[0].attributes["sex"] == "F"
