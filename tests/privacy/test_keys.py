"""The key: keyed-hash pseudonyms, the key file and its checks."""

from __future__ import annotations

import json
import stat

import pytest
from pydicom.valuerep import validate_value

from medsight.privacy.errors import KeyFileError
from medsight.privacy.keys import PseudonymKey


def test_pseudonyms_are_deterministic_per_key_and_differ_between_keys(key):
    other = PseudonymKey(bytes(32))
    uid = "1.3.6.1.4.1.14519.5.2.1.4429.7055.268946475677713319238616965552"
    assert key.uid(uid) == key.uid(uid) != other.uid(uid)
    assert key.patient_id("PGBM-002") != other.patient_id("PGBM-002")
    assert key.date_shift_days("PGBM-002") == key.date_shift_days("PGBM-002")
    assert key.uid("1.2.3") != key.uid("1.2.4")


def test_uids_are_valid_dicom_uids(key):
    for i in range(200):
        uid = key.uid(f"1.2.3.{i}")
        assert uid.startswith("2.25.") and len(uid) <= 64
        validate_value("UI", uid, validation_mode=2)  # raises on an invalid UID


def test_date_shifts_spread_over_the_range(key):
    shifts = {key.date_shift_days(f"patient-{i}") for i in range(300)}
    assert min(shifts) >= -3650 and max(shifts) <= -365
    assert len(shifts) > 250


def test_key_file_created_private_and_reloaded(tmp_path):
    path = tmp_path / "keys" / "site.key"
    key = PseudonymKey.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PseudonymKey.load(path) == key
    assert key.key_id in repr(key) and key.secret.hex() not in repr(key)
    with pytest.raises(KeyFileError, match="exists already"):
        key.save(path)


def test_edited_or_malformed_key_file_is_refused(tmp_path):
    path = tmp_path / "site.key"
    PseudonymKey.load(path)
    data = json.loads(path.read_text())
    data["key"] = "00" * 32
    path.write_text(json.dumps(data))
    with pytest.raises(KeyFileError, match="key id does not match"):
        PseudonymKey.load(path)
    path.write_text("not json")
    with pytest.raises(KeyFileError, match=r"site\.key: not a readable medsight key file"):
        PseudonymKey.load(path)
    with pytest.raises(KeyFileError, match="does not exist"):
        PseudonymKey.load(tmp_path / "missing.key", create=False)
