"""A probability near 0 or 1 is never shown as ``1.00`` / ``0.00`` (read as certainty): the
report, the worklist's flag reason, the CDS Hooks card and the study page all write it with
:func:`medsight.models.reliability.format_probability`."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsight.core.findings import Finding, FindingKind
from medsight.io.html import environment
from medsight.models.spec import ModelSpec
from medsight.service.routes.cds_hooks import _summary
from medsight.service.worklist import assess

ZOO = Path(__file__).resolve().parents[2] / "src" / "medsight" / "zoo"


def _malignant(probability: float, kind: FindingKind = FindingKind.CLASSIFICATION) -> Finding:
    spec = ModelSpec.model_validate_json((ZOO / "breastmnist-smallcnn" / "model.json").read_text())
    lab = next(lab for lab in spec.labels if lab.name == "malignant")
    assert lab.code is not None
    return Finding(
        lab.code,
        spec.name,
        spec.version,
        kind=kind,
        probability=probability,
        positive=True,
        note=lab.name,
        significance=lab.significance,
        urgency=lab.urgency,
    )


@pytest.mark.parametrize(("p", "shown"), [(0.996, ">0.99"), (0.004, "<0.01"), (0.914, "0.91")])
def test_extremes_are_bounds_everywhere(p, shown):
    f = _malignant(p)
    flag = assess([f]).flag_reason
    assert f"probability {shown}" in flag, flag
    assert f"probability {shown}" in _summary(f)
    cell = environment().from_string("{{ p|probability }}|{{ none|probability }}")
    assert cell.render(p=p, none=None) == f"{shown}|".replace(">", "&gt;").replace("<", "&lt;")
    for text in (flag, _summary(f)):
        assert "1.00" not in text and "0.00" not in text


def test_detection_score_in_the_impression_and_flag_is_bounded_too():
    from medsight.reporting.report import impression

    f = _malignant(0.999, FindingKind.DETECTION)
    assert "detected, score >0.99" in assess([f]).flag_reason
    text = impression([f])
    assert "score >0.99" in text and "1.00" not in text, text
