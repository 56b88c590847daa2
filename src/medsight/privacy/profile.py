"""The de-identification profile: options, typed configuration and per-attribute actions.

The actions come from DICOM PS3.15 Table E.1-1 (:mod:`medsight.privacy.ps315_table`, generated
from the standard).  An option's column, where it has an entry for an attribute, overrides the
Basic Profile's action.  Attributes the table does not list are retained (the standard's rule),
except private attributes (removed unless whitelisted under Retain Safe Private) and, when
``remove_overlays`` is set, every element of the curve (50xx) and overlay (60xx) groups.
:mod:`~medsight.privacy.dicom_deid` goes further than the table in three places, each safer:
unlisted person names (PN) get a dummy, unlisted free text (LT, ST, UT) is cleaned of the
dataset's identifiers, and public elements pydicom cannot interpret (VR UN) are removed.

Combined actions (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) let the implementer pick
the member the IOD needs.  We do not carry the IOD attribute types, so we pick the member that
is valid for every attribute type: ``Z`` for ``X/Z`` (an empty value is valid for Type 2 and 3),
``D`` for anything offering a dummy (valid even for Type 1) and ``U`` for ``X/Z/U*`` (sequences
are kept and the UIDs inside them remapped, so references stay usable).

Examples
--------
>>> from pydicom.tag import Tag
>>> config = DeidConfig(options=[Option.RETAIN_PATIENT_CHARACTERISTICS])
>>> resolve_action(Tag("PatientAge"), config)
<Action.KEEP: 'K'>
>>> resolve_action(Tag("PatientAge"), DeidConfig())
<Action.REMOVE: 'X'>
>>> resolve_action(Tag("StudyDate"), DeidConfig(options=["retain-modified-dates"]))
<Action.CLEAN: 'C'>
>>> resolve_action(Tag("ContentDate"), DeidConfig())  # Z/D in the table
<Action.DUMMY: 'D'>
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydicom.tag import BaseTag

from medsight.core.errors import InvalidInputError
from medsight.privacy.ps315_table import EDITION, TABLE

__all__ = [
    "ALL_METHOD_CODES",
    "BASIC_PROFILE_CODE",
    "Action",
    "DeidConfig",
    "Layout",
    "MethodCode",
    "Option",
    "PixelScrub",
    "PixelText",
    "Profile",
    "SafePrivateTag",
    "method_codes",
    "profile_defaults",
    "resolve_action",
]


class Action(StrEnum):
    """A single action of Table E.1-1 after combined actions are resolved."""

    DUMMY = "D"
    EMPTY = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"


class Profile(StrEnum):
    """Confidentiality profiles: PS3.15's Basic Profile, and medsight's presets on top of it.

    ``basic``: the Basic Application Level Confidentiality Profile with only the options asked
    for.  ``hospital-analysis``: for analysis that stays inside the hospital (training,
    ``medsight analyze`` on a copy without names): the Basic Profile plus Clean Descriptors
    (Series Description and Protocol Name kept, cleaned of identifying words, so models still
    find their series), Retain Longitudinal Temporal Information with Modified Dates (one keyed
    shift per patient: intervals between studies survive), Retain Patient Characteristics
    (age, sex, size, weight: fairness and risk models need them) and Retain Device Identity
    (scanner model and station: domain shift and QC need them), with burned-in text scrubbed
    in flagged images (:func:`profile_defaults`).
    """

    BASIC = "basic"
    HOSPITAL_ANALYSIS = "hospital-analysis"


class Option(StrEnum):
    """Confidentiality profile options of PS3.15 E.3 that medsight implements."""

    RETAIN_MODIFIED_DATES = "retain-modified-dates"
    RETAIN_PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
    CLEAN_DESCRIPTORS = "clean-descriptors"
    RETAIN_DEVICE_IDENTITY = "retain-device-identity"
    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    RETAIN_FULL_DATES = "retain-full-dates"
    RETAIN_UIDS = "retain-uids"
    RETAIN_INSTITUTION_IDENTITY = "retain-institution-identity"
    CLEAN_STRUCTURED_CONTENT = "clean-structured-content"


class PixelScrub(StrEnum):
    """Which images get OCR and their burned-in text blacked out.

    ``flagged``: only images that may carry burned-in text (see
    :func:`medsight.privacy.pixels.burned_in_risk`); OCR on anatomy (a CT or MR slice) can
    mistake structures for letters, so this is the safe default.  ``all``: every image.
    """

    OFF = "off"
    FLAGGED = "flagged"
    ALL = "all"


class PixelText(StrEnum):
    """What of the burned-in text found in a scrubbed image is blacked out.

    ``all`` (default): every text line found, identifying or not.  ``keep-readable``: lines that
    OCR reads confidently and that match no identifying value, date or ID-like string (``L``,
    ``R``, scale markers, ``MI 1.1``) stay; lines that cannot be read are still blacked out.
    """

    ALL = "all"
    KEEP_READABLE = "keep-readable"


class Layout(StrEnum):
    """How output files are named.

    ``uid``: DICOM files as ``<Study UID>/<Series UID>/<SOP Instance UID>.dcm`` (new UIDs) and
    other files as ``files/<keyed hash of the input path><suffix>``, so no input folder or file
    name (which often carry names, dates or descriptions) reaches OUT.  ``mirror``: the input's
    relative paths, for inputs whose names are known to be clean.
    """

    UID = "uid"
    MIRROR = "mirror"


class MethodCode(BaseModel):
    """A code of CID 7050 (De-identification Method), scheme DCM."""

    model_config = ConfigDict(frozen=True)

    value: str
    meaning: str
    scheme: str = "DCM"


# CID 7050 codes, checked against pydicom.sr.codedict codes.DCM (pydicom 3.0).
BASIC_PROFILE_CODE = MethodCode(value="113100", meaning="Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = MethodCode(value="113101", meaning="Clean Pixel Data Option")
_OPTION_INFO: dict[Option, tuple[str, MethodCode]] = {
    Option.RETAIN_MODIFIED_DATES: (
        "retain_modified_dates",
        MethodCode(
            value="113107",
            meaning="Retain Longitudinal Temporal Information Modified Dates Option",
        ),
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: (
        "retain_patient_characteristics",
        MethodCode(value="113108", meaning="Retain Patient Characteristics Option"),
    ),
    Option.CLEAN_DESCRIPTORS: (
        "clean_descriptors",
        MethodCode(value="113105", meaning="Clean Descriptors Option"),
    ),
    Option.RETAIN_DEVICE_IDENTITY: (
        "retain_device_identity",
        MethodCode(value="113109", meaning="Retain Device Identity Option"),
    ),
    Option.RETAIN_SAFE_PRIVATE: (
        "retain_safe_private",
        MethodCode(value="113111", meaning="Retain Safe Private Option"),
    ),
    Option.RETAIN_FULL_DATES: (
        "retain_full_dates",
        MethodCode(
            value="113106", meaning="Retain Longitudinal Temporal Information Full Dates Option"
        ),
    ),
    Option.RETAIN_UIDS: ("retain_uids", MethodCode(value="113110", meaning="Retain UIDs Option")),
    Option.RETAIN_INSTITUTION_IDENTITY: (
        "retain_institution_identity",
        MethodCode(value="113112", meaning="Retain Institution Identity Option"),
    ),
    Option.CLEAN_STRUCTURED_CONTENT: (
        "clean_structured_content",
        MethodCode(value="113104", meaning="Clean Structured Content Option"),
    ),
}

ALL_METHOD_CODES: tuple[MethodCode, ...] = (
    BASIC_PROFILE_CODE,
    CLEAN_PIXEL_DATA_CODE,
    *(code for _, code in _OPTION_INFO.values()),
)

_COMBINED = {"X/Z": Action.EMPTY, "X/D": Action.DUMMY, "Z/D": Action.DUMMY}
_COMBINED |= {"X/Z/D": Action.DUMMY, "X/Z/U*": Action.UID}

_PRIVATE_RE = re.compile(r"^\s*([0-9A-Fa-f]{4})\s*,\s*\[(.+)\]\s*([0-9A-Fa-f]{2})\s*$")


class SafePrivateTag(BaseModel):
    """One private attribute known to be safe, identified by group, creator and element byte.

    Examples
    --------
    >>> tag = SafePrivateTag.parse("0019,[GEMS_ACQU_01]9C")
    >>> (hex(tag.group), tag.creator, hex(tag.element))
    ('0x19', 'GEMS_ACQU_01', '0x9c')
    """

    model_config = ConfigDict(frozen=True)

    group: int = Field(ge=0x0009, le=0xFFFF)
    creator: str
    element: int = Field(ge=0, le=0xFF)

    @classmethod
    def parse(cls, text: str) -> SafePrivateTag:
        """Parse ``"GGGG,[CREATOR]EE"`` (hexadecimal group and element byte)."""
        match = _PRIVATE_RE.match(text)
        if match is None or int(match.group(1), 16) % 2 == 0:
            raise InvalidInputError(
                "safe private tag",
                f"{text!r} is not of the form GGGG,[CREATOR]EE with an odd group",
                hint="for example 0019,[GEMS_ACQU_01]9C",
            )
        return cls(
            group=int(match.group(1), 16), creator=match.group(2), element=int(match.group(3), 16)
        )


class DeidConfig(BaseModel):
    """How to de-identify: options of PS3.15 E.3 plus medsight's own switches.

    Parameters
    ----------
    options : list of Option or str
        Options on top of the Basic Profile.
    safe_private : list of SafePrivateTag or str
        The whitelist used by :attr:`Option.RETAIN_SAFE_PRIVATE`; ignored without that option.
    remove_overlays : bool
        Remove every element of the curve (50xx) and overlay (60xx) groups.
    scrub_pixels : PixelScrub or bool
        Which images get OCR and their text blacked out (``True`` means ``flagged``).
    pixel_text : PixelText
        Which of the text found is blacked out (default: all of it).
    layout : Layout
        How output files are named (default: by the new UIDs).
    patient_id_prefix : str
        Prefix of the pseudonymous patient ids.

    Examples
    --------
    >>> DeidConfig(options=["clean-descriptors"]).options
    frozenset({<Option.CLEAN_DESCRIPTORS: 'clean-descriptors'>})
    """

    model_config = ConfigDict(frozen=True)

    options: frozenset[Option] = frozenset()
    safe_private: tuple[SafePrivateTag, ...] = ()
    remove_overlays: bool = True
    scrub_pixels: PixelScrub = PixelScrub.OFF
    pixel_text: PixelText = PixelText.ALL
    layout: Layout = Layout.UID
    patient_id_prefix: str = Field(default="ANON", pattern=r"^[A-Z0-9]{0,8}$")

    @field_validator("scrub_pixels", mode="before")
    @classmethod
    def _scrub_from_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            return PixelScrub.FLAGGED if value else PixelScrub.OFF
        return value

    @field_validator("safe_private", mode="before")
    @classmethod
    def _parse_safe_private(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(SafePrivateTag.parse(v) if isinstance(v, str) else v for v in value)
        return value

    @field_validator("options")
    @classmethod
    def _dates_one_way(cls, value: frozenset[Option]) -> frozenset[Option]:
        if {Option.RETAIN_FULL_DATES, Option.RETAIN_MODIFIED_DATES} <= value:
            raise ValueError("retain-full-dates and retain-modified-dates exclude each other")
        return value

    @classmethod
    def from_options(cls, **fields: Any) -> DeidConfig:
        """Build a config, turning pydantic's validation errors into one
        :class:`~medsight.core.errors.InvalidInputError` (for the CLI and the service).

        Examples
        --------
        >>> try:
        ...     DeidConfig.from_options(options=["retain-full-dates", "retain-modified-dates"])
        ... except InvalidInputError as err:
        ...     print(err)
        options: retain-full-dates and retain-modified-dates exclude each other
        """
        try:
            return cls(**fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"][:1]) or "configuration"
            message = str(first["msg"]).removeprefix("Value error, ")
            cause = first.get("ctx", {}).get("error")
            if isinstance(cause, InvalidInputError):
                raise cause from exc
            raise InvalidInputError(where, message) from exc

    def has(self, option: Option) -> bool:
        """Whether ``option`` is on."""
        return option in self.options

    def is_safe_private(self, group: int, creator: str, element: int) -> bool:
        """Whether a private element is on the whitelist and Retain Safe Private is on."""
        if not self.has(Option.RETAIN_SAFE_PRIVATE):
            return False
        return SafePrivateTag(group=group, creator=creator.strip(), element=element) in set(
            self.safe_private
        )


def _table_entry(tag: BaseTag) -> dict[str, str] | None:
    if tag.is_private:
        return TABLE["private"]
    entry = TABLE.get(f"{int(tag):08X}")
    if entry is not None:
        return entry
    group, elem = tag.group, tag.element
    if group & 0xFF00 == 0x5000:
        return TABLE["50xxxxxx"]
    if group & 0xFF00 == 0x6000 and elem in (0x3000, 0x4000):
        return TABLE[f"60xx{elem:04x}"]
    return None


def table_action(tag: BaseTag, config: DeidConfig) -> str | None:
    """The raw action code of Table E.1-1 for ``tag`` under ``config``; None if not listed."""
    entry = _table_entry(tag)
    if entry is None:
        return None
    for option in sorted(config.options):
        column = _OPTION_INFO[option][0]
        if column in entry:
            return entry[column]
    return entry.get("basic")


def resolve_action(tag: BaseTag, config: DeidConfig) -> Action | None:
    """The single :class:`Action` for ``tag``, combined actions resolved; None if not listed."""
    code = table_action(tag, config)
    if code is None:
        return None
    return _COMBINED.get(code) or Action(code)


_HOSPITAL_OPTIONS = frozenset(
    {
        Option.CLEAN_DESCRIPTORS,
        Option.RETAIN_MODIFIED_DATES,
        Option.RETAIN_PATIENT_CHARACTERISTICS,
        Option.RETAIN_DEVICE_IDENTITY,
    }
)


def profile_defaults(profile: Profile | str) -> dict[str, Any]:
    """The :class:`DeidConfig` fields a profile sets (options are added to those asked for).

    Examples
    --------
    >>> sorted(profile_defaults("hospital-analysis")["options"])  # doctest: +NORMALIZE_WHITESPACE
    [<Option.CLEAN_DESCRIPTORS: 'clean-descriptors'>,
     <Option.RETAIN_DEVICE_IDENTITY: 'retain-device-identity'>,
     <Option.RETAIN_MODIFIED_DATES: 'retain-modified-dates'>,
     <Option.RETAIN_PATIENT_CHARACTERISTICS: 'retain-patient-characteristics'>]
    >>> profile_defaults("basic")
    {'options': frozenset()}
    """
    if Profile(profile) == Profile.HOSPITAL_ANALYSIS:
        return {"options": _HOSPITAL_OPTIONS, "scrub_pixels": PixelScrub.FLAGGED}
    return {"options": frozenset()}


def method_codes(config: DeidConfig, *, pixels_cleaned: bool = False) -> list[MethodCode]:
    """The CID 7050 codes describing what was done, Basic Profile first.

    Examples
    --------
    >>> [c.value for c in method_codes(DeidConfig(options=["retain-modified-dates"]))]
    ['113100', '113107']
    """
    codes = [BASIC_PROFILE_CODE]
    if pixels_cleaned:
        codes.append(CLEAN_PIXEL_DATA_CODE)
    codes += sorted((_OPTION_INFO[o][1] for o in config.options), key=lambda c: c.value)
    return codes


def method_description() -> str:
    """The text put in De-identification Method (0012,0063), at most 64 characters.

    Examples
    --------
    >>> method_description()
    'medsight: DICOM PS3.15 E.1-1 (2024c+2026c), see (0012,0064)'
    """
    return f"medsight: DICOM PS3.15 E.1-1 ({EDITION}), see (0012,0064)"
