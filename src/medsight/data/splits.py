"""Patient-level, label-stratified, seeded splits: train/val/test hold-out or k folds.

All Cases of one patient land in the same part, so no patient is in two parts.  Patients are
grouped by stratum (the label of their most common class), shuffled with a
``numpy.random.Generator`` seeded from the config, and each patient goes to the part whose case
count is furthest below its target share of that stratum (largest patients first), which keeps
class proportions and part sizes close to the targets.

Official splits are kept when the data set has them (``Dataset.official_splits``, e.g.
MedMNIST): hold-out then copies them (official train and test without a val part, e.g. an
image folder's ``Training/`` and ``Testing/``: val is carved from train, test kept as it is);
k-fold keeps the official test part and folds the rest.
Cases that already carry ``split=test`` from their layout (MSD ``imagesTs``) stay in test.

The result is a :class:`Splits` written to and read from ``splits.json``, which training and
evaluation read.

Examples
--------
>>> import numpy as np
>>> from medsight.core import Case, Image
>>> from medsight.data import Dataset
>>> cases = [Case(f"c{i}", patient_id=f"p{i // 2}", label=i % 4 // 2) for i in range(40)]
>>> splits = make_splits(Dataset("toy", cases), SplitConfig(val_fraction=0.2, test_fraction=0.2))
>>> [len(splits.folds[0].train), len(splits.folds[0].val), len(splits.test)]
[24, 8, 8]
>>> splits.leaks(Dataset("toy", cases))
{}
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from enum import StrEnum
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, field_validator

from medsight.core import Case, Image, InvalidInputError, Split, UnreadableFileError
from medsight.data.dataset import Dataset
from medsight.io.atomic import write_text_atomic

__all__ = ["Fold", "SplitConfig", "SplitScheme", "Splits", "make_splits", "stratum_of"]


class SplitScheme(StrEnum):
    """How to split: one train/val/test hold-out, or k folds (plus a test part)."""

    HOLDOUT = "holdout"
    KFOLD = "kfold"


class SplitConfig(BaseModel):
    """Parameters of :func:`make_splits`."""

    scheme: SplitScheme = SplitScheme.HOLDOUT
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    k: int = Field(5, ge=2)
    seed: int = 0
    stratify: bool = True
    keep_official: bool = True

    @field_validator("test_fraction")
    @classmethod
    def _fractions(cls, v: float, info: object) -> float:
        val = getattr(info, "data", {}).get("val_fraction", 0.0)
        if v + val >= 1.0:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return v


class Fold(BaseModel):
    """The case ids of one fold's training and validation parts."""

    train: list[str]
    val: list[str]


class Splits(BaseModel):
    """Case ids per part; ``folds`` has one entry for a hold-out split, k for k-fold."""

    version: int = 1
    dataset: str
    scheme: SplitScheme
    seed: int
    source: str  # "official" or "generated"
    stratified: bool
    test: list[str]
    folds: list[Fold]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``splits.json`` atomically (temporary name, then rename)."""
        p = Path(path)
        write_text_atomic(p, json.dumps(self.model_dump(mode="json"), indent=1))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Splits:
        """Read a ``splits.json``; a bad file raises UnreadableFileError naming it."""
        p = Path(path)
        try:
            return cls.model_validate_json(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UnreadableFileError(p, f"not a medsight splits file ({exc})") from exc

    def save_folds(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write one single-fold ``fold_<i>.json`` per fold (the split member ``i`` of a fold
        ensemble trains on); returns their paths.

        Raises
        ------
        InvalidInputError
            A fold with no training or no validation case (nothing is written).

        Examples
        --------
        >>> import tempfile
        >>> two = Splits(dataset="toy", scheme="kfold", seed=0, source="generated",
        ...     stratified=False, test=[], folds=[Fold(train=["a"], val=["b"]),
        ...     Fold(train=["b"], val=["a"])])
        >>> [p.name for p in two.save_folds(tempfile.mkdtemp())]
        ['fold_0.json', 'fold_1.json']
        """
        for i, fold in enumerate(self.folds):
            if not fold.val or not fold.train:
                raise InvalidInputError("--folds", f"fold {i} is empty", hint="use fewer folds")
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        return [
            self.model_copy(update={"folds": [fold]}).save(target / f"fold_{i}.json")
            for i, fold in enumerate(self.folds)
        ]

    def assignment(self, fold: int = 0) -> dict[str, Split]:
        """Case id to part for one fold."""
        if not 0 <= fold < len(self.folds):
            raise InvalidInputError("fold", f"{fold} is not in 0..{len(self.folds) - 1}")
        out = {cid: Split.TEST for cid in self.test}
        out |= {cid: Split.TRAIN for cid in self.folds[fold].train}
        out |= {cid: Split.VAL for cid in self.folds[fold].val}
        return out

    def apply(self, dataset: Dataset, fold: int = 0) -> Dataset:
        """The data set with ``Case.split`` set from this split (all cases must be listed)."""
        parts = self.assignment(fold)
        missing = [c.case_id for c in dataset if c.case_id not in parts]
        if missing:
            raise InvalidInputError(
                f"splits of {self.dataset}",
                f"{len(missing)} cases are in no part (e.g. {missing[:3]})",
                hint="the data set changed since splits.json was written; make new splits",
            )
        return dataset.with_cases([c.replace(split=parts[c.case_id]) for c in dataset])

    def leaks(self, dataset: Dataset, fold: int = 0) -> dict[str, list[str]]:
        """Patients found in more than one part: patient id to the parts' names."""
        parts = self.assignment(fold)
        seen: dict[str, set[str]] = defaultdict(set)
        for case in dataset:
            if case.case_id in parts:
                seen[str(case.patient_id)].add(parts[case.case_id].value)
        return {p: sorted(s) for p, s in seen.items() if len(s) > 1}


def stratum_of(case: Case) -> str:
    """The stratum of a Case: its class, its class attribute for masks and boxes, or 'none'.

    Examples
    --------
    >>> stratum_of(Case("a", label=2)), stratum_of(Case("b", label=(0, 3)))
    ('2', '0|3')
    >>> stratum_of(Case("c", attributes={"class": "benign"}, label=lambda: None))
    'benign'
    """
    label = case.label
    if isinstance(label, bool | int | np.integer):
        return str(int(label))
    if isinstance(label, tuple) and all(isinstance(v, int) for v in label):
        return "|".join(str(v) for v in label)
    cls = case.attributes.get("class")
    if cls is not None:
        return str(cls)
    if label is None:
        return "none"
    return "mask" if isinstance(label, Image) or callable(label) else "boxes"


def _assign(
    groups: dict[str, list[str]],
    strata: dict[str, str],
    fractions: list[float],
    rng: np.random.Generator,
) -> list[list[str]]:
    """Assign patient groups to len(fractions) parts, balancing each stratum's case counts."""
    parts: list[list[str]] = [[] for _ in fractions]
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(groups):
        by_stratum[strata[pid]].append(pid)
    frac = np.asarray(fractions, dtype=float)
    grand_total = sum(len(g) for g in groups.values())
    overall = np.zeros(len(fractions))
    for stratum in sorted(by_stratum):
        pids = by_stratum[stratum]
        order = rng.permutation(len(pids))
        shuffled = [pids[i] for i in order]
        shuffled.sort(key=lambda p: -len(groups[p]))  # stable: large patients first
        total = sum(len(groups[p]) for p in shuffled)
        counts = np.zeros(len(fractions))
        for pid in shuffled:
            # the part furthest below its share of this stratum; ties go to the part furthest
            # below its share overall, so small strata do not all pile into the first parts
            deficit = np.where(frac > 0, frac * total - counts, -np.inf)
            tied = np.flatnonzero(deficit >= deficit.max() - 1e-9)
            best = int(tied[np.argmax((frac * grand_total - overall)[tied])])
            parts[best].extend(groups[pid])
            counts[best] += len(groups[pid])
            overall[best] += len(groups[pid])
    return parts


def make_splits(dataset: Dataset, config: SplitConfig | None = None) -> Splits:
    """Split a data set by patient, stratified by label, reproducibly.

    Parameters
    ----------
    dataset : Dataset
    config : SplitConfig, optional

    Returns
    -------
    Splits

    Examples
    --------
    >>> from medsight.core import Case
    >>> from medsight.data import Dataset
    >>> cases = [Case(f"c{i}", patient_id=f"p{i % 10}", label=i % 2) for i in range(50)]
    >>> five = make_splits(Dataset("toy", cases), SplitConfig(scheme="kfold", k=5, seed=1))
    >>> [len(f.val) for f in five.folds], len(five.test)
    ([10, 10, 10, 5, 5], 10)
    >>> five == make_splits(Dataset("toy", cases), SplitConfig(scheme="kfold", k=5, seed=1))
    True
    """
    cfg = config or SplitConfig()
    rng = np.random.default_rng(cfg.seed)
    official = cfg.keep_official and dataset.official_splits
    pinned_test = {c.case_id for c in dataset if cfg.keep_official and c.split is Split.TEST}
    source = "official" if official else "generated"

    by = {s: [c.case_id for c in dataset if c.split is s] for s in Split}
    if official and cfg.scheme is SplitScheme.HOLDOUT and (by[Split.VAL] or not cfg.val_fraction):
        return Splits(
            dataset=dataset.name, scheme=cfg.scheme, seed=cfg.seed, source=source,
            stratified=False, test=by[Split.TEST],
            folds=[Fold(train=by[Split.TRAIN], val=by[Split.VAL])],
        )  # fmt: skip

    rest = [c for c in dataset if c.case_id not in pinned_test]
    groups: dict[str, list[str]] = defaultdict(list)
    case_strata: dict[str, list[str]] = defaultdict(list)
    for case in rest:
        pid = str(case.patient_id)
        groups[pid].append(case.case_id)
        case_strata[pid].append(stratum_of(case) if cfg.stratify else "all")
    strata = {p: Counter(v).most_common(1)[0][0] for p, v in case_strata.items()}
    test = sorted(pinned_test)
    if not official and cfg.test_fraction > 0:
        _, held = _assign(groups, strata, [1 - cfg.test_fraction, cfg.test_fraction], rng)
        test += held
        held_set = set(held)
        groups = {p: ids for p, ids in groups.items() if ids[0] not in held_set}
    if cfg.scheme is SplitScheme.HOLDOUT:
        remaining = 1 - cfg.test_fraction
        val_share = cfg.val_fraction / remaining if remaining > 0 else 0.0
        train, val = _assign(groups, strata, [1 - val_share, val_share], rng)
        folds = [Fold(train=train, val=val)]
    else:
        parts = _assign(groups, strata, [1 / cfg.k] * cfg.k, rng)
        folds = [
            Fold(train=[cid for j, p in enumerate(parts) if j != i for cid in p], val=parts[i])
            for i in range(cfg.k)
        ]
    return Splits(
        dataset=dataset.name, scheme=cfg.scheme, seed=cfg.seed, source=source,
        stratified=cfg.stratify, test=test, folds=folds,
    )  # fmt: skip
