"""The profile: the generated PS3.15 table, option precedence, combined actions, CID 7050 codes."""

from __future__ import annotations

import pytest
from pydicom.sr.codedict import codes
from pydicom.tag import Tag

from medsight.core.errors import InvalidInputError
from medsight.privacy.profile import (
    ALL_METHOD_CODES,
    Action,
    DeidConfig,
    Option,
    SafePrivateTag,
    method_codes,
    resolve_action,
    table_action,
)
from medsight.privacy.ps315_table import EDITION, TABLE


def test_table_is_the_full_standard_table():
    assert EDITION == "2024c+2026c"
    assert len(TABLE) > 650
    codes_used = {a for entry in TABLE.values() for k, a in entry.items() if k != "edition"}
    assert codes_used == {"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
    assert all("basic" in entry for entry in TABLE.values())
    newer = [k for k, entry in TABLE.items() if entry.get("edition") == "2026c"]
    assert "00100041" in newer and len(newer) == 33  # Gender Identity Sequence, new in 2026c


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [  # spot checks against PS3.15 Table E.1-1 as printed in the standard
        ("PatientName", "Z"),
        ("AccessionNumber", "Z"),
        ("StudyInstanceUID", "U"),
        ("ReferencedSOPInstanceUID", "U"),
        ("InstitutionName", "X/Z/D"),
        ("ReferringPhysicianName", "Z"),
        ("PatientAddress", "X"),
        ("ReferencedImageSequence", "X/Z/U*"),
        ("StudyDate", "Z"),
    ],
)
def test_basic_profile_actions(keyword, expected):
    assert table_action(Tag(keyword), DeidConfig()) == expected


def test_options_override_the_basic_profile():
    assert resolve_action(Tag("PatientSex"), DeidConfig()) == Action.EMPTY
    chars = DeidConfig(options=[Option.RETAIN_PATIENT_CHARACTERISTICS])
    assert resolve_action(Tag("PatientSex"), chars) == Action.KEEP
    assert resolve_action(Tag("PatientWeight"), chars) == Action.KEEP
    dates = DeidConfig(options=["retain-modified-dates"])
    assert resolve_action(Tag("AcquisitionDate"), dates) == Action.CLEAN
    device = DeidConfig(options=["retain-device-identity"])
    assert resolve_action(Tag("DeviceSerialNumber"), DeidConfig()) != Action.KEEP
    assert resolve_action(Tag("DeviceSerialNumber"), device) == Action.KEEP
    desc = DeidConfig(options=["clean-descriptors"])
    assert resolve_action(Tag("StudyDescription"), DeidConfig()) == Action.REMOVE
    assert resolve_action(Tag("StudyDescription"), desc) == Action.CLEAN


def test_combined_actions_pick_a_conformant_member():
    config = DeidConfig()
    assert resolve_action(Tag("AcquisitionDate"), config) == Action.EMPTY  # X/Z
    assert resolve_action(Tag("SeriesDate"), config) == Action.DUMMY  # X/D
    assert resolve_action(Tag("InstitutionName"), config) == Action.DUMMY  # X/Z/D
    assert resolve_action(Tag("ReferencedImageSequence"), config) == Action.UID  # X/Z/U*


def test_private_curves_overlays_and_unlisted():
    config = DeidConfig()
    assert resolve_action(Tag(0x0019, 0x1010), config) == Action.REMOVE
    assert resolve_action(Tag(0x5002, 0x3000), config) == Action.REMOVE
    assert resolve_action(Tag(0x6000, 0x3000), config) == Action.REMOVE
    assert resolve_action(Tag("Rows"), config) is None  # not listed: retained


def test_method_codes_match_pydicom_cid_7050():
    got = {c.value: c.meaning for c in ALL_METHOD_CODES}
    expected = [
        codes.DCM.BasicApplicationConfidentialityProfile,
        codes.DCM.CleanPixelDataOption,
        codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption,
        codes.DCM.RetainLongitudinalTemporalInformationFullDatesOption,
        codes.DCM.RetainPatientCharacteristicsOption,
        codes.DCM.CleanDescriptorsOption,
        codes.DCM.CleanStructuredContentOption,
        codes.DCM.RetainDeviceIdentityOption,
        codes.DCM.RetainInstitutionIdentityOption,
        codes.DCM.RetainUidsOption,
        codes.DCM.RetainSafePrivateOption,
    ]
    assert got == {c.value: c.meaning for c in expected}
    config = DeidConfig(options=["retain-modified-dates"])
    assert [c.value for c in method_codes(config, pixels_cleaned=True)] == [
        "113100",
        "113101",
        "113107",
    ]
    with pytest.raises(InvalidInputError, match="exclude each other"):
        DeidConfig.from_options(options=["retain-full-dates", "retain-modified-dates"])
    with pytest.raises(InvalidInputError, match=r"0018,\[X\]01"):
        DeidConfig.from_options(safe_private=["0018,[X]01"])


def test_safe_private_whitelist_parsing_and_errors():
    config = DeidConfig(options=["retain-safe-private"], safe_private=["0019,[GEMS_ACQU_01]9C"])
    assert config.is_safe_private(0x19, "GEMS_ACQU_01", 0x9C)
    assert not config.is_safe_private(0x19, "GEMS_ACQU_01", 0x9D)
    assert not DeidConfig(safe_private=["0019,[GEMS_ACQU_01]9C"]).is_safe_private(
        0x19, "GEMS_ACQU_01", 0x9C
    )
    with pytest.raises(InvalidInputError, match="GGGG,\\[CREATOR\\]EE"):
        SafePrivateTag.parse("0018,[X]01")  # even group: not private
