"""``analyze``: one study through every chosen model to a report folder.

Output folder::

    report.json, report.html          the Findings, impression, models, warnings (offline page)
    overlay_<model>.png               image with contours / heatmap for each model that ran
    mask_<model>.nii.gz               segmentation masks on the input grid (any input)
    heatmap_<model>.nii.gz            heatmaps (Grad-CAM ...) on the input grid, for the viewer
    dicom/seg_<model>.dcm             DICOM SEG per segmentation model     (DICOM input only)
    dicom/sr_<series>.dcm             TID 1500 Comprehensive 3D SR per series (DICOM input only)
    dicom/sc_<model>.dcm              Secondary Capture of each overlay    (DICOM input only)
    fhir_bundle.json                  FHIR R4 DiagnosticReport + Observations + ImagingStudy
    zmap_*.nii.gz, clusters.csv, activation_*.png, dicom/seg_fmri_*.dcm, dicom/pm_fmri_*.dcm
                                      with events (fMRI GLM; analysis.functional_report)

Every DICOM object is checked with dciodvfy when it is installed; errors become report warnings
(and :attr:`AnalysisResult.dicom_errors`), so an invalid object is never silently delivered.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medsight.analysis.prior import PriorStudy, compare_with_prior, load_prior, resolve_priors
from medsight.analysis.roles import stack_roles
from medsight.analysis.runners import ModelOutput, run_package
from medsight.analysis.selection import effective_modality, is_generic, select_series
from medsight.analysis.studies import StudyGroup, slug, split_studies
from medsight.analysis.timings import StageTimes, recording, stage
from medsight.core.errors import InvalidInputError, MedsightError
from medsight.core.findings import Finding
from medsight.core.image import Image
from medsight.io.atomic import atomic_path, write_text_atomic
from medsight.io.study import SeriesEntry, Study, read_study
from medsight.models.package import ModelPackage
from medsight.models.spec import Task
from medsight.reporting.report import ModelRun, Report, ReportImage, impression, write_report
from medsight.reporting.sources import source_header_problems

__all__ = ["AnalysisResult", "NoModelApplies", "StudyOutcome", "analyze", "analyze_studies"]


class NoModelApplies(InvalidInputError):
    """No model ran or withheld on the study: each was skipped or failed (``runs`` says why).

    ``study`` holds the study's facts as the report shows them, so a caller (the service) can
    still write a report saying that no model applies when every model was skipped.
    """

    def __init__(
        self,
        where: str | os.PathLike[str] | None,
        problem: str,
        *,
        hint: str | None = None,
        runs: Sequence[ModelRun] = (),
        study: Mapping[str, Any] | None = None,
    ) -> None:
        self.runs = list(runs)
        self.study = dict(study or {})
        super().__init__(where, problem, hint=hint)


@dataclasses.dataclass
class AnalysisResult:
    """The report and where everything was written."""

    report: Report
    out_dir: Path
    dicom_errors: dict[str, list[str]]
    #: Wall seconds per stage (:mod:`medsight.analysis.timings`), also in ``timings.json``.
    timings: dict[str, Any] = dataclasses.field(default_factory=dict)


def _spacing_fact(entry: SeriesEntry) -> str:
    """Where the pixel size comes from, or that it is unknown (then sizes are in pixels)."""
    if entry.dicom is not None:
        source = entry.dicom.spacing_source
        if source is None:
            return "unknown (no calibration in the header): sizes are in pixels"
        spacing = ", ".join(f"{abs(float(v)):.4g}" for v in _pixel_size(entry.dicom.affine))
        return f"{spacing} mm from {source}"
    if entry.path is not None and entry.modality == "OT":
        return "unknown (image files carry no physical size): sizes are in pixels"
    return "from the file header"


def _pixel_size(affine: NDArray[np.float64]) -> list[float]:
    return [float(np.linalg.norm(affine[:3, k])) for k in range(2)]


def _study_facts(entries: Sequence[SeriesEntry]) -> dict[str, str]:
    first = next((e for e in entries if e.dicom is not None), None)
    if first is None or first.dicom is None:
        facts = {"kind": "files", "series": str(len(entries))}
        if entries:
            facts["Pixel spacing"] = _spacing_fact(entries[0])
        return facts
    hdr = first.dicom.header
    return {
        "StudyInstanceUID": str(hdr.get("StudyInstanceUID", "")),
        "PatientID": str(hdr.get("PatientID", "")),
        "StudyDate": str(hdr.get("StudyDate", "")),
        "StudyDescription": str(hdr.get("StudyDescription", "")),
        "Modalities": ", ".join(sorted({e.modality for e in entries})),
        "Series": str(len(entries)),
        "Pixel spacing": _spacing_fact(first),
    }


def analyze(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    packages: Sequence[ModelPackage] | None = None,
    *,
    explain: bool = True,
    dicom_outputs: bool = True,
    modality: str | None = None,
    tta: bool = False,
    progress: Callable[[str], None] | None = None,
    denoise: bool = False,
    roles: Mapping[str, str] | None = None,
    prior: str | os.PathLike[str] | None = None,
    allow_identity_mismatch: bool = False,
    events: str | os.PathLike[str] | None = None,
    glm: Any = None,
    attributes: Mapping[str, str] | None = None,
    fhir: str | os.PathLike[str] | None = None,
    fhir_identifier_system: str | None = None,
) -> AnalysisResult:
    """Analyse the one study at ``path`` with ``packages`` (default: the model zoo).

    ``modality`` declares the modality of inputs that carry none (PNG, JPEG, NIfTI), so only
    the models made for it run.  ``tta`` turns on mirror test-time augmentation for
    segmentation models (the mean over every flip of the spatial axes, as nnU-Net predicts).
    ``denoise`` adds the zoo's denoisers for the study's modalities (a "Denoising" picture:
    before, after, difference, and the denoised volume as NIfTI; no findings); without it,
    the default zoo runs only models that report findings.  ``roles`` pins the series roles
    of multi-input models (role name -> series number, SeriesInstanceUID or description; see
    :mod:`medsight.analysis.roles`).  ``events`` (a BIDS events.tsv) adds the functional
    section: a first-level GLM on the study's 4D BOLD series with ``glm`` options
    (:class:`medsight.analysis.functional.GlmOptions`; see
    :mod:`medsight.analysis.functional_report`).  ``prior`` (an earlier study of the same
    patient; refused for another patient unless ``allow_identity_mismatch``, or when not
    earlier) adds the "Comparison with prior" section and CHANGE findings
    (:mod:`medsight.analysis.prior`).  ``attributes`` (what the caller states, e.g.
    ``{"sex": "F"}``) and ``fhir`` (the patient's record as a FHIR Bundle, used only when its
    Patient identifier matches the study's Patient ID, :mod:`medsight.analysis.record`) reach
    the families: group thresholds, risk models' clinical variables (``fhir_identifier_system``:
    match only identifiers of that system).  Guidelines whose inputs the findings provide are
    applied (:mod:`medsight.analysis.guidelines`): a separate "Guideline suggestion" section, SR
    container and FHIR Observation.  A path holding several studies
    (or several identity-less files) is refused: use
    :func:`analyze_studies`, which writes one report folder per study.

    Raises
    ------
    MedsightError
        Unreadable input, several studies, series of two patients in one study, or no package
        could run on it (the message lists why each was skipped).
    """
    started = time.perf_counter()
    study = read_study(path)  # before creating anything: bad input leaves no output folder
    read_s = time.perf_counter() - started
    groups = split_studies(study)
    if len(groups) > 1:
        listing = "; ".join(g.label for g in groups[:5])
        more = f" and {len(groups) - 5} more" if len(groups) > 5 else ""
        raise InvalidInputError(
            path,
            f"holds {len(groups)} studies ({listing}{more}); one report never covers two",
            hint="analyse them with analyze_studies (the command line does: one report folder "
            "per study)",
        )
    if groups[0].problem:
        raise InvalidInputError(path, groups[0].problem)
    packages, zoo_warnings = _resolve_packages(packages, denoise)
    options = _Options(explain, dicom_outputs, modality, tta, progress, zoo_warnings)
    options = dataclasses.replace(options, roles=tuple((roles or {}).items()))
    options = dataclasses.replace(options, events=events, glm=glm)
    options = dataclasses.replace(options, attributes=tuple((attributes or {}).items()), fhir=fhir)
    options = dataclasses.replace(options, fhir_identifier_system=fhir_identifier_system)
    options = dataclasses.replace(options, started=started, read_s=read_s)
    found = None
    if prior is not None:  # before creating anything: a refused prior leaves no output
        found = load_prior(prior, groups[0].study, allow_identity_mismatch=allow_identity_mismatch)
    return _analyze_study(groups[0].study, path, Path(out_dir), packages, options, found)


@dataclasses.dataclass
class StudyOutcome:
    """One study of a multi-study input: its result, or why it was not analysed."""

    group: StudyGroup
    out_dir: Path
    result: AnalysisResult | None = None
    error: str | None = None


def analyze_studies(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    packages: Sequence[ModelPackage] | None = None,
    *,
    explain: bool = True,
    dicom_outputs: bool = True,
    modality: str | None = None,
    tta: bool = False,
    progress: Callable[[str], None] | None = None,
    denoise: bool = False,
    roles: Mapping[str, str] | None = None,
    prior: str | os.PathLike[str] | None = None,
    allow_identity_mismatch: bool = False,
    events: str | os.PathLike[str] | None = None,
    glm: Any = None,
    attributes: Mapping[str, str] | None = None,
    fhir: str | os.PathLike[str] | None = None,
    fhir_identifier_system: str | None = None,
) -> list[StudyOutcome]:
    """Analyse every study at ``path``, one report folder each; never two patients in one.

    One study: its outputs go to ``out_dir`` itself (as :func:`analyze`).  Several: to
    ``out_dir/<study folder>/`` (named by study date and UID, or by file name), with
    ``index.json`` and ``index.html`` listing each study, its patient, impression and folder.
    A study that cannot be analysed (unreadable, two patients, no model fits) is listed with
    its reason and the others still finish.

    Raises
    ------
    MedsightError
        The path itself is unreadable or holds nothing readable; with a single study, any
        error of that study (as :func:`analyze`).
    """
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    study = read_study(path)
    read_s = time.perf_counter() - started
    groups = split_studies(study)
    packages, zoo_warnings = _resolve_packages(packages, denoise)  # once for every study
    out = Path(out_dir)
    options = _Options(explain, dicom_outputs, modality, tta, progress, zoo_warnings)
    options = dataclasses.replace(options, roles=tuple((roles or {}).items()))
    options = dataclasses.replace(options, events=events, glm=glm)
    options = dataclasses.replace(options, attributes=tuple((attributes or {}).items()), fhir=fhir)
    options = dataclasses.replace(options, fhir_identifier_system=fhir_identifier_system)
    options = dataclasses.replace(options, started=started, read_s=read_s)
    priors = resolve_priors(groups, prior, allow_identity_mismatch)  # given, or found here
    outcomes = []
    for n, group in enumerate(groups, 1):
        target = out if len(groups) == 1 else out / group.folder
        outcome = StudyOutcome(group, target)
        found, refused, note = priors[n - 1]
        if len(groups) > 1:
            say(f"study {n}/{len(groups)}: {group.label}")
        if len(groups) == 1:  # one study: its errors are the command's errors
            if group.problem:
                raise InvalidInputError(path, group.problem)
            if refused is not None:
                raise refused
            outcome.result = _analyze_study(
                group.study, path, target, packages, options, found, note
            )
        elif group.problem:
            outcome.error = group.problem
        elif refused is not None:
            outcome.error = str(refused)
        else:
            try:
                outcome.result = _analyze_study(
                    group.study, path, target, packages, options, found, note
                )
            except MedsightError as err:
                outcome.error = str(err)
        outcomes.append(outcome)
    if len(groups) > 1:
        _write_index(out, outcomes)
    return outcomes


def _write_index(out: Path, outcomes: list[StudyOutcome]) -> None:
    from medsight.reporting.report import write_index

    write_index(
        [
            {
                "folder": o.group.folder,
                "study_instance_uid": o.group.study_uid,
                "patient_id": o.group.patient_id,
                "status": "analysed" if o.result is not None else "not analysed",
                "impression": o.result.report.impression if o.result is not None else "",
                "error": o.error or "",
            }
            for o in outcomes
        ],
        out,
    )


@dataclasses.dataclass(frozen=True)
class _Options:
    explain: bool
    dicom_outputs: bool
    modality: str | None
    tta: bool
    progress: Callable[[str], None] | None
    zoo_warnings: tuple[str, ...] = ()  # problems met loading the default zoo
    roles: tuple[tuple[str, str], ...] = ()  # --role pins: role name, series
    events: str | os.PathLike[str] | None = None  # fMRI events.tsv: the functional section
    glm: Any = None  # GlmOptions of the functional section (None: defaults)
    attributes: tuple[tuple[str, str], ...] = ()  # --attribute KEY=VALUE: the caller's facts
    fhir: str | os.PathLike[str] | None = None  # --fhir: the patient's record (FHIR Bundle)
    fhir_identifier_system: str | None = None  # match Patient.identifier of this system only
    started: float | None = None  # perf_counter() before the input was scanned (timings)
    read_s: float = 0.0  # seconds the scan of the whole input took (timings: "read: scan")


def _resolve_packages(
    packages: Sequence[ModelPackage] | None, denoise: bool = False
) -> tuple[Sequence[ModelPackage], tuple[str, ...]]:
    """The packages to run and the zoo's loading problems.

    Default: the zoo's packages whose family runs by default (findings), plus its denoisers
    when ``denoise``; packages given explicitly all run (their family decides what they give).
    """
    if packages is not None:
        return packages, ()
    from medsight.families import family_for
    from medsight.models.zoo import zoo_packages

    found, problems = zoo_packages()
    chosen = [
        p
        for p in found
        if family_for(p.spec.task).by_default or (denoise and p.spec.task is Task.DENOISING)
    ]
    return chosen, tuple(f"model zoo: {p}" for p in problems)


def _analyze_study(
    study: Study,
    path: str | os.PathLike[str],
    out: Path,
    packages: Sequence[ModelPackage],
    options: _Options,
    prior: PriorStudy | None = None,
    prior_note: str = "",
) -> AnalysisResult:
    """:func:`_run_study`, timed per stage: ``AnalysisResult.timings`` and ``timings.json``.

    The scan of the input is counted once per study ("read: scan"; with several studies in
    one input it is the scan of all of them, which they share).
    """
    times = StageTimes(start=options.started)
    times.add("read: scan", options.read_s)
    with recording(times):
        result = _run_study(study, path, out, packages, options, prior, prior_note)
        result.timings = times.as_dict()  # written just below: the file write is not counted
    write_text_atomic(out / "timings.json", json.dumps(result.timings, indent=1))
    return result


def _run_study(
    study: Study,
    path: str | os.PathLike[str],
    out: Path,
    packages: Sequence[ModelPackage],
    options: _Options,
    prior: PriorStudy | None = None,
    prior_note: str = "",
) -> AnalysisResult:
    explain, dicom_outputs, tta = options.explain, options.dicom_outputs, options.tta
    modality = options.modality
    say = options.progress or (lambda _msg: None)
    attributes, clinical, record_note = _patient_record(study, options)  # refused: no output
    out.mkdir(parents=True, exist_ok=True)
    warnings = [f"unreadable file skipped: {b}" for b in study.bad_files]
    warnings += [record_note] if record_note else []
    warnings += options.zoo_warnings
    if not packages and options.events is None:
        raise InvalidInputError("model zoo", "holds no usable model package")
    selections = select_series(study, packages, modality=modality, roles=dict(options.roles))
    runs: list[ModelRun] = []
    findings: list[Finding] = []
    images: list[ReportImage] = []
    outputs: dict[str, str] = {}
    per_series: dict[str, list[_Ran]] = {}
    loaded: dict[str, Image] = {}
    for sel in selections:
        pkg, spec = sel.package, sel.package.spec
        base = {
            "model_id": pkg.id,
            "task": spec.task.value,
            "metrics": spec.metrics,
            "intended_use": spec.intended_use,
            "limitations": spec.limitations,
        }
        if sel.series is None:
            runs.append(ModelRun(status="skipped", reason=sel.reason, **base))
            continue
        if sel.withhold:
            runs.append(ModelRun(status="withheld", series=sel.reason, reason=sel.withhold, **base))
            continue
        say(f"running {pkg.id} on {sel.reason}")
        try:
            if sel.series.key not in loaded:
                with stage(f"read: load {sel.series.description or sel.series.key}"):
                    loaded[sel.series.key] = sel.series.load()
            image = loaded[sel.series.key]
            known = not is_generic(effective_modality(sel.series, modality))
            header = sel.series.dicom.header if sel.series.dicom is not None else None
            stacked = stack_roles(sel, image, loaded)  # a multi-input model: every role
            if stacked.image is None:
                reason = "; ".join(stacked.problems)
                runs.append(ModelRun(status="withheld", series=sel.reason, reason=reason, **base))
                continue
            with stage(f"model {pkg.id}"):
                result = run_package(
                    pkg,
                    stacked.image,
                    explain=explain,
                    colour_to_grey=known,
                    tta=tta,
                    header=header,
                    attributes=attributes,
                    clinical=clinical,
                )
        except InvalidInputError as err:  # the image does not fit the model: not its job
            runs.append(ModelRun(status="skipped", series=sel.reason, reason=str(err), **base))
            continue
        except MedsightError as err:
            runs.append(ModelRun(status="failed", series=sel.reason, reason=str(err), **base))
            continue
        plaus = result.plausibility
        model_warnings = [*sel.warnings, *stacked.notes] + (list(plaus.warnings) if plaus else [])
        ood = {"ood_score": result.ood_score, "ood_threshold": result.ood_threshold}
        if result.withheld:  # outside the intended use: no finding, picture or object
            runs.append(
                ModelRun(
                    status="withheld",
                    series=sel.reason,
                    reason="; ".join(result.withheld),
                    plausibility_score=plaus.score if plaus else None,
                    warnings=model_warnings,
                    **ood,
                    **base,
                )
            )
            continue
        warnings += [f"{pkg.id}: {w}" for w in model_warnings]
        runs.append(
            ModelRun(
                status="ran",
                series=sel.reason,
                plausibility_score=plaus.score if plaus else None,
                warnings=model_warnings,
                **ood,
                **base,
            )
        )
        if result.derived is not None:  # an image model (denoising): a picture and a file
            images.append(_comparison(out, pkg, image, result.derived))
            from medsight.io import write_image

            derived_file = f"denoised_{slug(spec.name)}.nii.gz"
            write_image(result.derived, out / derived_file)
            outputs[f"denoised {pkg.id}"] = derived_file
            continue
        findings += result.findings
        with stage("output: overlays"):
            shown, picture = _overlay(out, pkg, image, result)
        images.append(shown)
        per_series.setdefault(sel.series.key, []).append((pkg, image, result, picture))
        if result.mask is not None:
            from medsight.io import write_image

            mask_file = f"mask_{slug(spec.name)}.nii.gz"
            with stage("output: NIfTI masks / heatmaps"):
                write_image(result.mask, out / mask_file)
            outputs[f"mask {pkg.id}"] = mask_file
        if result.heatmap is not None:  # the viewer shows it slice by slice
            from medsight.io import write_image

            heat_file = f"heatmap_{slug(spec.name)}.nii.gz"
            with stage("output: NIfTI masks / heatmaps"):
                write_image(result.heatmap, out / heat_file)
            outputs[f"heatmap {pkg.id}"] = heat_file
    if options.events is not None:  # fMRI: GLM on the BOLD series (analysis.functional_report)
        from medsight.analysis.functional_report import functional_section

        say("fitting the fMRI GLM")
        fmri = functional_section(
            study, out, options.events, options.glm, dicom_outputs=dicom_outputs
        )
        runs.append(fmri.run)
        findings += fmri.findings
        images += fmri.images
        warnings += fmri.warnings
        outputs.update(fmri.outputs)
    if not any(r.status in ("ran", "withheld") for r in runs):
        reasons = "; ".join(f"{r.model_id}: {r.reason}" for r in runs)
        raise NoModelApplies(
            path,
            f"no model could run on this input ({reasons})",
            runs=runs,
            study=_study_facts(list(study)),
        )
    withheld = [(r.model_id, r.reason) for r in runs if r.status == "withheld"]
    summary = impression(findings, withheld=withheld)
    dicom_errors: dict[str, list[str]] = {}
    entries = {e.key: e for e in study}
    warnings += [prior_note] if prior_note else []
    comparison = None
    if prior is not None:  # longitudinal: CHANGE findings and the comparison section
        say("comparing with the prior study")
        ran = [(entries[k], p, i, r) for k, rs in per_series.items() for p, i, r, _ in rs]
        comparison = compare_with_prior(prior, study, ran, modality=modality, tta=tta)
        findings += comparison.findings
        warnings += comparison.warnings
        summary += comparison.sentence()
    from medsight.analysis.guidelines import for_series, suggest

    ran = {p.spec.name: (p, entries[k].modality) for k, rs in per_series.items() for p, *_ in rs}
    suggestions, guideline_notes = suggest(  # decision support: a separate, marked section
        findings, ran, clinical=clinical, attributes=attributes, prior_compared=prior is not None
    )
    warnings += guideline_notes
    applied = [s for s in suggestions if s.applied]
    if dicom_outputs:
        for key, results in per_series.items():
            if entries[key].dicom is not None:
                say(f"writing DICOM SEG / SR / SC for series {entries[key].description or key}")
                changes = comparison.series_parts(key) if comparison else ([], None)
                own = for_series(applied, findings, [f for r in results for f in r[2].findings])
                with stage("output: DICOM SEG / SR / SC"):
                    dicom_errors.update(
                        _write_dicom(out, entries[key], results, outputs, *changes, suggestions=own)
                    )
                warnings += source_header_problems(results[0][1])  # left out, never guessed
    for name, errs in dicom_errors.items():
        warnings += [f"{name}: {e}" for e in errs]
    facts = _study_facts(list(study))
    prior_study = prior.study if prior is not None else None
    with stage("output: FHIR"):
        outputs["FHIR bundle"] = _write_fhir(
            out, findings, study, facts, summary, prior_study, suggestions=applied
        )
    report = Report(
        input=str(path),
        study=facts,
        models=runs,
        findings=findings,
        impression=summary,
        warnings=warnings,
        images=images,
        outputs=outputs,
        comparison=comparison.section if comparison else None,
        guidelines=suggestions,
        clinical_context=_context_rows(clinical),
    )
    with stage("output: report JSON / HTML"):
        write_report(report, out)
    return AnalysisResult(report, out, dicom_errors)


def _patient_record(study: Study, options: _Options) -> tuple[dict[str, str], Any, str]:
    """The caller's attributes, the study patient's clinical context (``--fhir``, matched on
    the Patient ID; see :mod:`medsight.analysis.record`) and the line saying how."""
    attributes = dict(options.attributes)
    if options.fhir is None:
        return attributes, None, ""
    from medsight.analysis.record import check_attributes, record_for_study

    first = next((e for e in study if e.dicom is not None), None)
    header = first.dicom.header if first is not None and first.dicom is not None else None
    system = options.fhir_identifier_system
    clinical, note = record_for_study(options.fhir, header, identifier_system=system)
    check_attributes(attributes, clinical)
    notes = [note, *(f"clinical record: {w}" for w in clinical.warnings)]
    return attributes, clinical, "; ".join(notes)


def _context_rows(clinical: Any) -> list[dict[str, str]]:
    """The record's facts for the report (none without a record)."""
    if clinical is None:
        return []
    from medsight.clinical.context import context_rows

    return context_rows(clinical)


#: One package run on one image, with its overlay picture (rows, columns, RGB).
_Ran = tuple[ModelPackage, Image, ModelOutput, NDArray[np.uint8]]


def _overlay(
    out: Path, pkg: ModelPackage, image: Image, result: ModelOutput
) -> tuple[ReportImage, NDArray[np.uint8]]:
    """Render, save as PNG for the report, and return the picture (reused for the SC)."""
    from PIL import Image as PILImage

    from medsight.reporting.overlay import render_overlay

    colours = {lab.index: lab.color for lab in pkg.spec.labels if lab.color}
    names = {lab.index: lab.name for lab in pkg.spec.labels}
    if result.picture is not None:  # the family's own picture (detection: numbered marks)
        picture = result.picture
    else:
        picture = render_overlay(
            image, mask=result.mask, heatmap=result.heatmap, colours=colours, names=names
        )
    name = f"overlay_{slug(pkg.spec.name)}.png"
    with atomic_path(out / name) as tmp:
        PILImage.fromarray(picture).save(tmp, format="PNG")
    what = "segmentation contours" if result.mask is not None else "Grad-CAM heatmap"
    if result.picture is not None:
        what = "detections, numbered by score, with their class and score"
    if result.heatmap is not None and not np.any(np.asarray(result.heatmap.array) > 1e-6):
        what += " (empty: no image region raised the score of the reported label)"
    return ReportImage(file=name, caption=f"{pkg.id}: {what}"), picture


def _comparison(out: Path, pkg: ModelPackage, image: Image, derived: Image) -> ReportImage:
    """Before / after / difference of a derived image, saved as PNG for the report."""
    from PIL import Image as PILImage

    from medsight.reporting.overlay import render_comparison

    name = f"denoised_{slug(pkg.spec.name)}.png"
    with atomic_path(out / name) as tmp:
        PILImage.fromarray(render_comparison(image, derived)).save(tmp, format="PNG")
    caption = (
        f"{pkg.id}: {derived.meta.get('derivation_description') or 'denoised'} - before, after "
        "and the difference (one grey window for both; the difference mid grey = unchanged)"
    )
    return ReportImage(file=name, caption=caption)


def _save_dicom(dataset: Any, path: Path) -> None:
    """Write a DICOM object under a temporary name, then rename (never half-written)."""
    with atomic_path(path) as tmp:
        dataset.save_as(tmp)


def _write_dicom(
    out: Path,
    entry: SeriesEntry,
    results: list[_Ran],
    outputs: dict[str, str],
    changes: Sequence[Finding] = (),
    prior_image: Image | None = None,
    suggestions: Sequence[Any] = (),
) -> dict[str, list[str]]:
    """SEG, SC and SR of one series; ``changes`` (CHANGE findings) go into the SR, which then
    references ``prior_image``'s instances (when it came from DICOM)."""
    from medsight.reporting.dicom_seg import build_segmentation, segment_numbers
    from medsight.reporting.dicom_sr import build_sr
    from medsight.reporting.secondary_capture import build_secondary_capture
    from medsight.reporting.sources import source_datasets
    from medsight.reporting.validate import DciodvfyMissingError, dciodvfy_errors

    folder = out / "dicom"
    folder.mkdir(exist_ok=True)
    image = results[0][1]
    source = source_datasets(image)
    written: dict[str, Path] = {}
    segs, numbers, findings = {}, {}, []
    for pkg, _img, result, picture in results:
        name = slug(pkg.spec.name)
        findings += result.findings
        if result.mask is not None:
            mask = result.mask.with_array(np.asarray(result.mask.array).astype(np.uint8))
            seg = build_segmentation(
                mask,
                image,
                pkg.spec.labels,
                algorithm_name=pkg.spec.name,
                algorithm_version=pkg.spec.version,
            )
            segs[pkg.spec.name] = seg
            numbers[pkg.spec.name] = segment_numbers(pkg.spec.labels)
            written[f"DICOM SEG {pkg.id}"] = folder / f"seg_{name}.dcm"
            _save_dicom(seg, written[f"DICOM SEG {pkg.id}"])
        sc = build_secondary_capture(picture, source[0])
        written[f"DICOM SC {pkg.id}"] = folder / f"sc_{name}.dcm"
        _save_dicom(sc, written[f"DICOM SC {pkg.id}"])
    findings += changes
    prior_source = source_datasets(prior_image) if prior_image and prior_image.source else []
    if findings:
        sr = build_sr(
            findings,
            source,
            segmentations=segs,
            segment_numbers=numbers,
            prior=prior_source,
            affine=image.affine,  # 3D detection regions: SCOORD3D in patient coordinates
            suggestions=suggestions,  # guideline suggestions: a separate container
        )
        written["DICOM SR"] = folder / f"sr_{slug(entry.description or entry.key)}.dcm"
        _save_dicom(sr, written["DICOM SR"])
    errors: dict[str, list[str]] = {}
    for label, file in written.items():
        outputs[label] = str(file.relative_to(out))
        try:
            errs = dciodvfy_errors(file)
        except DciodvfyMissingError:
            errors.setdefault("dciodvfy", ["not installed: DICOM outputs were not validated"])
            continue
        if errs:
            errors[str(file.relative_to(out))] = errs
    return errors


def _write_fhir(
    out: Path,
    findings: list[Finding],
    study: Study,
    facts: dict[str, str],
    conclusion: str,
    prior: Study | None = None,
    suggestions: Sequence[Any] = (),
) -> str:
    from medsight.reporting.fhir import build_bundle

    info = _study_info(study, facts)
    prior_info = _study_info(prior, _study_facts(list(prior))) if prior is not None else None
    bundle = build_bundle(
        findings, info, conclusion=conclusion, prior=prior_info, suggestions=suggestions
    )
    write_text_atomic(out / "fhir_bundle.json", json.dumps(bundle, indent=2) + "\n")
    return "fhir_bundle.json"


def _study_info(study: Study, facts: dict[str, str]) -> Any:
    """The FHIR ImagingStudy facts of a study."""
    from medsight.reporting.fhir import StudyInfo

    entries = [e for e in study if e.dicom is not None]
    return StudyInfo(
        study_instance_uid=facts.get("StudyInstanceUID", ""),
        patient_id=facts.get("PatientID", ""),
        modality=entries[0].modality if entries else "OT",
        series=tuple(
            (e.dicom.series_instance_uid, e.modality, len(e.files)) for e in entries if e.dicom
        ),
        description=facts.get("StudyDescription", ""),
        started=_iso_date(facts.get("StudyDate", "")),
    )


def _iso_date(text: str) -> str | None:
    """DICOM DA ``YYYYMMDD`` -> ``YYYY-MM-DD`` (None when it is not a date)."""
    import datetime

    try:
        return datetime.datetime.strptime(text.strip(), "%Y%m%d").date().isoformat()
    except ValueError:
        return None
