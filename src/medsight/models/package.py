"""`ModelPackage`: a trained model as a folder anyone can inspect, verify and load.

Layout::

    name/
      model.json           ModelSpec (architecture, input, preprocessing, labels, metrics ...)
      weights.safetensors  the network's state dict
      weights.sha256       hex digest of weights.safetensors
      MODEL_CARD.md        intended use, limits, data and its license, metrics

Loading checks the digest and validates ``model.json`` (a segmentation package's preprocessing
against its ``plan.json``); any mismatch is a clear :class:`PackageError` naming the file.
Saving writes into a temporary folder and renames it, so a half-written package never exists
under its final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from medsight.core.errors import InvalidInputError, MedsightError
from medsight.models.calibration import constant_outputs, is_constant_map
from medsight.models.roles import ordered_roles, reference_role
from medsight.models.spec import ModelSpec, Task

if TYPE_CHECKING:
    import torch

__all__ = ["ModelPackage", "PackageError", "render_model_card"]

SPEC_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
DIGEST_FILE = "weights.sha256"
CARD_FILE = "MODEL_CARD.md"


class PackageError(MedsightError, ValueError):
    """A model package is missing a file, fails its checksum or has an invalid spec."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _plan_preprocessing(root: Path, spec: ModelSpec, where: Path | None = None) -> ModelSpec:
    """``spec`` with a segmentation package's preprocessing taken from its ``plan.json``.

    See :meth:`ModelPackage.load` for the rule; an error names ``where`` (default ``root``).
    """
    from medsight.models.seg_plan import PLAN_FILE, SegmentationPlan

    plan_path = root / PLAN_FILE
    if spec.task is not Task.SEGMENTATION or not plan_path.is_file():
        return spec
    plan = SegmentationPlan.load(plan_path)
    planned = plan.preprocessing(spec.input.channels)
    written = spec.preprocessing
    if written == planned:
        return spec
    if written == plan.legacy_preprocessing(spec.input.channels):
        return spec.model_copy(update={"preprocessing": planned})
    raise PackageError(
        where or root,
        f"{SPEC_FILE} preprocessing {written.model_dump(mode='json')} contradicts {PLAN_FILE}, "
        f"which inference follows: {planned.model_dump(mode='json')}",
        hint=f"set preprocessing in {SPEC_FILE} to the plan's, or retrain the package",
    )


class ModelPackage:
    """A verified model package on disk.

    Use :meth:`load` to open one and :meth:`save` to write one.
    """

    def __init__(self, path: Path, spec: ModelSpec, digest: str) -> None:
        self._path = path
        self._spec = spec
        self._digest = digest

    @property
    def path(self) -> Path:
        """The package folder."""
        return self._path

    @property
    def spec(self) -> ModelSpec:
        """The validated ``model.json``."""
        return self._spec

    @property
    def sha256(self) -> str:
        """Digest of the weights file."""
        return self._digest

    @property
    def id(self) -> str:
        """``name@version``."""
        return f"{self._spec.name}@{self._spec.version}"

    def __repr__(self) -> str:
        return (
            f"ModelPackage({self.id!r}, task={self._spec.task.value!r}, path={str(self._path)!r})"
        )

    @classmethod
    def of_task(
        cls, package: ModelPackage | str | os.PathLike[str], task: Task, noun: str
    ) -> ModelPackage:
        """``package`` (a ModelPackage or its folder, :meth:`load`-ed) if it predicts ``task``.

        Raises
        ------
        InvalidInputError
            It predicts another task: "is a <task> model, not <noun>".
        """
        pkg = package if isinstance(package, ModelPackage) else cls.load(package)
        if pkg.spec.task is not task:
            raise InvalidInputError(pkg.path, f"is a {pkg.spec.task.value} model, not {noun}")
        return pkg

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelPackage:
        """Open and verify a package folder.

        A segmentation package's ``plan.json`` is the truth about its preprocessing: its
        ``model.json`` ``preprocessing`` must be the plan's
        (:meth:`~medsight.models.seg_plan.SegmentationPlan.preprocessing`, with the input's
        channels).  Packages written before that rule hold what older trainers wrote
        (:meth:`~medsight.models.seg_plan.SegmentationPlan.legacy_preprocessing`: ``zscore``
        over all channels for a ``zscore_nonzero`` or ``zscore`` plan, the raw statistics for
        CT); they load with the plan's spec in :attr:`spec`, silently, because inference always
        followed the plan.  Any other preprocessing contradicts the plan and is refused.

        Raises
        ------
        PackageError
            Missing files, a checksum mismatch, an invalid ``model.json``, or a segmentation
            ``model.json`` whose preprocessing contradicts its ``plan.json``.
        InvalidInputError
            An unreadable or invalid ``plan.json``.
        """
        root = Path(path)
        if not root.is_dir():
            raise PackageError(root, "is not a model package folder")
        for name in (SPEC_FILE, WEIGHTS_FILE, DIGEST_FILE):
            if not (root / name).is_file():
                raise PackageError(root / name, "is missing from the model package")
        try:
            spec = ModelSpec.model_validate_json((root / SPEC_FILE).read_text(encoding="utf-8"))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "model.json"
            raise PackageError(root / SPEC_FILE, f"invalid field {where}: {first['msg']}") from None
        except (ValueError, OSError) as exc:
            raise PackageError(root / SPEC_FILE, f"cannot be read: {exc}") from None
        spec = _plan_preprocessing(root, spec)
        expected = (root / DIGEST_FILE).read_text(encoding="utf-8").split()[0].strip().lower()
        actual = _sha256(root / WEIGHTS_FILE)
        if actual != expected:
            raise PackageError(
                root / WEIGHTS_FILE,
                f"sha256 {actual[:12]}... does not match {DIGEST_FILE} ({expected[:12]}...)",
                hint="the weights were changed or corrupted; retrain or re-download the package",
            )
        return cls(root, spec, actual)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network weights (verified again against the digest)."""
        from safetensors.torch import load_file

        weights = self._path / WEIGHTS_FILE
        if _sha256(weights) != self._digest:
            raise PackageError(weights, "changed on disk since the package was opened")
        return load_file(str(weights))

    def build_network(self) -> torch.nn.Module:
        """Instantiate the architecture from the registry and load the weights (eval mode)."""
        from medsight.models.registry import build_network

        net = build_network(self._spec.architecture)
        try:
            net.load_state_dict(self.state_dict(), strict=True)
        except RuntimeError as exc:
            raise PackageError(
                self._path / WEIGHTS_FILE,
                f"weights do not fit architecture {self._spec.architecture.name!r}: "
                f"{str(exc).splitlines()[0]}",
            ) from None
        return net.eval()

    @classmethod
    def save(
        cls,
        path: str | os.PathLike[str],
        spec: ModelSpec,
        state_dict: Mapping[str, torch.Tensor],
        *,
        card: str | None = None,
        extra_files: Mapping[str, str | bytes] | None = None,
        overwrite: bool = False,
    ) -> ModelPackage:
        """Write a package atomically and return it, verified.

        Parameters
        ----------
        card : str, optional
            Markdown model card; rendered from ``spec`` when omitted.
        extra_files : mapping, optional
            More files to include (e.g. ``plan.json``, ``training_log.csv``).
        overwrite : bool
            Replace an existing package at ``path``.
        """
        from safetensors.torch import save_file

        final = Path(path)
        if final.exists() and not overwrite:
            raise PackageError(final, "already exists", hint="pass overwrite=True or another path")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
            save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"medsight_model": spec.name})
            digest = _sha256(tmp / WEIGHTS_FILE)
            (tmp / DIGEST_FILE).write_text(f"{digest}  {WEIGHTS_FILE}\n", encoding="utf-8")
            (tmp / SPEC_FILE).write_text(
                json.dumps(spec.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
            )
            (tmp / CARD_FILE).write_text(card or render_model_card(spec), encoding="utf-8")
            for name, content in (extra_files or {}).items():
                target = tmp / name
                if target.resolve().parent != tmp.resolve():
                    raise PackageError(name, "extra file names must not contain folders")
                if isinstance(content, bytes):
                    target.write_bytes(content)
                else:
                    target.write_text(content, encoding="utf-8")
            _plan_preprocessing(tmp, spec, final)  # a contradicting plan.json: nothing written
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return cls.load(final)


def _calibration_line(spec: ModelSpec) -> str:
    cal = spec.calibration
    if cal is None and spec.ensemble is not None:
        return "per member: temperature scaling, then the probabilities averaged (see Ensemble)"
    if cal is None:
        return f"temperature {spec.temperature}" if spec.temperature else "none"
    text = cal.method.value
    if cal.method.value == "temperature":
        text += f" {cal.params['temperature']:.4g}"
    if not cal.converged:
        text += " (fit did not converge)"
    if cal.n:
        text += f", chosen on {cal.n} validation cases by held-out NLL"
    if cal.reliability is not None and cal.ece_before is not None:
        text += f"; ECE {cal.ece_before:.3f} uncalibrated, {cal.reliability.ece:.3f} out-of-fold"
    if is_constant_map(cal):
        text += (
            ". **WARNING: this map gives every input the same probability** (the network's "
            "outputs carried no usable information on the validation cases): the model cannot "
            "rank or discriminate cases"
        )
    return text


def scope_section(spec: ModelSpec) -> list[str]:
    """The model card's "Scope and abstention" lines: what the analysis gate withholds."""
    inp = spec.input
    rules = []
    if inp.grey_only:
        rules.append("colour content (colour or power Doppler, palette colour, colour graphics)")
    if inp.photometric:
        rules.append(f"photometric interpretations other than {', '.join(inp.photometric)}")
    if inp.min_size:
        rules.append(f"images smaller than {' x '.join(map(str, inp.min_size))} pixels")
    if inp.max_size:
        rules.append(f"images larger than {' x '.join(map(str, inp.max_size))} pixels")
    ood = spec.extra.get("ood")
    lines = ["## Scope and abstention", ""]
    lines.append(
        "- Withheld as outside the intended use: " + ("; ".join(rules) if rules else "none set")
    )
    if ood:
        lines.append(
            f"- Withheld as unlike the training data: Mahalanobis distance on the network's "
            f"features ({ood.get('layer', '')}) above {ood['threshold']:.4g}, set on "
            f"{ood['n_val']} validation images at a {ood['false_rejection_rate']:.0%} target "
            f"false-rejection rate ({ood.get('val_rejection_rate', float('nan')):.1%} there); "
            f"fitted on {ood['n_train']} training images"
        )
    else:
        lines.append("- No out-of-distribution reference: inputs are not checked for shift")
    from medsight.models.scope import package_problems

    if package_problems(spec):  # a classifier or binary risk model with a constant map
        lines.append(
            "- **Withheld on every image**: the calibration maps every input to the same "
            "probability, so the model cannot rank cases; retrain with more data or without "
            "calibration"
        )
    elif spec.task is Task.MULTILABEL:
        flat = constant_outputs(spec.calibration, spec.task, len(spec.labels))
        if flat:
            names = ", ".join(spec.label_names[k] for k in sorted(flat))
            lines.append(
                f"- **Withheld on every image for {names}**: the calibration maps every image "
                "to the same probability for these labels, so the model cannot rank cases on "
                "them"
            )
    return [*lines, ""]


#: Tasks whose packages decide at an operating threshold with calibrated probabilities.
_DECIDING_TASKS = (Task.BINARY, Task.MULTICLASS, Task.ORDINAL, Task.MULTILABEL)


def _regions_line(spec: ModelSpec) -> str:
    """The model card's line for a region-based segmentation package."""
    from medsight.models.seg_regions import format_regions

    regions = spec.extra["regions"]
    names = {lab.index: lab.name for lab in spec.labels}
    described = " ⊃ ".join(
        "{" + ", ".join(f"{v} {names.get(v, '?')}" for v in r) + "}" for r in regions
    )
    return (
        f"- Region-based training (nnU-Net): one sigmoid output per region, regions "
        f"{described} (`--regions {format_regions(regions)}`); the label map paints each "
        "region above p = 0.5 from the largest to the smallest with the label it adds"
    )


def render_model_card(spec: ModelSpec) -> str:
    """A Markdown model card from the spec (intended use, data, metrics, limits).

    Examples
    --------
    >>> from medsight.models.spec import (ArchitectureSpec, InputSpec, LabelSpec,
    ...     MetricValue, PreprocessingSpec, Task)
    >>> spec = ModelSpec(name="m", version="1", task=Task.BINARY,
    ...     architecture=ArchitectureSpec(name="smallcnn"),
    ...     input=InputSpec(spatial_ndim=2), preprocessing=PreprocessingSpec(),
    ...     labels=[LabelSpec(index=0, name="no"), LabelSpec(index=1, name="yes")],
    ...     metrics=[MetricValue(name="auc", value=0.9, ci_low=0.85, ci_high=0.94, split="test")])
    >>> "| auc | test | 0.900 (0.850 to 0.940) |" in render_model_card(spec)
    True
    """
    lines = [
        f"# Model card: {spec.name} {spec.version}",
        "",
        "**Preliminary research software. Outputs require review by a qualified clinician.**",
        "",
        "## Intended use",
        spec.intended_use or "Not stated.",
        "",
        "## Model",
        f"- Task: {spec.task.value}"
        + (f"; labels: {', '.join(spec.label_names)}" if spec.labels else ""),
        f"- Architecture: `{spec.architecture.name}` {json.dumps(spec.architecture.args)}",
        f"- Input: {spec.input.spatial_ndim}D, {spec.input.channels} channel(s), modalities "
        f"{', '.join(spec.input.modalities) or 'any'}"
        + (
            "; one series per channel, found by its role (in channel order: "
            f"{', '.join(r.name for _c, r in ordered_roles(spec.input.roles))}; grid of "
            f"{reference_role(spec.input.roles).name})"
            if spec.input.roles
            else ""
        ),
        f"- Preprocessing: {json.dumps(spec.preprocessing.model_dump(mode='json'))}",
    ]
    if spec.task in _DECIDING_TASKS:  # a decision and probabilities: classifiers only
        thresholds = json.dumps(spec.thresholds) if spec.thresholds else "argmax"
        lines += [
            f"- Operating thresholds: {thresholds}",
            f"- Calibration: {_calibration_line(spec)}",
        ]
        if spec.tta is not None:  # packages written before TTA have no line
            from medsight.models.tta import card_line

            lines.append(card_line(spec.tta))
    if spec.ensemble is not None and spec.task is Task.SEGMENTATION:
        ens = spec.ensemble
        lines.append(
            f"- K-fold ensemble: {len(ens.members)} members, member k held out fold k "
            f"(held-out cases {[m.n_val for m in ens.members]}); their softmax probabilities "
            f"averaged; post-processing and metrics from the {ens.threshold_fitted_on}; "
            f"{ens.explanations}"
        )
    elif spec.ensemble is not None:
        ens = spec.ensemble
        lines.append(
            f"- Ensemble: {len(ens.members)} members ({ens.method}; seeds "
            f"{[m.seed for m in ens.members]}), calibrated probabilities averaged, each "
            f"member's temperature ({', '.join(f'{m.temperature:.3g}' for m in ens.members)}) "
            f"fitted on its own validation cases; threshold fitted on the {ens.threshold_fitted_on}"
            f"; {ens.explanations}"
        )
    if spec.extra.get("regions"):
        lines.append(_regions_line(spec))
    if spec.extra.get("noise"):
        lines.append(f"- Noise model: {json.dumps(spec.extra['noise'])}")
    lines += [
        f"- Seed: {spec.seed if spec.seed is not None else 'not recorded'}",
        "",
        "## Training data",
    ]
    td = spec.training_data
    if td is None:
        lines.append("Not recorded.")
    else:
        lines += [
            f"- Data set: {td.dataset}",
            f"- Source: {td.source or 'not stated'}",
            f"- License: {td.license or 'not stated'}",
            f"- Cases per split: {json.dumps(td.n_cases)}",
            f"- Class counts: {json.dumps(td.class_counts)}",
        ]
    lines += ["", "## Metrics (95% confidence intervals)", ""]
    if spec.metrics:
        lines += ["| metric | split | value |", "|---|---|---|"]
        for m in spec.metrics:
            ci = f" ({m.ci_low:.3f} to {m.ci_high:.3f})" if m.ci_low is not None else ""
            lines.append(f"| {m.name} | {m.split} | {m.value:.3f}{ci} |")
    else:
        lines.append("None recorded.")
    lines += ["", "## Limitations", spec.limitations or "Not stated.", ""]
    lines += scope_section(spec)
    provenance = [
        f"- {what}: `{spec.extra[key]}`"
        for key, what in (("trained_by", "Trained by"), ("finalized_by", "Finalised by"))
        if spec.extra.get(key)
    ]
    if provenance:
        lines += ["## Provenance", *provenance, ""]
    return "\n".join(lines)
