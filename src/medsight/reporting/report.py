"""The preliminary report: a typed model, ``report.json`` and a self-contained ``report.html``.

Everything shown is rendered from :class:`~medsight.core.findings.Finding` objects and the model
packages' own metadata (intended use, validation metrics); images are embedded in the HTML as
data URIs so the page reads offline, alone.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medsight import __version__
from medsight.clinical.guideline_facts import GuidelineSuggestion
from medsight.core.findings import Finding, FindingKind
from medsight.core.operating import operating_text, probability_pair, threshold_phrase
from medsight.io.atomic import write_text_atomic
from medsight.io.html import write_html
from medsight.models.reliability import format_probability
from medsight.models.spec import MetricValue
from medsight.reporting.fhir_regions import region_text

__all__ = [
    "DISCLAIMER",
    "NO_MODEL_APPLIES",
    "ModelRun",
    "Report",
    "ReportImage",
    "finding_note",
    "headline_metrics",
    "impression",
    "no_model_impression",
    "write_index",
    "write_report",
]

DISCLAIMER = (
    "Preliminary AI output for research use. It is not a diagnosis and requires review by a "
    "qualified clinician before any clinical use."
)

#: How the impression of a study no model is made for begins (the worklist shows it).
NO_MODEL_APPLIES = "No model applies to this study"

#: This package's templates (``medsight/reporting/templates/``), for :mod:`medsight.io.html`.
_TEMPLATES = "medsight.reporting:"


class ModelRun(BaseModel):
    """What one model package did with this study."""

    model_config = ConfigDict(extra="forbid")

    model_id: str
    task: str
    #: ran; skipped (not made for this input: modality, dimensionality ...); withheld (made
    #: for this kind of study, but this input is outside its intended use or unlike its
    #: training data: no finding is shown); failed (an error).
    status: Literal["ran", "skipped", "withheld", "failed"]
    series: str | None = None
    reason: str = ""
    metrics: list[MetricValue] = Field(default_factory=list)
    intended_use: str = ""
    limitations: str = ""
    plausibility_score: float | None = None
    ood_score: float | None = None  # Mahalanobis distance on the network's features
    ood_threshold: float | None = None  # above it the output is withheld
    warnings: list[str] = Field(default_factory=list)


class ReportImage(BaseModel):
    """A picture beside the report (path relative to the report folder)."""

    file: str
    caption: str


class Report(BaseModel):
    """The whole report, as written to ``report.json``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    title: str = "medsight preliminary imaging report"
    generated: str = Field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    )
    medsight_version: str = __version__
    input: str
    study: dict[str, Any] = Field(default_factory=dict)
    models: list[ModelRun] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    impression: str = ""
    warnings: list[str] = Field(default_factory=list)
    images: list[ReportImage] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)
    #: Longitudinal comparison (medsight.analysis.prior): prior_date, prior_study,
    #: interval_days, registrations (quality per model), rows (finding, prior, current,
    #: change, percent, doubling_time, category), problems, statement.
    comparison: dict[str, Any] | None = None
    #: Guideline suggestions (decision support, not a diagnosis) and the guidelines not
    #: applied with what was missing (:mod:`medsight.clinical.guideline_facts`).
    guidelines: list[GuidelineSuggestion] = Field(default_factory=list)
    #: What the patient's record said (fact, value, source), when one was given (``--fhir``).
    clinical_context: list[dict[str, str]] = Field(default_factory=list)
    disclaimer: str = DISCLAIMER


def finding_note(finding: Finding) -> str:
    """The finding's note when it adds to its coded meaning, else ``""`` (say a name once).

    Examples
    --------
    >>> from medsight.core.codes import NEOPLASM
    >>> f = Finding(NEOPLASM, "m", "1", kind=FindingKind.CLASSIFICATION, note="neoplasm")
    >>> finding_note(f), finding_note(Finding(NEOPLASM, "m", "1", note="left lobe"))
    ('', 'left lobe')
    """
    note = (finding.note or "").strip()
    return "" if note.casefold() in finding.finding.meaning.casefold() else note


def impression(findings: list[Finding], withheld: Sequence[tuple[str, str]] = ()) -> str:
    """A suggested impression, one sentence per finding, hedged as AI output.

    ``withheld`` lists ``(model id, reason)`` of models that abstained; the impression says
    they gave no answer, so silence is never read as "normal".

    Examples
    --------
    >>> from medsight.core.codes import NEOPLASM
    >>> f = Finding(NEOPLASM, "m", "1", kind=FindingKind.CLASSIFICATION, probability=0.91,
    ...             positive=True)
    >>> impression([f])
    'AI suggests: Neoplasm present (probability 0.91).'
    >>> import dataclasses
    >>> impression([dataclasses.replace(f, probability=0.06, threshold=0.052)])
    'AI suggests: Neoplasm present (probability 0.06, positive at the operating threshold 0.05).'
    """
    abstained = ""
    if withheld:
        abstained = (
            " Withheld, no answer given: "
            + "; ".join(f"{model} ({reason.split(';')[0]})" for model, reason in withheld)
            + "."
        )
    if not findings:
        return "No AI findings were produced for this study." + abstained
    parts = []
    for f in findings:
        name = f.finding.meaning
        if f.kind == FindingKind.CLASSIFICATION:
            verdict = "present" if f.positive else "not suggested"
            prob = ""
            if f.probability is not None:  # the decision beside its operating point
                weak = ", from a weak model" if f.weak_model else ""
                prob = f" ({operating_text(f.probability, f.threshold, f.positive)}{weak})"
            parts.append(f"{name} {verdict}{prob}")
        elif f.kind == FindingKind.DETECTION:
            label = f" ({note})" if (note := finding_note(f)) else ""
            score = f.probability
            details = [f"score {format_probability(score)}"] if score is not None else []
            details += [
                f"{m.concept.meaning.lower()} {m.value:.3g} {m.unit_text}" for m in f.measurements
            ]
            parts.append(f"{name}{label} detected ({', '.join(details)})")
        else:
            label = f" ({note})" if (note := finding_note(f)) else ""
            values = ", ".join(
                f"{m.concept.meaning.lower()} {m.value:.3g} {m.unit_text}" for m in f.measurements
            )
            parts.append(f"{name}{label}: {values}" if values else f"{name}{label} segmented")
    return "AI suggests: " + "; ".join(parts) + "." + abstained


def no_model_impression(runs: Sequence[ModelRun]) -> str:
    """The impression of a study every model skipped: none is made for it (not a failure).

    Examples
    --------
    >>> no_model_impression([ModelRun(model_id="m", task="binary", status="skipped",
    ...                               reason="made for US, not CT")])
    'No model applies to this study; no AI finding was made. Skipped: m (made for US, not CT).'
    """
    skipped = "; ".join(f"{r.model_id} ({r.reason})" for r in runs)
    tail = f" Skipped: {skipped}." if skipped else ""
    return f"{NO_MODEL_APPLIES}; no AI finding was made.{tail}"


def headline_metrics(metrics: list[MetricValue], limit: int = 6) -> list[MetricValue]:
    """The metrics a reader needs first: overall (not per-class) values, on the test split
    when the package has test results, else on validation.

    Examples
    --------
    >>> ms = [MetricValue(name="auc", value=0.9, split="val"),
    ...       MetricValue(name="auc[0]", value=0.8, split="test"),
    ...       MetricValue(name="auc", value=0.88, split="test")]
    >>> [(m.name, m.split) for m in headline_metrics(ms)]
    [('auc', 'test')]
    """
    overall = [m for m in metrics if "[" not in m.name]
    test = [m for m in overall if m.split == "test"]
    return (test or overall)[:limit]


def _data_uri(path: Path) -> str:
    mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def write_index(rows: list[dict[str, str]], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``index.json`` and ``index.html`` listing the per-study reports of one input.

    Each row has ``folder``, ``study_instance_uid``, ``patient_id``, ``status`` ("analysed" or
    "not analysed"), ``impression`` and ``error``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "index.json", out / "index.html"
    write_text_atomic(json_path, json.dumps({"studies": rows}, indent=2) + "\n")
    write_html(html_path, _TEMPLATES + "index.html.j2", rows=rows, disclaimer=DISCLAIMER)
    return json_path, html_path


def write_report(report: Report, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` (images embedded) into ``out_dir``, atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    write_text_atomic(json_path, json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    images = [
        {"uri": _data_uri(out / img.file), "caption": img.caption}
        for img in report.images
        if (out / img.file).is_file()
    ]
    write_html(
        html_path,
        _TEMPLATES + "report.html.j2",
        r=report,
        images=images,
        headline_metrics=headline_metrics,
        finding_note=finding_note,
        format_probability=format_probability,
        probability_pair=probability_pair,
        threshold_phrase=threshold_phrase,
        region_text=region_text,
    )
    return json_path, html_path
