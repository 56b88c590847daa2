"""Multi-input models: find the series of each declared role in a study, and stack them.

A package whose :class:`~medsight.models.spec.InputSpec` declares ``roles``
(:mod:`medsight.models.roles`: FLAIR, T1, T1c, T2 ...) takes one series per role.  For each
role, :func:`select_roles` keeps the series that fit the model (modality, dimensionality, one
channel) and whose header contradicts none of the role's rules, and ranks them by the rules
their header satisfies.  Safe by default, nothing is guessed:

* a required role that no series fills, two series that fit a role equally well, or one series
  that is the best for two roles withhold the model, and the reason names the role and the
  candidates;
* the user can pin a role to a series (``medsight analyze STUDY --role FLAIR=7``: series
  number, SeriesInstanceUID or exact description); a pin that names no series, or a series
  the model cannot read, withholds the model too;
* an optional role the study lacks fills its channel with the value the role declares.

:func:`stack_roles` then loads each series, checks that it shares the reference series' Frame
of Reference (or, where a Frame of Reference is not stated, that it overlaps it in patient
space) and resamples it onto the reference role's grid (SimpleITK, linear), and stacks the
channels in the declared order.  The report's series line says which series filled each role.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np

from medsight.analysis.selection import Selection, effective_modality, is_generic, mismatch
from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.io.study import SeriesEntry, Study
from medsight.models.package import ModelPackage
from medsight.models.roles import RoleSpec, ordered_roles, reference_role, role_evidence
from medsight.models.spec import InputSpec

__all__ = [
    "MIN_COVERAGE",
    "RoleMatch",
    "Stacked",
    "check_pins",
    "parse_pins",
    "role_names",
    "select_roles",
    "series_label",
    "stack_roles",
]

#: Least share of the reference grid a role's series must cover (below: refused).
MIN_COVERAGE = 0.5
#: Below this share a report warning says how much of the channel is filled with zeros.
_FULL_COVERAGE = 0.95


@dataclasses.dataclass(frozen=True)
class RoleMatch:
    """The series chosen for one role (``entry`` None: an optional role not found)."""

    role: RoleSpec
    channel: int
    entry: SeriesEntry | None
    how: str


@dataclasses.dataclass(frozen=True)
class Stacked:
    """The model's input: the roles stacked as channels, or why they cannot be."""

    image: Image | None
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def series_label(entry: SeriesEntry) -> str:
    """``#7 'AX FLAIR'`` (series number and description), or the file's key.

    Examples
    --------
    >>> from pathlib import Path
    >>> series_label(SeriesEntry("t2.nii.gz", "", "t2.nii.gz", [], path=Path("t2.nii.gz")))
    "'t2.nii.gz'"
    """
    number = entry.dicom.header.get("SeriesNumber") if entry.dicom is not None else None
    text = f"'{entry.description or entry.key}'"
    return f"#{number} {text}" if number not in (None, "") else text


def _header(entry: SeriesEntry) -> Any:
    if entry.dicom is not None:
        return entry.dicom.header
    return {"SeriesDescription": entry.description}  # a file: its name is all it says


def _pinned(entry: SeriesEntry, value: str) -> bool:
    """Whether ``value`` names ``entry``: series number, SeriesInstanceUID, key or description."""
    value = value.strip()
    if value == entry.key or value.lower() == entry.description.strip().lower():
        return True
    if entry.dicom is None:
        return False
    number = entry.dicom.header.get("SeriesNumber")
    return value == entry.dicom.series_instance_uid or (
        number not in (None, "") and value == str(number)
    )


def parse_pins(values: Sequence[str]) -> dict[str, str]:
    """``["FLAIR=7", "T1=1.2.3"]`` -> ``{"FLAIR": "7", "T1": "1.2.3"}`` (``--role`` options).

    Raises
    ------
    InvalidInputError
        A value without ``ROLE=SERIES``, or a role given twice.

    Examples
    --------
    >>> parse_pins(["FLAIR=7", " t1 = 1.2.3 "])
    {'FLAIR': '7', 't1': '1.2.3'}
    """
    out: dict[str, str] = {}
    for value in values:
        role, sep, series = value.partition("=")
        role, series = role.strip(), series.strip()
        if not sep or not role or not series:
            raise InvalidInputError(
                f"--role {value}", "is not ROLE=SERIES", hint="e.g. --role FLAIR=7 (series number)"
            )
        if role.lower() in {k.lower() for k in out}:
            raise InvalidInputError(f"--role {value}", f"role {role} is pinned twice")
        out[role] = series
    return out


def check_pins(pins: Mapping[str, str], packages: Sequence[ModelPackage]) -> None:
    """Refuse pins whose role no package declares (a misspelt ``--role`` would do nothing).

    Raises
    ------
    InvalidInputError
        The unknown role names and the roles the packages declare.
    """
    declared = {r.name.lower(): r.name for p in packages for r in p.spec.input.roles}
    unknown = [name for name in pins if name.lower() not in declared]
    if unknown:
        known = ", ".join(sorted(declared.values())) or "none (no model takes several series)"
        raise InvalidInputError(
            f"--role {', '.join(unknown)}", f"names no role of the models; their roles: {known}"
        )


def _role_input(spec: InputSpec, role: RoleSpec) -> InputSpec:
    """What one role's series must fit: one channel, the role's modality, any size (resampled)."""
    return spec.model_copy(
        update={
            "channels": 1,
            "roles": [],
            "modalities": [role.modality] if role.modality else spec.modalities,
            "series_description_pattern": None,
            "min_size": None,
            "max_size": None,
        }
    )


def _pin_choice(
    study: Study, role: RoleSpec, value: str, spec: InputSpec, modality: str | None
) -> tuple[SeriesEntry | None, str, list[str]]:
    """The pinned series, or a problem; with warnings when its header disagrees."""
    found = [e for e in study if _pinned(e, value)]
    listing = ", ".join(series_label(e) for e in study)
    if len(found) != 1:
        what = "no series" if not found else f"{len(found)} series"
        return None, f"--role {role.name}={value} names {what} of this study ({listing})", []
    entry = found[0]
    problem = mismatch(_role_input(spec, role), entry, modality)
    if problem is not None:
        return (
            None,
            f"--role {role.name}={value}: {series_label(entry)} does not fit ({problem})",
            [],
        )
    _ok, against = role_evidence(role, _header(entry))
    warnings = (
        [
            f"role {role.name} was pinned to {series_label(entry)} although its header says: "
            + "; ".join(against)
        ]
        if against
        else []
    )
    return entry, "", warnings


@dataclasses.dataclass(frozen=True)
class _Choice:
    entry: SeriesEntry | None
    how: str = ""
    problem: str = ""
    #: the problem is that no series fills the role (an optional role may then be filled)
    absent: bool = False


def _auto_choice(study: Study, role: RoleSpec, spec: InputSpec, modality: str | None) -> _Choice:
    """The series that fits ``role`` best and how it was chosen, or why none is chosen."""
    scored: list[tuple[SeriesEntry, list[str]]] = []
    reasons: list[str] = []
    for entry in study:
        problem = mismatch(_role_input(spec, role), entry, modality)
        if problem is not None:
            reasons.append(f"{series_label(entry)}: {problem}")
            continue
        ok, against = role_evidence(role, _header(entry))
        if against:
            reasons.append(f"{series_label(entry)}: {'; '.join(against)}")
        elif role.has_rules and not ok:
            reasons.append(f"{series_label(entry)}: nothing in its header says it is {role.name}")
        else:
            scored.append((entry, ok))
    if not scored:
        why = "; ".join(reasons) if reasons else "the study has no series"
        return _Choice(None, problem=f"no series fills role {role.name} ({why})", absent=True)
    best = max(len(ok) for _e, ok in scored)
    top = [(e, ok) for e, ok in scored if len(ok) == best]
    if len(top) > 1:
        names = ", ".join(series_label(e) for e, _ok in top)
        return _Choice(
            None,
            problem=f"{len(top)} series fit role {role.name} equally well ({names}); none is "
            f"guessed: pin one with --role {role.name}=SERIES_NUMBER",
        )
    entry, ok = top[0]
    return _Choice(entry, ", ".join(ok) or "the only series that fits")


def select_roles(
    study: Study,
    package: ModelPackage,
    *,
    modality: str | None = None,
    pins: Mapping[str, str] | None = None,
) -> Selection:
    """Choose a series for every role of ``package`` (its ``InputSpec.roles``), or say why not.

    The :class:`~medsight.analysis.selection.Selection` runs on the reference role's series
    and carries every :class:`RoleMatch` in channel order; it is *skipped* when no series of
    the study fits the model at all (another kind of study) and *withheld* (``withhold``
    names the roles and candidates) when a role is missing, ambiguous or badly pinned.
    """
    spec = package.spec.input
    pinned = {k.lower(): v for k, v in (pins or {}).items()}
    fitting = [
        e
        for e in study
        if any(mismatch(_role_input(spec, r), e, modality) is None for r in spec.roles)
    ]
    if not fitting:
        reasons = "; ".join(
            f"{series_label(e)}: {mismatch(_role_input(spec, spec.roles[0]), e, modality)}"
            for e in study
        )
        return Selection(package, None, f"no matching series ({reasons or 'no series'})")
    matches: list[RoleMatch] = []
    problems: list[str] = []
    warnings: list[str] = []
    for channel, role in ordered_roles(spec.roles):
        if role.name.lower() in pinned:
            value = pinned[role.name.lower()]
            entry, problem, notes = _pin_choice(study, role, value, spec, modality)
            choice = _Choice(entry, f"pinned with --role {role.name}={value}", problem)
            warnings += notes
        else:
            choice = _auto_choice(study, role, spec, modality)
        if choice.entry is None and choice.absent and not role.required:
            how = f"not found: channel {channel} filled with {role.fill:g} (an optional role)"
            warnings.append(
                f"optional role {role.name}: {choice.problem}; channel filled with {role.fill:g}"
            )
            matches.append(RoleMatch(role, channel, None, how))
        elif choice.entry is None:  # missing, ambiguous (never guessed) or badly pinned
            problems.append(choice.problem)
        else:
            matches.append(RoleMatch(role, channel, choice.entry, choice.how))
    used: dict[str, list[str]] = {}
    for m in matches:
        if m.entry is not None:
            used.setdefault(m.entry.key, []).append(m.role.name)
    for key, names in used.items():
        if len(names) > 1:
            entry = next(m.entry for m in matches if m.entry is not None and m.entry.key == key)
            problems.append(
                f"{series_label(entry)} is the best fit for roles {' and '.join(names)}; one "
                f"series never fills two roles (pin them with --role)"
            )
    problems += _modality_problems(spec, matches, modality)
    ref_name = reference_role(spec.roles).name
    ref = next((m for m in matches if m.role.name == ref_name and m.entry is not None), None)
    shown = ref.entry if ref is not None else fitting[0]
    reason = _describe(matches, ref_name)
    if problems:
        return Selection(package, shown, reason, tuple(warnings), "; ".join(problems))
    return Selection(package, shown, reason, tuple(warnings), roles=tuple(matches))


def _modality_problems(
    spec: InputSpec, matches: Sequence[RoleMatch], modality: str | None
) -> list[str]:
    """A model made for named modalities is withheld on inputs that do not say theirs."""
    out = []
    for m in matches:
        if m.entry is None:
            continue
        wanted = [x.upper() for x in ([m.role.modality] if m.role.modality else spec.modalities)]
        shown = effective_modality(m.entry, modality)
        if wanted and is_generic(shown) and shown not in wanted:
            out.append(
                f"role {m.role.name}: {series_label(m.entry)} does not say its modality "
                f"({shown or 'none'}); the model takes {', '.join(wanted)} (declare it with "
                "--modality if it is one of them)"
            )
    return out


def _describe(matches: Sequence[RoleMatch], ref_name: str) -> str:
    parts = [
        f"{m.role.name} <- {series_label(m.entry)} ({m.how})"
        if m.entry is not None
        else f"{m.role.name} <- {m.how}"
        for m in matches
    ]
    return f"roles: {'; '.join(parts) or 'none found'}; grid of {ref_name}"


# --- stacking ---------------------------------------------------------------------------------


def _frame_of_reference(image: Image) -> str | None:
    return image.source.frame_of_reference_uid if image.source is not None else None


def _same_grid(a: Image, b: Image) -> bool:
    return a.shape[: a.spatial_ndim] == b.shape[: b.spatial_ndim] and bool(
        np.allclose(a.affine, b.affine, atol=1e-4)
    )


def stack_roles(
    selection: Selection, reference: Image, cache: MutableMapping[str, Image] | None = None
) -> Stacked:
    """The selection's roles resampled onto ``reference`` and stacked in channel order.

    ``reference`` is the loaded image of ``selection.series`` (the reference role's series);
    ``cache`` maps entry keys to loaded images (filled as series are read).  A selection
    without roles gives ``reference`` itself.  A series in another Frame of Reference than the
    reference, or covering less than :data:`MIN_COVERAGE` of its grid, is refused (a problem:
    the model is withheld); a series with channels of its own (colour) too.
    """
    from medsight.transforms.resample import grid_coverage, resample_to_grid

    if not selection.roles:
        return Stacked(reference)
    cache = {} if cache is None else cache
    ref_key = selection.series.key if selection.series is not None else None
    ref_match = next(
        (m for m in selection.roles if m.entry is not None and m.entry.key == ref_key), None
    )
    if ref_match is None or ref_match.entry is None:
        raise InvalidInputError("roles", "the selection's series fills no role")
    ref_name = ref_match.role.name
    if reference.has_channels:
        return Stacked(None, problems=(f"role {ref_name}: the series has channels of its own",))
    shape = reference.shape[: reference.spatial_ndim]
    channels: list[np.ndarray] = []
    notes: list[str] = []
    problems: list[str] = []
    ref_for = _frame_of_reference(reference)
    for m in selection.roles:
        if m.entry is None:
            channels.append(np.full(shape, m.role.fill, np.float32))
            continue
        if m.entry.key == ref_key:
            channels.append(np.asarray(reference.array, np.float32))
            continue
        image = cache.get(m.entry.key) or m.entry.load()
        cache[m.entry.key] = image
        label = series_label(m.entry)
        if image.has_channels:
            problems.append(f"role {m.role.name}: {label} has channels of its own")
            continue
        if _same_grid(image, reference):
            channels.append(np.asarray(image.array, np.float32))
            continue
        moving_for = _frame_of_reference(image)
        if ref_for and moving_for and ref_for != moving_for:
            problems.append(
                f"role {m.role.name}: {label} is in another Frame of Reference than {ref_name} "
                "(its patient coordinates are not comparable); register the series first"
            )
            continue
        coverage = grid_coverage(image, reference)
        if coverage < MIN_COVERAGE:
            problems.append(
                f"role {m.role.name}: {label} covers {coverage:.0%} of the {ref_name} grid in "
                f"patient space (at least {MIN_COVERAGE:.0%} needed)"
            )
            continue
        if not (ref_for and moving_for):
            notes.append(
                f"role {m.role.name}: no shared Frame of Reference is stated; {label} was "
                f"aligned to {ref_name} by patient coordinates alone"
            )
        if coverage < _FULL_COVERAGE:
            notes.append(
                f"role {m.role.name}: {label} covers {coverage:.0%} of the {ref_name} grid; "
                "the rest of its channel is 0"
            )
        channels.append(np.asarray(resample_to_grid(image, reference).array, np.float32))
        notes.append(f"role {m.role.name}: {label} resampled onto the {ref_name} grid (linear)")
    if problems:
        return Stacked(None, tuple(notes), tuple(problems))
    filled = {m.role.name: (series_label(m.entry) if m.entry else m.how) for m in selection.roles}
    stacked = reference.with_array(
        np.stack(channels, axis=-1), meta={**reference.meta, "roles": filled}
    )
    return Stacked(stacked, tuple(notes))


def role_names(roles: Sequence[RoleSpec]) -> list[str]:
    """Role names in channel order.

    Examples
    --------
    >>> role_names([RoleSpec(name="T2", channel=1), RoleSpec(name="FLAIR", channel=0)])
    ['FLAIR', 'T2']
    """
    return [r.name for _c, r in ordered_roles(roles)]
