"""`RiskPredictor`: a risk package plus a patient's images and record -> outcome score.

A risk package (``task: risk``, written by :func:`medsight.training.risk.train_risk`) holds a
:class:`~medsight.models.fusion.RiskNet` with its frozen image encoder inside, the clinical
encoding fitted on training data and, for a binary outcome, the calibration fitted on
validation scores (``model.json`` ``extra["risk"]`` and ``calibration``).  Inference
reproduces training exactly: the encoder's preprocessing (``spec.preprocessing``), the
embedding (input of the encoder's last linear layer), the same clinical encoding, the same
visit padding (the last ``max_visits`` visits).

The helpers shared with training and evaluation live here too (inference sits below both):
:func:`visit_arrays` pads timelines into arrays, :func:`image_embeddings` computes and caches
the embedding of every image once.

Examples
--------
>>> import numpy as np
>>> from medsight.data.timeline import Outcome, PatientTimeline, Visit
>>> from medsight.models.clinical_encoding import ClinicalEncoder
>>> enc = ClinicalEncoder.fit([{"age": 50.0}, {"age": 70.0}], [("age", "numeric")])
>>> t = PatientTimeline("p", (Visit("a", 0.0, {"age": 50.0}), Visit("b", 4.0, {"age": 70.0})),
...                     Outcome(label=1))
>>> batch = visit_arrays([t], enc, {"a": np.zeros(3), "b": np.ones(3)}, max_visits=4)
>>> batch.emb.shape, batch.gaps.tolist(), batch.mask.tolist()
((1, 4, 3), [[0.0, 4.0, 0.0, 0.0]], [[True, True, False, False]])
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.data.timeline import (
    ClinicalVariable,
    Outcome,
    PatientTimeline,
    TimelineSet,
    Visit,
    timelines_from_dataset,
)
from medsight.models.clinical_encoding import ClinicalEncoder
from medsight.models.package import ModelPackage
from medsight.models.spec import Task

if TYPE_CHECKING:
    from medsight.data.dataset import Dataset

__all__ = [
    "RiskBatch",
    "RiskPredictor",
    "image_embeddings",
    "risk_settings",
    "timelines_for_package",
    "visit_arrays",
]


@dataclasses.dataclass(frozen=True)
class RiskBatch:
    """Padded per-patient visit arrays: ``emb (N, T, E)``, ``clin (N, T, C)``, ``gaps`` and
    ``mask`` ``(N, T)``, with the patient ids and outcomes (label, or time and event)."""

    emb: NDArray[np.float32]
    clin: NDArray[np.float32]
    gaps: NDArray[np.float32]
    mask: NDArray[np.bool_]
    patient_ids: list[str]
    label: NDArray[np.float64]
    time: NDArray[np.float64]
    event: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.patient_ids)

    def take(self, idx: Sequence[int] | NDArray[np.int64]) -> RiskBatch:
        """The rows ``idx``."""
        i = np.asarray(idx, dtype=np.int64)
        return RiskBatch(
            self.emb[i],
            self.clin[i],
            self.gaps[i],
            self.mask[i],
            [self.patient_ids[k] for k in i],
            self.label[i],
            self.time[i],
            self.event[i],
        )

    def replace(self, **changes: Any) -> RiskBatch:
        """A copy with some arrays changed (permutation importance)."""
        return dataclasses.replace(self, **changes)


def visit_arrays(
    timelines: Sequence[PatientTimeline],
    encoder: ClinicalEncoder,
    embeddings: Mapping[str, NDArray[Any]] | None,
    *,
    max_visits: int,
    embed_dim: int | None = None,
) -> RiskBatch:
    """Pad the last ``max_visits`` visits of each timeline into a :class:`RiskBatch`.

    ``embeddings`` maps case id to the image embedding; None (a clinical-only model) gives
    one zero column.  A visit without an embedding raises, naming it.
    """
    if not timelines:
        raise InvalidInputError("timelines", "no patient to encode")
    dim = embed_dim or (len(next(iter(embeddings.values()))) if embeddings else 1)
    n, t_max = len(timelines), max_visits
    emb = np.zeros((n, t_max, dim), np.float32)
    clin = np.zeros((n, t_max, len(encoder.columns)), np.float32)
    gaps = np.zeros((n, t_max), np.float32)
    mask = np.zeros((n, t_max), bool)
    label = np.full(n, np.nan)
    time = np.full(n, np.nan)
    event = np.full(n, np.nan)
    for i, tl in enumerate(timelines):
        visits = tl.visits[-t_max:]
        tl_gaps = tl.gaps()[-t_max:]
        tl_gaps[0] = 0.0
        clin[i, : len(visits)] = encoder.transform([v.values for v in visits])
        for j, v in enumerate(visits):
            if embeddings:
                if v.case_id not in embeddings:
                    raise InvalidInputError(f"visit {v.case_id}", "has no image embedding")
                emb[i, j] = embeddings[v.case_id]
        gaps[i, : len(visits)] = tl_gaps
        mask[i, : len(visits)] = True
        o = tl.outcome
        label[i] = np.nan if o.label is None else o.label
        time[i] = np.nan if o.time is None else o.time
        event[i] = np.nan if o.event is None else o.event
    return RiskBatch(emb, clin, gaps, mask, [t.patient_id for t in timelines], label, time, event)


def image_embeddings(
    encoder: ModelPackage,
    visits: Sequence[Visit],
    *,
    cache: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, NDArray[np.float64]]:
    """The encoder embedding of every visit's image, by case id, computed once.

    With ``cache`` (an ``.npz``), embeddings computed earlier by the same encoder (its weights'
    sha256) are read back and only new images are computed; the file is then rewritten.  The
    cache is keyed by case id, so share one file only between runs on the same data set.
    """
    from medsight.inference.features import package_features

    found: dict[str, NDArray[np.float64]] = {}
    cache_path = Path(cache) if cache is not None else None
    key = hashlib.sha256(encoder.sha256.encode()).hexdigest()[:16]
    if cache_path is not None and cache_path.is_file():
        with np.load(cache_path, allow_pickle=False) as z:
            if str(z["encoder"]) == key:
                found = dict(zip(z["ids"].tolist(), z["vectors"], strict=True))
    todo = [v for v in visits if v.case_id not in found and v.case is not None]
    if todo:
        vectors = package_features(encoder, (v.case.image() for v in todo), progress=progress)  # type: ignore[union-attr]
        found |= dict(zip([v.case_id for v in todo], vectors, strict=True))
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            ids = sorted(found)
            tmp = cache_path.with_name(cache_path.name + ".tmp.npz")
            np.savez(
                tmp, encoder=key, ids=np.asarray(ids), vectors=np.stack([found[i] for i in ids])
            )
            os.replace(tmp, cache_path)
    missing = [v.case_id for v in visits if v.case_id not in found]
    if missing:
        raise InvalidInputError(f"visits {missing[:3]}", "have no image to embed")
    return {v.case_id: found[v.case_id] for v in visits}


def risk_settings(package: ModelPackage) -> dict[str, Any]:
    """The package's ``extra["risk"]`` block (target, variables, encoding ...).

    Raises
    ------
    InvalidInputError
        The package is not a risk model.
    """
    spec = package.spec
    settings = spec.extra.get("risk")
    if spec.task is not Task.RISK or not isinstance(settings, dict):
        raise InvalidInputError(package.path, "is not a risk model package (task risk)")
    return settings


def timelines_for_package(package: ModelPackage, dataset: Dataset) -> TimelineSet:
    """The data set's timelines built as the package's training built them."""
    s = risk_settings(package)
    variables = [ClinicalVariable.from_dict(v) for v in s["variables"]]
    return timelines_from_dataset(
        dataset,
        target=s.get("target"),
        features=[v.name for v in variables],
        time_column=s.get("time_column"),
        event=s.get("event"),
        event_time=s.get("event_time"),
        positive=s.get("positive"),
        variables=variables,
    )


class RiskPredictor:
    """Scores patients with a risk package (see the module docstring).

    ``predict`` takes timelines (embedding their images through the package's encoder);
    ``predict_record`` one patient's images (with days) and a record ``{variable: value}``.
    For a binary outcome the result is the calibrated probability; for time-to-event the
    log hazard ratio relative to an average training patient (higher = earlier event).
    """

    def __init__(self, package: ModelPackage | str | os.PathLike[str], device: str = "cpu") -> None:
        import torch

        self._pkg = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
        self.settings = risk_settings(self._pkg)
        self.encoder = ClinicalEncoder.from_dict(self.settings["clinical_encoding"])
        self.variables = [ClinicalVariable.from_dict(v) for v in self.settings["variables"]]
        self._net = self._pkg.build_network().to(device)
        self._device = device
        self._torch = torch

    @property
    def package(self) -> ModelPackage:
        """The package this predictor runs."""
        return self._pkg

    @property
    def network(self) -> Any:
        """The loaded :class:`~medsight.models.fusion.RiskNet` (eval mode)."""
        return self._net

    @property
    def survival(self) -> bool:
        """Whether the package predicts time-to-event (Cox) rather than a binary outcome."""
        return bool(self.settings.get("survival"))

    @property
    def uses_images(self) -> bool:
        """Whether the model reads image embeddings (every arch but ``clinical``)."""
        return self._net.encoder is not None

    def missing_variables(self, record: Mapping[str, Any]) -> list[str]:
        """The model's clinical variables that ``record`` does not give (None counts)."""
        return [v.name for v in self.variables if record.get(v.name) is None]

    def embed(self, images: Sequence[Image]) -> NDArray[np.float64]:
        """Encoder embeddings ``(n, E)`` of images, preprocessed as in training."""
        from medsight.transforms.preprocess import to_network_input

        prep = self._pkg.spec.preprocessing
        x = np.stack([to_network_input(im, prep) for im in images])
        with self._torch.no_grad():
            out = self._net.embed(self._torch.from_numpy(np.ascontiguousarray(x)).to(self._device))
        return out.cpu().numpy().astype(np.float64)

    def scores(self, batch: RiskBatch) -> NDArray[np.float64]:
        """Raw network scores (logit or log hazard ratio) ``(N,)``."""
        t = self._torch
        with t.no_grad():
            out = self._net(
                t.from_numpy(batch.emb).to(self._device),
                t.from_numpy(batch.clin).to(self._device),
                t.from_numpy(batch.gaps).to(self._device),
                t.from_numpy(batch.mask).to(self._device),
            )
        return out.cpu().numpy().astype(np.float64)

    def from_scores(self, scores: NDArray[np.float64]) -> NDArray[np.float64]:
        """Calibrated probabilities (binary) or the scores themselves (time-to-event)."""
        if self.survival:
            return scores
        from medsight.models.calibration import calibrated_probabilities

        logits = np.stack([np.zeros_like(scores), scores], axis=1)
        spec = self._pkg.spec
        return calibrated_probabilities(logits, Task.BINARY, spec.calibration)[:, 1]

    def batch(
        self, timelines: Sequence[PatientTimeline], embeddings: Mapping[str, Any] | None = None
    ) -> RiskBatch:
        """The padded arrays of ``timelines`` (embedding their images when not given)."""
        if self.uses_images and embeddings is None:
            visits = [v for t in timelines for v in t.visits[-self.max_visits :]]
            if any(v.case is None for v in visits):
                raise InvalidInputError("timeline", "a visit has no image for the image model")
            vectors = self.embed([v.case.image() for v in visits])  # type: ignore[union-attr]
            embeddings = dict(zip([v.case_id for v in visits], vectors, strict=True))
        return visit_arrays(
            timelines,
            self.encoder,
            embeddings if self.uses_images else None,
            max_visits=self.max_visits,
            embed_dim=int(self._net.embed_dim),
        )

    @property
    def max_visits(self) -> int:
        """How many of the latest visits the model reads."""
        return int(self.settings.get("max_visits", 1))

    def predict(
        self, timelines: Sequence[PatientTimeline], embeddings: Mapping[str, Any] | None = None
    ) -> NDArray[np.float64]:
        """Probability (binary) or log hazard ratio (time-to-event) per timeline."""
        return self.from_scores(self.scores(self.batch(timelines, embeddings)))

    def predict_record(
        self, images: Sequence[tuple[Image, float]], record: Mapping[str, Any]
    ) -> float:
        """One patient: ``(image, day)`` visits (any order) and a record of typed values.

        Raises
        ------
        InvalidInputError
            The record lacks a variable the model needs (named), or no image is given to an
            image model.
        """
        missing = self.missing_variables(record)
        if missing:
            raise InvalidInputError("clinical record", f"lacks {', '.join(missing)}")
        if self.uses_images and not images:
            raise InvalidInputError("images", "the risk model needs at least one image")
        values = {v.name: v.parse(record.get(v.name)) for v in self.variables}
        ordered = sorted(images, key=lambda p: p[1]) if images else []
        visits = tuple(
            Visit(f"visit-{i}", float(day), values) for i, (_, day) in enumerate(ordered)
        )
        if not visits:
            visits = (Visit("visit-0", 0.0, values),)
        emb = None
        if self.uses_images:
            vectors = self.embed([im for im, _ in ordered])
            emb = {v.case_id: vec for v, vec in zip(visits, vectors, strict=True)}
        tl = PatientTimeline("patient", visits, Outcome())
        return float(self.predict([tl], emb)[0])
