"""A finding's name is printed once in the report (coded meaning; the note only if it adds)."""

from __future__ import annotations

import re

from medsight.core.codes import MILLILITER, VOLUME, Code
from medsight.core.findings import Finding, FindingKind, Measurement
from medsight.reporting.report import Report, impression, write_report

GRADE = Code("grade-0", "99MEDSIGHT", "DR grade 0 (no diabetic retinopathy)")
LESION = Code("lesion", "99MEDSIGHT", "Breast lesion")


def _section(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">(.*?)</(table|p)>', html, re.S)
    assert match, element_id
    return match.group(1)


def test_a_finding_name_appears_once(tmp_path):
    findings = [
        Finding(  # the runners' usual case: note = label name = coded meaning
            GRADE,
            "retina",
            "1",
            kind=FindingKind.CLASSIFICATION,
            probability=0.9,
            positive=True,
            note=GRADE.meaning,
        ),
        Finding(
            LESION,
            "busi",
            "1",
            measurements=(Measurement(VOLUME, 1.5, MILLILITER),),
            note="breast lesion",  # same words, other case
        ),
        Finding(LESION, "busi", "1", note="second focus"),  # a note that adds: kept
    ]
    report = Report(input="x", findings=findings, impression=impression(findings))
    _, html_path = write_report(report, tmp_path)
    html = html_path.read_text("utf-8")
    table = _section(html, "findings")
    assert table.count(GRADE.meaning) == 1
    assert table.lower().count("breast lesion") == 2  # two lesion rows, each named once
    assert "Breast lesion (second focus)" in table
    said = _section(html, "impression")
    assert said.count(GRADE.meaning) == 1 and said.lower().count("breast lesion") == 2


def test_impression_never_prints_certainty_and_names_abstentions():
    from medsight.core.codes import NEOPLASM
    from medsight.core.findings import Finding, FindingKind
    from medsight.reporting.report import impression

    f = Finding(NEOPLASM, "m", "1", kind=FindingKind.CLASSIFICATION, probability=0.99996,
                positive=True, weak_model=True)  # fmt: skip
    text = impression([f], withheld=[("us-model@1", "the image holds colour; more")])
    assert "1.00" not in text and ">0.99" in text and "weak model" in text
    assert "Withheld, no answer given: us-model@1 (the image holds colour)" in text
    assert impression([], withheld=[("x@1", "too large")]).startswith("No AI findings")
