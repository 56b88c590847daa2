"""Series roles of a multi-input model: which series of a study fills which input channel.

A model trained on several co-registered series (BraTS-style FLAIR / T1 / T1c / T2, PET + CT)
declares one :class:`RoleSpec` per input channel in :attr:`InputSpec.roles
<medsight.models.spec.InputSpec.roles>`: the role's name, the channel it fills, whether it is
required, and the header rules that recognise it (SeriesDescription patterns, MR sequence tags
and their ranges, ImageType values, contrast agent).  ``analyze`` finds each role in the study
(:mod:`medsight.analysis.roles`), resamples every role onto the reference role's grid and stacks
them in channel order.  This module holds the data and the rules only (pydantic, no torch).

Every rule is three-valued on a header: evidence for the role, evidence against it (the series
cannot fill the role) or no evidence (the tag is absent, e.g. removed by de-identification).
:func:`role_evidence` returns both lists, so a matcher can rank the series and say why.

Examples
--------
>>> flair = default_role("FLAIR", 0)
>>> ok, against = role_evidence(flair, {"SeriesDescription": "AX FLAIR", "InversionTime": 2500})
>>> ok, against
(['SeriesDescription matches', 'InversionTime 2500 in [1400, -]'], [])
>>> role_evidence(flair, {"SeriesDescription": "AX T1 FLAIR"})[1]
['description matches the exclusion /\\\\bt1/']
>>> [r.name for r in roles_from_channel_names({0: "FLAIR", 1: "T1w", 2: "t1gd", 3: "T2w"})]
['FLAIR', 'T1w', 't1gd', 'T2w']
>>> roles_from_channel_names({0: "channel_0", 1: "channel_1"}) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "RoleSpec",
    "TagRange",
    "check_roles",
    "default_role",
    "ordered_roles",
    "reference_role",
    "role_evidence",
    "roles_from_channel_names",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TagRange(_Frozen):
    """A closed range of a numeric header value (milliseconds for MR timing tags)."""

    min: float | None = None
    max: float | None = None

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the range (an open end accepts anything)."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        lo = "-" if self.min is None else f"{self.min:g}"
        hi = "-" if self.max is None else f"{self.max:g}"
        return f"[{lo}, {hi}]"


class RoleSpec(_Frozen):
    """One input series of a multi-input model and the header rules that recognise it.

    ``channel`` is the input channel the role fills (default: its position in the list).  An
    optional role (``required=False``) that the study lacks is filled with ``fill`` (the value
    the model was trained with for an absent series), a required one withholds the model.
    ``reference`` marks the role whose grid the others are resampled onto (default: the first).
    ``modality`` narrows the model's modalities for this role (``PT`` beside ``CT``).

    The header rules (each optional; a role without any matches any series that fits the
    model's modality and dimensionality, so two such series are ambiguous):

    ``description_pattern`` / ``exclude_pattern``
        Regular expressions searched in SeriesDescription, case-insensitively.
    ``scanning_sequence`` / ``sequence_variant`` / ``image_type``
        Values that must all be among the multi-valued tag's values (``["IR"]``, ``["SK"]``,
        ``["ORIGINAL"]``).
    ``inversion_time`` / ``echo_time`` / ``repetition_time``
        :class:`TagRange` in ms.
    ``contrast``
        True: a contrast agent is stated (ContrastBolusAgent); False: none may be stated.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    channel: int | None = Field(default=None, ge=0)
    required: bool = True
    fill: float = 0.0
    reference: bool = False
    modality: str | None = None
    description_pattern: str | None = None
    exclude_pattern: str | None = None
    scanning_sequence: list[str] = Field(default_factory=list)
    sequence_variant: list[str] = Field(default_factory=list)
    image_type: list[str] = Field(default_factory=list)
    inversion_time: TagRange | None = None
    echo_time: TagRange | None = None
    repetition_time: TagRange | None = None
    contrast: bool | None = None

    @field_validator("description_pattern", "exclude_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {pattern!r} ({exc})") from None
        return pattern

    @property
    def has_rules(self) -> bool:
        """Whether any header rule (beyond the modality) is declared."""
        return bool(
            self.description_pattern
            or self.exclude_pattern
            or self.scanning_sequence
            or self.sequence_variant
            or self.image_type
            or self.inversion_time
            or self.echo_time
            or self.repetition_time
            or self.contrast is not None
        )


def ordered_roles(roles: Sequence[RoleSpec]) -> list[tuple[int, RoleSpec]]:
    """``(channel, role)`` pairs in channel order (a role without ``channel``: its position).

    Examples
    --------
    >>> [(c, r.name) for c, r in ordered_roles([RoleSpec(name="a", channel=1),
    ...                                        RoleSpec(name="b", channel=0)])]
    [(0, 'b'), (1, 'a')]
    """
    pairs = [(r.channel if r.channel is not None else k, r) for k, r in enumerate(roles)]
    return sorted(pairs, key=lambda p: p[0])


def reference_role(roles: Sequence[RoleSpec]) -> RoleSpec:
    """The role that gives the grid: the one marked ``reference``, else the first declared."""
    marked = [r for r in roles if r.reference]
    return marked[0] if marked else roles[0]


def check_roles(roles: Sequence[RoleSpec], channels: int) -> None:
    """Raise ValueError unless ``roles`` fill each of ``channels`` input channels exactly once.

    Examples
    --------
    >>> check_roles([RoleSpec(name="T1"), RoleSpec(name="t1")], 2)
    Traceback (most recent call last):
    ...
    ValueError: role names must be unique (case-insensitive): ['T1', 't1']
    """
    if not roles:
        return
    names = [r.name for r in roles]
    if len({n.lower() for n in names}) != len(names):
        raise ValueError(f"role names must be unique (case-insensitive): {names}")
    explicit = [r.channel is not None for r in roles]
    if any(explicit) and not all(explicit):
        raise ValueError("give every role a channel, or none (then the list order is used)")
    used = [c for c, _ in ordered_roles(roles)]
    if used != list(range(channels)):
        raise ValueError(
            f"the roles fill channels {used}; the model has {channels} input channel(s) "
            f"(each must be filled exactly once)"
        )
    if sum(r.reference for r in roles) > 1:
        raise ValueError("at most one role can be the reference grid")
    if all(not r.required for r in roles):
        raise ValueError("at least one role must be required")
    if not reference_role(roles).required:
        raise ValueError("the reference role (the grid) must be required")


# --- header rules ----------------------------------------------------------------------------


def _values(header: Mapping[str, Any] | Any, tag: str) -> list[str] | None:
    value = header.get(tag) if hasattr(header, "get") else None
    if value is None or value == "":
        return None
    if isinstance(value, str):
        items = value.replace("\\", " ").split()
    elif hasattr(value, "__iter__"):  # pydicom MultiValue, list
        items = [str(v) for v in value]
    else:
        items = [str(value)]
    return [v.strip().upper() for v in items if v.strip()]


def _number(header: Mapping[str, Any] | Any, tag: str) -> float | None:
    value = header.get(tag) if hasattr(header, "get") else None
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _contrast_stated(header: Mapping[str, Any] | Any) -> bool:
    agent = header.get("ContrastBolusAgent") if hasattr(header, "get") else None
    return agent is not None and str(agent).strip() not in ("", "NONE", "None", "none")


def role_evidence(role: RoleSpec, header: Mapping[str, Any] | Any) -> tuple[list[str], list[str]]:
    """The rules of ``role`` that ``header`` satisfies, and those it contradicts.

    ``header`` is a pydicom Dataset or a mapping of keywords.  A rule whose tag is absent
    gives no evidence either way (a de-identified study without SeriesDescription still
    matches by its sequence tags).
    """
    ok: list[str] = []
    against: list[str] = []
    description = str(header.get("SeriesDescription", "") or "") if hasattr(header, "get") else ""
    if role.description_pattern and description:
        if re.search(role.description_pattern, description, re.IGNORECASE):
            ok.append("SeriesDescription matches")
        else:
            against.append(f"description does not match /{role.description_pattern}/")
    if (
        role.exclude_pattern
        and description
        and re.search(role.exclude_pattern, description, re.IGNORECASE)
    ):
        against.append(f"description matches the exclusion /{role.exclude_pattern}/")
    for tag, wanted in (
        ("ScanningSequence", role.scanning_sequence),
        ("SequenceVariant", role.sequence_variant),
        ("ImageType", role.image_type),
    ):
        if not wanted:
            continue
        have = _values(header, tag)
        if have is None:
            continue
        need = [w.upper() for w in wanted]
        if all(w in have for w in need):
            ok.append(f"{tag} has {'/'.join(need)}")
        else:
            against.append(f"{tag} {'/'.join(have)} lacks {'/'.join(need)}")
    for tag, span in (
        ("InversionTime", role.inversion_time),
        ("EchoTime", role.echo_time),
        ("RepetitionTime", role.repetition_time),
    ):
        if span is None:
            continue
        value = _number(header, tag)
        if value is None:
            continue
        (ok if span.contains(value) else against).append(
            f"{tag} {value:g} {'in' if span.contains(value) else 'outside'} {span}"
        )
    if role.contrast is not None:
        stated = _contrast_stated(header)
        if role.contrast and stated:
            ok.append("ContrastBolusAgent stated")
        elif not role.contrast and stated:
            against.append("a contrast agent is stated (the role is without contrast)")
    return ok, against


# --- roles from data set channel names (MSD dataset.json "modality") ------------------------

_GD = r"gd|gad|post|\+ ?c\b|\bce\b|contrast|enhanc"
#: Recognised channel names (regular expression on the name) -> header rules of the role.
_KNOWN: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        r"flair",
        {
            "description_pattern": r"flair|dark.?fluid",
            "exclude_pattern": r"\bt1",
            "inversion_time": TagRange(min=1400),
        },
    ),
    (
        rf"^t1.*({_GD})|^t1c$|^t1ce$",
        {
            "description_pattern": rf"(t1|mprage|spgr|bravo).*({_GD})|({_GD}).*(t1|mprage)",
            "contrast": True,
        },
    ),
    (
        r"^t1",
        {
            "description_pattern": r"t1|mprage|spgr|bravo",
            "exclude_pattern": rf"flair|{_GD}",
            "contrast": False,
        },
    ),
    (
        r"^t2",
        {
            "description_pattern": r"t2",
            "exclude_pattern": r"flair|dark.?fluid|\*|star|swi|gre",
            "echo_time": TagRange(min=60),
        },
    ),
    (r"^pd", {"description_pattern": r"\bpd|proton"}),
    (
        r"^(dwi|diffusion)",
        {"description_pattern": r"dwi|diffusion|trace", "exclude_pattern": "adc"},
    ),
    (r"^adc", {"description_pattern": r"adc|apparent"}),
)
#: Channel names that are a modality, not a sequence -> the DICOM modality the role takes.
_MODALITY_NAMES = {"CT": "CT", "PET": "PT", "PT": "PT", "US": "US", "MR": "MR", "MRI": "MR"}
_GENERIC_NAME = re.compile(r"^(channel|ch|input|image)[_ -]?\d*$", re.IGNORECASE)


def default_role(name: str, channel: int) -> RoleSpec:
    """The role for a data set channel called ``name``, with rules for the usual MR sequences.

    FLAIR, T1 (without contrast), T1 with gadolinium (``t1gd``, ``T1c``, ``T1ce``), T2, PD, DWI
    and ADC get description patterns and sequence-tag ranges; a modality name (``CT``, ``PET``)
    a modality; any other name its own text as the description pattern.
    """
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", name.strip()) or f"channel_{channel}"
    key = name.strip().lower().replace(" ", "").replace("-", "").replace("_", "")
    if name.strip().upper() in _MODALITY_NAMES:
        return RoleSpec(name=safe, channel=channel, modality=_MODALITY_NAMES[name.strip().upper()])
    for pattern, rules in _KNOWN:
        if re.search(pattern, key):
            return RoleSpec(name=safe, channel=channel, **rules)
    return RoleSpec(name=safe, channel=channel, description_pattern=re.escape(name.strip()))


def roles_from_channel_names(channel_names: Mapping[int, str]) -> list[RoleSpec] | None:
    """One role per channel from ``dataset.json`` names; None for one channel or bare names.

    Names like ``channel_0`` (inferred from file names) say nothing a study could be searched
    for, so such a model declares no roles (it then takes one series with all its channels).
    Names that do not fit a role name are cleaned (``"T1 post"`` -> ``T1_post``).
    """
    if len(channel_names) < 2:
        return None
    if any(_GENERIC_NAME.match(str(n).strip()) for n in channel_names.values()):
        return None
    roles = [default_role(str(channel_names[c]), k) for k, c in enumerate(sorted(channel_names))]
    if len({r.name.lower() for r in roles}) != len(roles):
        return None
    return roles
