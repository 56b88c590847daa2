"""What an occlusion answer says beside the moved probability: the fixed caveat, the OOD score
of the edited image against the package's threshold, and whether the decision flips at the
operating threshold (issue 22)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medsight.service.whatif.occlusion import CAVEAT

from .test_whatif import _occlude, world  # noqa: F401 (world is a fixture)


def test_occlusion_answer_has_caveat_and_decision_flip(world):  # noqa: F811
    res = _occlude(world, mode="occlude", fill="zero").json()
    assert res["caveat"] == CAVEAT and "unlike the images the model was trained on" in CAVEAT
    (decision,) = res["decisions"]
    assert decision["label"] == res["original"]["findings"][0]["label"]
    assert decision["before"] is True and decision["after"] is False and decision["flipped"]
    assert res["ood"] is None  # this package has no OOD reference: nothing to compare
    elsewhere = _occlude(world, region={"box": [40, 40, 64, 64]}, fill="mean").json()
    assert [d["flipped"] for d in elsewhere["decisions"]] == [False]


def test_occlusion_answer_gives_the_ood_score_against_the_threshold(world, monkeypatch):  # noqa: F811
    """The scores are the model output's own (``ModelOutput.ood_score``), here set by a stub
    gate so the numbers are known: the occluded image scores above the threshold."""
    import medsight.analysis.runners as runners

    real = runners.run_package

    def scored(package, image, **kw):
        out = real(package, image, **kw)
        occluded = float(np.asarray(image.array)[8:28, 8:28].max()) == 0
        return dataclasses.replace(out, ood_score=9.5 if occluded else 2.0, ood_threshold=7.0)

    monkeypatch.setattr(runners, "run_package", scored)
    res = _occlude(world, fill="zero").json()
    assert res["ood"] == {
        "original": pytest.approx(2.0),
        "changed": pytest.approx(9.5),
        "threshold": pytest.approx(7.0),
        "changed_over_threshold": True,
    }
    kept = _occlude(world, region={"box": [40, 40, 64, 64]}, fill="mean").json()
    assert kept["ood"]["changed_over_threshold"] is False
