"""Series roles in ``model.json`` (InputSpec.roles): validation, header rules, old files."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pydicom
import pytest
from pydantic import ValidationError

from medsight.models import ModelPackage
from medsight.models.roles import (
    RoleSpec,
    TagRange,
    default_role,
    ordered_roles,
    reference_role,
    role_evidence,
    roles_from_channel_names,
)
from medsight.models.spec import InputSpec, ModelSpec

ZOO = Path(str(files("medsight") / "zoo"))


def _input(**kw) -> InputSpec:
    return InputSpec(modalities=["MR"], spatial_ndim=3, **kw)


def test_every_zoo_package_without_roles_still_loads():
    folders = sorted(p for p in ZOO.iterdir() if (p / "model.json").is_file())
    old = [f for f in folders if "roles" not in json.loads((f / "model.json").read_text())["input"]]
    assert len(old) >= 5  # written before roles existed
    for folder in folders:
        assert ModelPackage.load(folder).spec.input.roles == []


def test_an_old_single_input_model_json_still_validates():
    raw = json.loads((ZOO / "hippocampus-dynunet" / "model.json").read_text())
    spec = ModelSpec.model_validate(raw)
    assert spec.input.roles == [] and spec.input.channels == 1
    assert ModelSpec.model_validate_json(spec.model_dump_json()) == spec


def test_roles_round_trip_and_order_by_channel():
    spec = _input(
        channels=3,
        roles=[
            RoleSpec(name="FLAIR", channel=2, inversion_time=TagRange(min=1400)),
            RoleSpec(name="T1", channel=0, reference=True),
            RoleSpec(name="T2", channel=1, required=False, fill=-1.0),
        ],
    )
    back = InputSpec.model_validate_json(spec.model_dump_json())
    assert back == spec
    assert [r.name for _c, r in ordered_roles(back.roles)] == ["T1", "T2", "FLAIR"]
    assert reference_role(back.roles).name == "T1"
    # without a marked reference, the first declared role gives the grid
    assert reference_role([RoleSpec(name="a"), RoleSpec(name="b")]).name == "a"


@pytest.mark.parametrize(
    ("roles", "channels", "message"),
    [
        ([RoleSpec(name="T1"), RoleSpec(name="T2")], 3, "3 input channel"),
        ([RoleSpec(name="T1"), RoleSpec(name="t1")], 2, "unique"),
        ([RoleSpec(name="T1", channel=0), RoleSpec(name="T2", channel=0)], 2, "exactly once"),
        ([RoleSpec(name="T1", channel=1), RoleSpec(name="T2")], 2, "every role a channel"),
        (
            [RoleSpec(name="T1", reference=True), RoleSpec(name="T2", reference=True)],
            2,
            "one role",
        ),
        ([RoleSpec(name="T1", required=False), RoleSpec(name="T2")], 2, "reference role"),
    ],
)
def test_roles_that_do_not_fill_the_channels_are_refused(roles, channels, message):
    with pytest.raises(ValidationError, match=message):
        _input(channels=channels, roles=roles)


def test_a_bad_pattern_or_name_is_refused():
    with pytest.raises(ValidationError, match="regular expression"):
        RoleSpec(name="T1", description_pattern="t1(")
    with pytest.raises(ValidationError):
        RoleSpec(name="T1 post")  # names are used on the command line: no spaces


def test_evidence_is_three_valued():
    flair = default_role("FLAIR", 0)
    ok, against = role_evidence(flair, {"SeriesDescription": "Ax FLAIR", "InversionTime": 2500})
    assert len(ok) == 2 and against == []
    ok, against = role_evidence(flair, {"SeriesDescription": "Ax FLAIR", "InversionTime": 900})
    assert any("InversionTime 900 outside" in a for a in against)
    # a de-identified header (no description, no timing) gives no evidence either way
    assert role_evidence(flair, {}) == ([], [])
    t1 = default_role("T1w", 1)
    assert role_evidence(t1, {"SeriesDescription": "T1 MPRAGE"})[1] == []
    assert role_evidence(t1, {"SeriesDescription": "T1 MPRAGE", "ContrastBolusAgent": "Gd"})[1]
    assert role_evidence(t1, {"SeriesDescription": "T1 post Gd"})[1]


def test_multi_valued_dicom_tags():
    ds = pydicom.Dataset()
    ds.ScanningSequence = ["SE", "IR"]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.EchoTime = "90"
    role = RoleSpec(
        name="x", scanning_sequence=["ir"], image_type=["ORIGINAL"], echo_time=TagRange(min=60)
    )
    ok, against = role_evidence(role, ds)
    assert len(ok) == 3 and against == []
    ds.ScanningSequence = "GR"
    ok, against = role_evidence(role, ds)
    assert against == ["ScanningSequence GR lacks IR"]


def test_roles_from_brats_channel_names():
    roles = roles_from_channel_names({0: "FLAIR", 1: "T1w", 2: "t1gd", 3: "T2w"})
    assert roles is not None and [r.channel for r in roles] == [0, 1, 2, 3]
    flair, t1, t1gd, t2 = roles
    assert flair.inversion_time is not None and t2.echo_time is not None
    post = {"SeriesDescription": "AX T1 POST GD"}
    assert role_evidence(t1gd, post)[0] and role_evidence(t1, post)[1]
    assert role_evidence(t1gd, {"SeriesDescription": "AX T1"})[1]
    ok, _ = role_evidence(t1gd, {**post, "ContrastBolusAgent": "Gadovist"})
    assert ok == ["SeriesDescription matches", "ContrastBolusAgent stated"]
    assert role_evidence(t2, {"SeriesDescription": "T2 FLAIR"})[1]  # FLAIR is not T2
    # modality names become the role's modality (PET beside CT)
    ct, pet = roles_from_channel_names({0: "CT", 1: "PET"}) or []
    assert (ct.modality, pet.modality) == ("CT", "PT")
    # one channel, or names that say nothing: no roles (one series with every channel)
    assert roles_from_channel_names({0: "MRI"}) is None
    assert roles_from_channel_names({0: "channel_0", 1: "channel_1"}) is None
    spec = _input(channels=4, roles=roles)
    assert [r.name for r in spec.roles] == ["FLAIR", "T1w", "t1gd", "T2w"]
