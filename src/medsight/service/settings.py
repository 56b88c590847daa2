"""Service settings: one typed object, read from the environment and an optional file.

The home folder holds everything the service writes: the SQLite store (unless
``database_url`` points elsewhere, e.g. PostgreSQL), received studies, analysis results and the
audit log.  It comes from ``MEDSIGHT_HOME`` (default ``~/.medsight``) or from the settings file
named by ``MEDSIGHT_SETTINGS`` (TOML or JSON).  Values in the file win over the environment.

A settings file (TOML) for a site with Orthanc and a FHIR server might read::

    home = "/srv/medsight"
    database_url = "postgresql+psycopg://medsight@db/medsight"
    packages = ["/srv/models/chest-ct-nodules"]
    dicomweb_url = "http://pacs:8042/dicom-web"
    dimse_port = 11112
    dimse_allowed_aes = ["ORTHANC", "CT01"]
    dimse_destination = "ORTHANC@pacs:4242"
    dimse_qr_peer = "ORTHANC@pacs:4242"
    fhir_url = "http://fhir:8080/fhir"

    [[rules]]
    modality = "CT"
    body_part = "CHEST"
    urgency = "urgent"

Examples
--------
>>> import tempfile
>>> s = ServiceSettings(home=tempfile.mkdtemp())
>>> s.resolved_database_url().startswith("sqlite:///")
True
>>> s.max_upload_bytes > 0
True
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from medsight.core.errors import InvalidInputError
from medsight.core.significance import Urgency  # the referrer's priority; also findings' urgency
from medsight.inference.cache import DEFAULT_SIZE

__all__ = ["Role", "RoutingRule", "ServiceSettings", "Urgency", "load_settings"]

#: ``AE@host:port``: an AE title of 1-16 characters (no backslash, no control), a host, a port.
_PEER = re.compile(r"^([^\\\x00-\x1f@]{1,16})@([^\s@:]+):(\d{1,5})$")


class Role(StrEnum):
    """What a user may do; each role includes the ones before it."""

    VIEWER = "viewer"  # worklist, studies, results
    RADIOLOGIST = "radiologist"  # + upload, submit jobs, confirm / reject findings, PACS pull
    ADMIN = "admin"  # + users, tokens, audit log

    @property
    def rank(self) -> int:
        """Position in the order viewer < radiologist < admin."""
        return list(Role).index(self)


class RoutingRule(BaseModel):
    """Which model packages run on a study received over DIMSE (first matching rule wins).

    Empty criteria match anything; ``description`` is a case-insensitive substring of the study
    or series description.
    """

    modality: str = ""
    body_part: str = ""
    description: str = ""
    packages: list[str] = Field(default_factory=list, description="package ids; empty = all")
    urgency: Urgency = Urgency.ROUTINE


class ServiceSettings(BaseSettings):
    """Everything ``medsight serve`` can be configured with (environment prefix ``MEDSIGHT_``)."""

    model_config = SettingsConfigDict(env_prefix="MEDSIGHT_", extra="forbid")

    home: Path = Field(default_factory=lambda: Path.home() / ".medsight")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in home")
    packages: list[Path] = Field(default_factory=list, description="model package folders")
    max_upload_bytes: int = Field(512 * 2**20, gt=0)
    max_upload_files: int = Field(5000, gt=0)
    max_unzipped_bytes: int = Field(2 * 2**30, gt=0)
    run_worker: bool = True
    model_cache: int = Field(
        DEFAULT_SIZE,
        ge=0,
        description=(
            "built models (predictors) kept in memory for reuse by every analysis and what-if "
            "call, least recently used dropped first; 0 = build the models anew every time"
        ),
    )
    worker_poll_s: float = Field(0.5, gt=0)
    max_attempts: int = Field(3, ge=1, description="a job whose worker died this often fails")
    job_lease_s: float = Field(
        60.0, gt=0, description="a running job without a heartbeat for this long is requeued"
    )
    token_hours: float = Field(12.0, gt=0)
    admin_password: SecretStr | None = Field(None, description="creates 'admin' on first start")
    dicomweb_url: str | None = None
    push_results: bool = Field(True, description="STOW-RS / C-STORE results back when done")
    dimse_port: int | None = Field(None, description="C-STORE SCP port; None = no SCP")
    dimse_host: str = "127.0.0.1"
    dimse_settle_s: float = Field(
        5.0, ge=0, description="queue a received study after this long without new instances"
    )
    ae_title: str = "MEDSIGHT"
    dimse_allowed_aes: list[str] = Field(
        default_factory=list, description="calling AE titles the SCP accepts; empty = any"
    )
    dimse_destination: str | None = Field(None, description="AE@host:port for C-STORE results")
    dimse_qr_peer: str | None = Field(
        None,
        description=(
            "AE@host:port of a PACS queried with C-FIND and retrieved from with C-MOVE (the "
            "query/retrieve page and /api/pacs); C-MOVE also needs dimse_port, and the PACS "
            "must know ae_title at dimse_host:dimse_port as a move destination"
        ),
    )
    fhir_url: str | None = Field(None, description="FHIR base URL the Bundle is POSTed to")
    cds_jwks: dict[str, Path] = Field(
        default_factory=dict,
        description="CDS Hooks: trusted EHR issuer (JWT iss) -> JWKS file of its public keys",
    )
    rules: list[RoutingRule] = Field(default_factory=lambda: [RoutingRule()])
    viewer_dist: Path | None = Field(
        None, description="OHIF build (dist/) served at /ohif/; default .cache/ohif/current/dist"
    )

    @field_validator("dimse_qr_peer")
    @classmethod
    def _peer(cls, value: str | None) -> str | None:
        if value is None:
            return None
        found = _PEER.match(value.strip())
        if found is None or not found.group(1).strip() or not 0 < int(found.group(3)) < 65536:
            raise ValueError(f"{value!r} is not AE@host:port (e.g. ORTHANC@pacs:4242)")
        return value.strip()

    def resolved_database_url(self) -> str:
        """The store's URL: ``database_url`` or ``sqlite:///<home>/medsight.db``."""
        return self.database_url or f"sqlite:///{self.home / 'medsight.db'}"

    def ensure_home(self) -> Path:
        """Create the home folder (private to the user) and return it."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        return self.home


def load_settings(path: str | os.PathLike[str] | None = None) -> ServiceSettings:
    """Settings from ``path`` (or ``$MEDSIGHT_SETTINGS``), then the environment.

    Raises
    ------
    InvalidInputError
        The file is missing, is not TOML/JSON, or holds an unknown or invalid setting.
    """
    from pydantic import ValidationError

    path = path or os.environ.get("MEDSIGHT_SETTINGS")
    values: dict[str, Any] = {}
    if path:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
            values = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(file, f"cannot read settings ({exc})") from exc
    try:
        return ServiceSettings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        raise InvalidInputError(where, err["msg"]) from exc
