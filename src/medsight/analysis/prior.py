"""``analyze`` with a prior study: find it, check it, segment it, register it, compare.

The prior is given (``medsight analyze STUDY --prior PRIOR``) or found among the studies of
one input: the latest earlier study with the same Patient ID (:func:`find_priors`).  Either way
:func:`medsight.clinical.longitudinal.check_prior` must accept it (same patient: ID, name,
birth date; an earlier StudyDate); an explicit prior that fails is an error, an automatically
found one only a warning (the study is then reported without comparison).

:func:`compare_with_prior` runs each segmentation package that produced a mask on the current
study on the prior too (on the series it selects there), registers the prior image onto the
current one and turns the label-by-label comparison into CHANGE Findings plus the report's
"Comparison with prior" section.  A failed registration is reported as such, with its quality
figures, and gives no change.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Sequence
from typing import Any

from medsight.analysis.runners import ModelOutput, run_package
from medsight.analysis.selection import select_series
from medsight.analysis.studies import StudyGroup, split_studies
from medsight.clinical.longitudinal import (
    RECIST_NOTE,
    LabelInfo,
    StudyIdentity,
    change_findings,
    check_prior,
    compare_masks,
    register,
)
from medsight.core.errors import InvalidInputError, MedsightError
from medsight.core.findings import Finding
from medsight.core.image import Image
from medsight.core.significance import Significance
from medsight.io.study import SeriesEntry, Study, read_study
from medsight.models.package import ModelPackage

__all__ = [
    "Comparison",
    "PriorStudy",
    "accept_prior",
    "compare_with_prior",
    "find_priors",
    "load_prior",
    "resolve_priors",
]

#: Label meanings whose structures are tracked as lesions (RECIST-style category).
_LESION_MEANINGS = (Significance.ACTIONABLE, Significance.INDETERMINATE, Significance.BENIGN)


def study_identity(study: Study, label: str) -> StudyIdentity:
    """The identity and date of a study from its first DICOM series (none for plain files)."""
    first = next((e for e in study if e.dicom is not None), None)
    return StudyIdentity.from_header(first.dicom.header if first and first.dicom else None, label)


@dataclasses.dataclass(frozen=True)
class PriorStudy:
    """An accepted prior: its series, identity and the warnings its check gave."""

    study: Study
    identity: StudyIdentity
    warnings: tuple[str, ...] = ()


def load_prior(
    path: str | os.PathLike[str],
    current: Study,
    *,
    allow_identity_mismatch: bool = False,
) -> PriorStudy:
    """Read the prior at ``path`` and check it against the ``current`` study.

    Raises
    ------
    MedsightError
        Unreadable, several studies, or refused by
        :func:`~medsight.clinical.longitudinal.check_prior`.
    """
    group = StudyGroup("current", current, "", "", "")
    ((found, error, _note),) = resolve_priors([group], path, allow_identity_mismatch)
    if error is not None:
        raise error
    assert found is not None
    return found


def accept_prior(
    prior: Study, current: Study, label: str, allow_identity_mismatch: bool = False
) -> PriorStudy:
    """``prior`` checked against ``current`` (raises as :func:`check_prior`)."""
    identity = study_identity(prior, label)
    warnings = check_prior(
        study_identity(current, "the current study"),
        identity,
        allow_identity_mismatch=allow_identity_mismatch,
    )
    return PriorStudy(prior, identity, tuple(warnings))


def find_priors(groups: Sequence[StudyGroup]) -> dict[int, tuple[PriorStudy | None, str]]:
    """For each group index, its automatically found prior and, when none, why (or "").

    The prior is the latest study of the same Patient ID with an earlier StudyDate; it must
    pass the full identity check.  When it does not (same ID, another name or birth date),
    no earlier study is used: the ID itself is then in doubt, and the note says why.
    """
    ids = [study_identity(g.study, g.label) for g in groups]
    out: dict[int, tuple[PriorStudy | None, str]] = {}
    for n, (group, me) in enumerate(zip(groups, ids, strict=True)):
        candidates = [
            k
            for k, other in enumerate(ids)
            if k != n
            and not groups[k].problem
            and me.patient_id
            and other.patient_id == me.patient_id
            and other.study_date is not None
            and me.study_date is not None
            and other.study_date < me.study_date
        ]
        if group.problem or not candidates:
            out[n] = (None, "")
            continue
        best = max(candidates, key=lambda k: ids[k].study_date or datetime.date.min)
        try:
            out[n] = (accept_prior(groups[best].study, group.study, groups[best].label), "")
        except MedsightError as err:
            out[n] = (None, f"no comparison with {groups[best].label}: {err}")
    return out


@dataclasses.dataclass
class Comparison:
    """What the comparison adds to a report."""

    findings: list[Finding]  # CHANGE findings
    section: dict[str, Any]  # the report's "Comparison with prior" section
    warnings: list[str]
    by_series: dict[str, list[Finding]]  # current series key -> its CHANGE findings
    prior_images: dict[str, Image]  # current series key -> the prior image compared with it

    def series_parts(self, key: str) -> tuple[list[Finding], Image | None]:
        """The CHANGE findings made on the current series ``key`` and the prior image."""
        return self.by_series.get(key, []), self.prior_images.get(key)

    def sentence(self) -> str:
        """One sentence for the impression (empty when nothing was compared)."""
        date = self.section["prior_date"]
        if not self.section["rows"]:
            if not self.section["problems"]:
                return ""
            return f" Comparison with the prior of {date}: not made (see the comparison section)."
        parts = []
        for row in self.section["rows"]:
            category = row["category"].split(" ")[0]
            extra = f", RECIST-style {category}" if category != "-" else ""
            parts.append(
                f"{row['finding']} {row['prior']} -> {row['current']} ({row['percent']}{extra})"
            )
        return f" Compared with the prior of {date}: " + "; ".join(parts) + "."


def _labels(package: ModelPackage) -> list[LabelInfo]:
    from medsight.analysis.output import label_code

    return [
        LabelInfo(
            lab.index, lab.name, label_code(lab, package), lab.significance in _LESION_MEANINGS
        )
        for lab in package.spec.labels
        if lab.index != 0
    ]


def compare_with_prior(
    prior: PriorStudy,
    current: Study,
    ran: Sequence[tuple[SeriesEntry, ModelPackage, Image, ModelOutput]],
    *,
    modality: str | None = None,
    tta: bool = False,
    affine: bool = False,
) -> Comparison:
    """Compare every segmentation of the current study (``ran``) with the same model's on the
    prior; see the module docstring."""
    me = study_identity(current, "the current study")
    assert me.study_date is not None and prior.identity.study_date is not None  # checked
    days = float((me.study_date - prior.identity.study_date).days)
    section: dict[str, Any] = {
        "prior_date": prior.identity.study_date.isoformat(),
        "prior_study": prior.identity.study_uid or prior.identity.label,
        "interval_days": int(days),
        "registrations": [],
        "rows": [],
        "problems": [],
        "statement": RECIST_NOTE,
    }
    comparison = Comparison([], section, list(prior.warnings), {}, {})
    loaded: dict[str, Image] = {}
    for entry, pkg, image, result in ran:
        if result.mask is None:
            continue
        try:
            sel = select_series(prior.study, [pkg], modality=modality)[0]
            if sel.series is None or sel.withhold:
                raise InvalidInputError("prior", sel.withhold or sel.reason)
            prior_image = loaded.get(sel.series.key) or sel.series.load()
            loaded[sel.series.key] = prior_image
            header = sel.series.dicom.header if sel.series.dicom is not None else None
            then = run_package(pkg, prior_image, explain=False, tta=tta, header=header)
            if then.withheld or then.mask is None:
                raise InvalidInputError("prior", "; ".join(then.withheld) or "no mask")
            reg = register(image, prior_image, affine=affine)
        except MedsightError as err:
            section["problems"].append(f"{pkg.id}: not compared: {err}")
            continue
        section["registrations"].append(
            {"model": pkg.id, "series": entry.description or entry.key, **reg.summary()}
        )
        if not reg.ok:
            section["problems"].append(
                f"{pkg.id}: registration of the prior failed ({reg.problem}); no change reported"
            )
            continue
        try:
            changes = compare_masks(result.mask, then.mask, reg, _labels(pkg), days)
        except MedsightError as err:
            section["problems"].append(f"{pkg.id}: not compared: {err}")
            continue
        found = change_findings(
            changes,
            model_id=pkg.spec.name,
            model_version=pkg.spec.version,
            prior_date=prior.identity.study_date,
            source=image.source,
            prior_source=prior_image.source,
        )
        section["rows"] += [{"model": pkg.id, **c.row()} for c in changes]
        comparison.findings += found
        comparison.by_series.setdefault(entry.key, []).extend(found)
        comparison.prior_images[entry.key] = prior_image
    if not section["registrations"] and not section["problems"]:
        section["problems"].append(
            "no model segmented this study, so nothing was compared (only segmentation findings "
            "are compared with a prior)"
        )
    comparison.warnings += section["problems"]
    return comparison


def resolve_priors(
    groups: Sequence[StudyGroup],
    prior: str | os.PathLike[str] | None,
    allow_identity_mismatch: bool = False,
) -> list[tuple[PriorStudy | None, MedsightError | None, str]]:
    """Per group: its prior, the error refusing an explicit ``prior``, and a note (why an
    automatically found prior was not used).  No explicit prior: :func:`find_priors`."""
    if prior is None:
        found = find_priors(groups)
        return [(found[n][0], None, found[n][1]) for n in range(len(groups))]
    prior_groups = split_studies(read_study(prior))
    out: list[tuple[PriorStudy | None, MedsightError | None, str]] = []
    for group in groups:
        try:
            if len(prior_groups) != 1:
                raise InvalidInputError(
                    f"prior {prior}", f"holds {len(prior_groups)} studies; a prior is one study"
                )
            if prior_groups[0].problem:
                raise InvalidInputError(f"prior {prior}", prior_groups[0].problem)
            accepted = accept_prior(
                prior_groups[0].study, group.study, str(prior), allow_identity_mismatch
            )
            out.append((accepted, None, ""))
        except MedsightError as err:
            out.append((None, err, ""))
    return out
