"""The secret key behind every pseudonym: UIDs, patient ids and date shifts.

Every replacement is an HMAC-SHA256 of the original value under the key, so the same key maps
the same input to the same output in every file and every run (a study stays a study, a series
a series), and without the key the mapping cannot be inverted or recomputed.

The key file is JSON: ``{"format": "medsight-key/1", "key": <64 hex digits>, "key_id": ...}``.
The key id is a short hash of the key; it names the key in the audit log without revealing it.

Examples
--------
>>> key = PseudonymKey(bytes(32))
>>> key.key_id
'6bccb3a78bd7'
>>> key.uid("1.2.3") == key.uid("1.2.3") and key.uid("1.2.3").startswith("2.25.")
True
>>> key.patient_id("PGBM-002")
'ANON-DCPEHCCFWBCZ'
>>> -3650 <= key.date_shift_days("PGBM-002") <= -365
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from medsight.privacy.errors import KeyFileError

__all__ = ["PseudonymKey"]

_FORMAT = "medsight-key/1"
MIN_SHIFT_DAYS = 365
MAX_SHIFT_DAYS = 3650


@dataclass(frozen=True)
class PseudonymKey:
    """A 32-byte secret and the keyed hashes derived from it.

    Parameters
    ----------
    secret : bytes
        At least 16 bytes of key material.
    """

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise KeyFileError(None, "a pseudonymisation key needs at least 16 bytes")

    def __repr__(self) -> str:  # never print the secret
        return f"PseudonymKey(key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        """12 hex digits naming the key (a hash of it, not the key)."""
        return hashlib.sha256(b"medsight-key-id\0" + self.secret).hexdigest()[:12]

    def _mac(self, purpose: str, value: str) -> bytes:
        message = purpose.encode() + b"\0" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """A ``2.25.`` UID (at most 44 characters) replacing ``original``."""
        return "2.25." + str(int.from_bytes(self._mac("uid", original.strip())[:16], "big"))

    def patient_id(self, original: str, prefix: str = "ANON") -> str:
        """A pseudonymous patient id: ``prefix-`` and 12 base32 characters (60 bits)."""
        digest = base64.b32encode(self._mac("patient", original.strip())).decode()
        return f"{prefix}-{digest[:12]}" if prefix else digest[:12]

    def date_shift_days(self, patient: str) -> int:
        """The per-patient date shift, between -3650 and -365 days (into the past)."""
        span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
        number = int.from_bytes(self._mac("date-shift", patient.strip())[:8], "big")
        return -(MIN_SHIFT_DAYS + number % span)

    @classmethod
    def generate(cls) -> PseudonymKey:
        """A new random key from :mod:`secrets`."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, create: bool = True) -> PseudonymKey:
        """Read a key file; with ``create``, make one with a random key if it does not exist.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "site.key"
        >>> key = PseudonymKey.load(path)
        >>> PseudonymKey.load(path) == key
        True
        """
        path = Path(path)
        if not path.exists():
            if not create:
                raise KeyFileError(path, "key file does not exist", hint="pass an existing key")
            key = cls.generate()
            key.save(path)
            return key
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != _FORMAT:
                raise ValueError("format")
            key = cls(bytes.fromhex(data["key"]))
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            raise KeyFileError(
                path, f"not a readable medsight key file ({exc})", hint="restore it from backup"
            ) from exc
        if data.get("key_id") != key.key_id:
            raise KeyFileError(path, "key id does not match the key: the file was edited")
        return key

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key file (mode 0600) atomically; refuses to overwrite."""
        path = Path(path)
        if path.exists():
            raise KeyFileError(path, "key file exists already; refusing to overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": _FORMAT, "key": self.secret.hex(), "key_id": self.key_id})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.replace(tmp, path)
