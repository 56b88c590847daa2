"""``--arch auto``: the classification architecture chosen on validation data, within a budget.

Each candidate (MONAI networks plus the small CNN, see :data:`CANDIDATES`) is trained with the
run's config for an equal share of ``--budget-minutes`` of training time (at least one epoch:
the budget is checked before each epoch), in ``OUT/arch_search/<arch>/``.  Its score is the
best validation AUC of its training log (the metric early stopping watches; macro over classes
where there are several).  The best candidate wins; candidates within :data:`TIE_TOLERANCE` of
the best count as tied and the one with the fewest parameters wins the tie.  A candidate that
cannot take the input (e.g. DenseNet on 12-pixel images) is recorded as such and skipped.  Only
the training and validation splits are read: test data never enters the choice.

The chosen architecture is then trained fully (the run's own epochs, no budget) and the search,
every candidate's score included, is recorded in the package's ``model.json`` under
``extra["arch_search"]`` and in its model card.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medsight.core.errors import InvalidInputError
from medsight.io.atomic import write_text_atomic
from medsight.models.package import CARD_FILE, SPEC_FILE, ModelPackage, render_model_card
from medsight.models.registry import build_network
from medsight.training.classification import train_classifier
from medsight.training.config import ClassifyConfig

__all__ = [
    "CANDIDATES",
    "TIE_TOLERANCE",
    "choose_architecture",
    "pick",
    "record_in_package",
]

log = logging.getLogger(__name__)

#: The candidate networks of ``--arch auto`` (registry names; MONAI's, plus smallcnn).
CANDIDATES: tuple[str, ...] = ("smallcnn", "resnet18", "densenet121", "efficientnet", "vit")

#: Validation AUCs this close to the best are a tie, won by the smaller network.
TIE_TOLERANCE = 0.005


def _best_val_auc(run: Path) -> tuple[float, int, float]:
    """``(best val_auc, epochs run, training seconds)`` from a run's ``training_log.csv``."""
    with open(run / "training_log.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    seconds = sum(float(r["seconds"]) for r in rows)
    return max(float(r["val_auc"]) for r in rows), len(rows), seconds


def choose_architecture(
    cfg: ClassifyConfig,
    budget_minutes: float,
    candidates: Sequence[str] = CANDIDATES,
    candidate_args: Mapping[str, dict[str, Any]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Train each candidate for an equal share of the budget; the best by validation AUC.

    Parameters
    ----------
    cfg : ClassifyConfig
        The run's config (``cfg.arch`` and ``cfg.arch_args`` are replaced per candidate).
    budget_minutes : float
        Total training time of the search, shared equally by the candidates.
    candidates : sequence of str
        Registry names.
    candidate_args : mapping, optional
        Extra network arguments per candidate (over the defaults).

    Returns
    -------
    (str, dict)
        The chosen name and the search record (budget, tie rule, every candidate's score).

    Raises
    ------
    InvalidInputError
        An empty candidate list, a non-positive budget, or no candidate could be trained.
    """
    if not candidates:
        raise InvalidInputError("--candidates", "is empty")
    if not budget_minutes > 0:
        raise InvalidInputError("--budget-minutes", f"{budget_minutes} must be positive")
    share = budget_minutes * 60.0 / len(candidates)
    scores: list[dict[str, Any]] = []
    for name in candidates:
        run = Path(cfg.out) / "arch_search" / name
        trial = cfg.model_copy(
            update={
                "arch": name,
                "arch_args": dict((candidate_args or {}).get(name, {})),
                "out": run,
                "time_budget_s": share,
                "resume": False,
                "name": None,
            }
        )
        try:
            pkg = train_classifier(trial)
        except InvalidInputError as err:
            log.warning("candidate %s skipped: %s", name, err)
            scores.append({"arch": name, "val_auc": None, "note": str(err)})
            continue
        auc, epochs, seconds = _best_val_auc(run)
        n_params = sum(p.numel() for p in build_network(pkg.spec.architecture).parameters())
        scores.append(
            {
                "arch": name,
                "val_auc": auc,
                "params": n_params,
                "epochs": epochs,
                "seconds": round(seconds, 2),
            }
        )
        log.info("candidate %s: validation AUC %.4f (%d epochs)", name, auc, epochs)
    chosen = pick(scores)
    record = {
        "chosen": chosen,
        "budget_minutes": budget_minutes,
        "seconds_per_candidate": round(share, 2),
        "criterion": "best validation AUC of the training log (test data not used); "
        f"within {TIE_TOLERANCE} of the best: the fewest parameters",
        "candidates": scores,
    }
    return chosen, record


def pick(scores: Sequence[Mapping[str, Any]]) -> str:
    """The chosen candidate: the best ``val_auc``; within :data:`TIE_TOLERANCE` of it, the
    fewest ``params`` (candidates whose ``val_auc`` is ``None`` were not trained).

    Examples
    --------
    >>> pick([{"arch": "a", "val_auc": 0.90, "params": 9}, {"arch": "b", "val_auc": 0.898,
    ...       "params": 5}, {"arch": "c", "val_auc": None}])
    'b'
    >>> pick([{"arch": "a", "val_auc": 0.90, "params": 9}, {"arch": "b", "val_auc": 0.85,
    ...       "params": 5}])
    'a'
    """
    scored = [s for s in scores if s.get("val_auc") is not None]
    if not scored:
        raise InvalidInputError("--arch auto", "no candidate could be trained on this input")
    best = max(float(s["val_auc"]) for s in scored)
    tied = [s for s in scored if float(s["val_auc"]) >= best - TIE_TOLERANCE]
    return str(min(tied, key=lambda s: s["params"])["arch"])


def record_in_package(package: ModelPackage, key: str, value: Any) -> ModelPackage:
    """``package`` with ``extra[key] = value`` written into its ``model.json`` and card.

    The weights and their digest are unchanged; both files are replaced atomically.
    """
    spec = package.spec.model_copy(update={"extra": package.spec.extra | {key: value}})
    write_text_atomic(package.path / SPEC_FILE, spec.model_dump_json(indent=2) + "\n")
    card = render_model_card(spec) + _search_lines(value if key == "arch_search" else None)
    write_text_atomic(package.path / CARD_FILE, card)
    return ModelPackage.load(package.path)


def _search_lines(record: dict[str, Any] | None) -> str:
    if not record:
        return ""
    lines = ["", "## Architecture choice (validation data)", "", record["criterion"], ""]
    lines += [
        "| candidate | validation AUC | parameters | epochs | seconds |",
        "|---|---|---|---|---|",
    ]
    for s in record["candidates"]:
        if s["val_auc"] is None:
            lines.append(f"| {s['arch']} | not trained: {s['note']} | | | |")
        else:
            lines.append(
                f"| {s['arch']} | {s['val_auc']:.4f} | {s['params']} | {s['epochs']} "
                f"| {s['seconds']} |"
            )
    lines.append(f"\nChosen: `{record['chosen']}`.\n")
    return "\n".join(lines)
