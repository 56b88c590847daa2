"""Which series of a study each model package should run on, and why others are skipped.

A package declares what it accepts in its :class:`~medsight.models.spec.InputSpec`: modalities,
dimensionality, channels and optionally a SeriesDescription pattern.  An input that does not
say its modality (a PNG, a screen capture) is not guessed to be one: a model made for named
modalities is withheld on it until the user declares the modality.  A series matches when all
of them fit; among several matches the one whose description matches the pattern wins, then the
one with the most slices.  A package with no matching series is skipped with the reason, never
run on an image it was not made for.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from medsight.io.study import SeriesEntry, Study
from medsight.models.package import ModelPackage
from medsight.models.spec import InputSpec

if TYPE_CHECKING:
    from medsight.analysis.roles import RoleMatch

__all__ = ["Selection", "effective_modality", "is_generic", "mismatch", "select_series"]

#: Modalities that are photographs or exports whose DICOM/file modality is unreliable.
_GENERIC = {"", "OT", "SC", "XC"}


@dataclasses.dataclass(frozen=True)
class Selection:
    """The outcome for one package: the chosen series, or why none was chosen."""

    package: ModelPackage
    series: SeriesEntry | None
    reason: str
    warnings: tuple[str, ...] = ()
    #: Set when the series fits the headers' match but the model must not answer on it (the
    #: input does not say its modality): the model is reported as withheld with this reason.
    withhold: str = ""
    #: A multi-input model (``InputSpec.roles``): the series of each role in channel order;
    #: ``series`` is then the reference role's (:mod:`medsight.analysis.roles`).
    roles: tuple[RoleMatch, ...] = ()

    @property
    def runs(self) -> bool:
        """Whether the package will run."""
        return self.series is not None


def is_generic(modality: str) -> bool:
    """Whether a modality code says nothing about the acquisition (files, screen captures).

    Examples
    --------
    >>> is_generic("OT"), is_generic(""), is_generic("US")
    (True, True, False)
    """
    return modality.upper() in _GENERIC


def effective_modality(entry: SeriesEntry, declared: str | None = None) -> str:
    """The entry's modality, or the one the user declared when the entry's says nothing."""
    if is_generic(entry.modality) and declared:
        return declared.upper()
    return entry.modality.upper()


def _ndim_and_channels(entry: SeriesEntry) -> tuple[int, int]:
    if entry.dicom is not None:
        series = entry.dicom
        ndim = 2 if series.spatial_ndim == 3 and series.shape[2] == 1 else series.spatial_ndim
        samples = int(series.header.get("SamplesPerPixel", 1) or 1)
        photometric = str(series.header.get("PhotometricInterpretation", ""))
        channels = 3 if samples == 3 or photometric == "PALETTE COLOR" else series.n_channels
        return ndim, channels
    return -1, -1  # files: known only once loaded


def mismatch(spec: InputSpec, entry: SeriesEntry, declared: str | None = None) -> str | None:
    """Why ``entry`` does not fit ``spec`` (None when it fits, as far as headers tell).

    ``declared`` is the modality the user gives for inputs that carry none (PNG, JPEG, NIfTI).
    Grey and colour are interchangeable only when the modality is known to fit (an ultrasound
    stored as RGB); a colour photograph of unknown modality never feeds a grey-scale model.

    Examples
    --------
    >>> from pathlib import Path
    >>> entry = SeriesEntry("x", "CT", "chest", [], path=Path("x.png"))
    >>> mismatch(InputSpec(modalities=["MR"], spatial_ndim=3), entry)
    'modality CT is not one of MR'
    """
    wanted = [m.upper() for m in spec.modalities]
    modality = effective_modality(entry, declared)
    if wanted and modality not in wanted and not is_generic(modality):
        return f"modality {modality or 'unknown'} is not one of {', '.join(wanted)}"
    ndim, channels = _ndim_and_channels(entry)
    if ndim > 0 and ndim != spec.spatial_ndim:
        return f"it is {ndim}D, the model needs {spec.spatial_ndim}D"
    convertible = (spec.channels, channels) in ((3, 1), (1, 3)) and not is_generic(modality)
    if channels > 0 and channels != spec.channels and not convertible:
        return f"it has {channels} channel(s), the model needs {spec.channels}"
    part = _body_part(entry)
    wanted_parts = [b.upper() for b in spec.body_parts]
    if part and wanted_parts and part not in wanted_parts:
        return f"body part {part} is not one of {', '.join(wanted_parts)}"
    return _size_mismatch(spec, entry)


def _size_mismatch(spec: InputSpec, entry: SeriesEntry) -> str | None:
    """The header's matrix size against the intended size range (files: known once loaded)."""
    from medsight.models.scope import size_problems

    if entry.dicom is None:
        return None
    problems = size_problems(spec, entry.dicom.shape[: entry.dicom.spatial_ndim])
    return "; ".join(problems) if problems else None


def _named(entry: SeriesEntry) -> bool:
    """Whether the series states a description (DICOM only; a file name is not one)."""
    return entry.dicom is None or bool(str(entry.dicom.header.get("SeriesDescription", "")))


def _body_part(entry: SeriesEntry) -> str:
    if entry.dicom is None:
        return ""
    return str(entry.dicom.header.get("BodyPartExamined", "") or "").upper()


def _body_part_warnings(spec: InputSpec, entry: SeriesEntry) -> tuple[str, ...]:
    if spec.body_parts and entry.dicom is not None and not _body_part(entry):
        return (
            f"the image does not state its body part; the model is made for "
            f"{', '.join(spec.body_parts)} images",
        )
    return ()


def select_series(
    study: Study,
    packages: Sequence[ModelPackage],
    *,
    modality: str | None = None,
    roles: Mapping[str, str] | None = None,
) -> list[Selection]:
    """Choose a series for every package (or give the reason it cannot run).

    ``modality`` is the user's declaration for inputs that carry none (see :func:`mismatch`).
    A package that declares series roles gets one series per role
    (:func:`medsight.analysis.roles.select_roles`); ``roles`` pins a role to a series
    (role name -> series number, SeriesInstanceUID or description).

    Raises
    ------
    InvalidInputError
        ``roles`` names a role no package declares.
    """
    from medsight.analysis.roles import check_pins, select_roles

    check_pins(roles or {}, packages)
    out = []
    for package in packages:
        spec = package.spec.input
        if spec.roles:
            out.append(select_roles(study, package, modality=modality, pins=roles))
            continue
        fits = []
        reasons = []
        for entry in study:
            problem = mismatch(spec, entry, modality)
            if problem is None:
                fits.append(entry)
            else:
                reasons.append(f"{entry.description or entry.key}: {problem}")
        if not fits:
            why = "; ".join(reasons) if reasons else "the study has no series"
            out.append(Selection(package, None, f"no matching series ({why})"))
            continue
        pattern = spec.series_description_pattern
        by_description = False
        if pattern:
            preferred = [e for e in fits if re.search(pattern, e.description, re.IGNORECASE)]
            unnamed = [e for e in fits if not _named(e)]
            if preferred:
                fits, by_description = preferred, True
            elif len(unnamed) == 1:  # descriptions removed (de-identified): the header fits
                fits = unnamed
            else:
                names = ", ".join(e.description or e.key for e in fits)
                why = (
                    f"{len(unnamed)} series without a description fit equally well ({names}); "
                    "none is guessed"
                    if unnamed
                    else f"no series description matches /{pattern}/ ({names})"
                )
                out.append(Selection(package, None, why))
                continue
        chosen = max(fits, key=lambda e: len(e.files))
        shown = effective_modality(chosen, modality) or "modality unknown"
        note = f"series '{chosen.description or chosen.key}' ({shown})"
        if len(fits) > 1:
            note += f", chosen among {len(fits)} matching series as the largest"
        warnings = _body_part_warnings(spec, chosen)
        if pattern and not by_description:
            warnings += (
                "the series has no description (removed by de-identification?); it was chosen "
                "as the only series whose modality, dimensionality, channels and size fit the "
                "model",
            )
        withhold = ""
        shown = effective_modality(chosen, modality)
        wanted = [m.upper() for m in spec.modalities]
        if wanted and is_generic(shown) and shown not in wanted:
            withhold = (
                f"the input does not say its modality ({shown or 'none'}); the model is made for "
                f"{', '.join(spec.modalities)} images only (declare the modality with "
                "--modality if it is one of them)"
            )
        out.append(Selection(package, chosen, note, warnings, withhold))
    return out
