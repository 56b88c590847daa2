"""The BI-RADS-style breast ultrasound subset: each pattern, each descriptor, and category 0.

References: ACR BI-RADS Atlas 5th ed. ultrasound lexicon (descriptor values; features favouring
benign / malignant as tabulated in PMC6225344 table 2); probably benign (3) criteria from Berg,
J Breast Imaging 2021 (PMC8445238).  Category 5 is medsight's documented convention.
"""

from __future__ import annotations

import pytest

from medsight.clinical.guidelines import FactsError, evaluate, load_ruleset

RS = load_ruleset("birads-us")

FIBROADENOMA_LIKE = {
    "shape": "oval",
    "orientation": "parallel",
    "margin": "circumscribed",
    "echo_pattern": "hypoechoic",
    "posterior_features": "none",
}
SIMPLE_CYST = {
    "shape": "oval",
    "orientation": "parallel",
    "margin": "circumscribed",
    "echo_pattern": "anechoic",
    "posterior_features": "enhancement",
}
CANCER_LIKE = {
    "shape": "irregular",
    "orientation": "not-parallel",
    "margin": "spiculated",
    "echo_pattern": "hypoechoic",
    "posterior_features": "shadowing",
}


def _cat(**lesion: object) -> str:
    return evaluate(RS, {"lesions": [lesion]}).category


def test_the_three_patterns() -> None:
    assert _cat(**SIMPLE_CYST) == "2"
    assert _cat(**{**SIMPLE_CYST, "shape": "round"}) == "2"
    assert _cat(**FIBROADENOMA_LIKE) == "3"
    assert _cat(**{**FIBROADENOMA_LIKE, "echo_pattern": "isoechoic"}) == "3"
    assert _cat(**{**FIBROADENOMA_LIKE, "posterior_features": "enhancement"}) == "3"
    assert _cat(**CANCER_LIKE) == "5"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("shape", "round"),
        ("shape", "irregular"),
        ("orientation", "not-parallel"),
        ("margin", "indistinct"),
        ("margin", "angular"),
        ("margin", "microlobulated"),
        ("margin", "spiculated"),
        ("echo_pattern", "heterogeneous"),
        ("echo_pattern", "hyperechoic"),
        ("echo_pattern", "complex-cystic-solid"),
        ("posterior_features", "shadowing"),
        ("posterior_features", "combined"),
    ],
)
def test_any_one_non_benign_descriptor_makes_a_probably_benign_mass_suspicious(
    field: str, value: str
) -> None:
    assert _cat(**{**FIBROADENOMA_LIKE, field: value}) == "4"


@pytest.mark.parametrize(
    ("field", "value"),
    [("shape", "oval"), ("orientation", "parallel"), ("margin", "angular")],
)
def test_category_5_needs_all_three_features(field: str, value: str) -> None:
    assert _cat(**{**CANCER_LIKE, field: value}) == "4"


def test_a_cyst_without_posterior_enhancement_or_not_circumscribed_is_not_2() -> None:
    assert _cat(**{**SIMPLE_CYST, "posterior_features": "none"}) == "4"
    assert _cat(**{**SIMPLE_CYST, "margin": "indistinct"}) == "4"


@pytest.mark.parametrize("missing", sorted(FIBROADENOMA_LIKE))
def test_a_missing_descriptor_is_category_0_never_a_guess(missing: str) -> None:
    for base in (FIBROADENOMA_LIKE, CANCER_LIKE, SIMPLE_CYST):
        lesion = {k: v for k, v in base.items() if k != missing}
        r = evaluate(RS, {"lesions": [lesion]})
        assert (r.category, r.rules) == ("0", ["BUS-0-INCOMPLETE"])
        assert r.label.startswith("Incomplete")


def test_no_lesion_is_negative() -> None:
    assert evaluate(RS, {"lesions": []}).category == "1"


def test_overall_order_puts_0_between_3_and_4() -> None:
    incomplete = {"shape": "oval"}
    assert evaluate(RS, {"lesions": [FIBROADENOMA_LIKE, incomplete]}).category == "0"
    assert (
        evaluate(RS, {"lesions": [incomplete, {**CANCER_LIKE, "margin": "indistinct"}]}).category
        == "4"
    )
    r = evaluate(RS, {"lesions": [SIMPLE_CYST, CANCER_LIKE, incomplete]})
    assert r.category == "5" and [i.category for i in r.items] == ["2", "5", "0"]


def test_unknown_descriptor_names_the_field() -> None:
    with pytest.raises(FactsError) as err:
        evaluate(RS, {"lesions": [{**FIBROADENOMA_LIKE, "margin": "smooth"}]})
    assert err.value.where == "lesions[0].margin"
