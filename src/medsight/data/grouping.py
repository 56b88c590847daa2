"""Treat identical and near-identical images as one patient before splitting.

Data sets without patient ids (BUSI, MedMNIST) hold repeated frames of one lesion; a
patient-level split cannot keep them together unless they share a patient id.
:func:`group_duplicates` joins every exact or near duplicate group (as the quality report finds
them) with the existing patient groups (union-find) and gives each joined group one patient id,
the smallest of its members' ids.

Examples
--------
>>> import numpy as np
>>> from medsight.core import Case, Image
>>> from medsight.data import Dataset
>>> rng = np.random.default_rng(0)
>>> same = Image(rng.random((16, 16)))
>>> cases = [Case("a", images={"image": same}), Case("b", images={"image": same}),
...          Case("c", images={"image": Image(rng.random((16, 16)))})]
>>> [c.patient_id for c in group_duplicates(Dataset("t", cases))]
['a', 'a', 'c']
"""

from __future__ import annotations

from collections import defaultdict

from medsight.data.dataset import Dataset
from medsight.data.qc.config import QCConfig
from medsight.data.qc.duplicates import near_duplicate_pairs
from medsight.data.scan import CaseScan, scan_dataset

__all__ = ["group_duplicates"]


def group_duplicates(
    dataset: Dataset, config: QCConfig | None = None, *, scans: list[CaseScan] | None = None
) -> Dataset:
    """The data set with one patient id per group of duplicate images (and of patients).

    Parameters
    ----------
    dataset : Dataset
    config : QCConfig, optional
        Near-duplicate thresholds (``near_dup_*``).
    scans : list of CaseScan, optional
        Reuse a scan from :func:`~medsight.data.scan.scan_dataset` (or a quality run).
    """
    cfg = config or QCConfig()
    if scans is None:
        scans = scan_dataset(dataset, seed=cfg.seed, samples=10)
    parent = list(range(len(dataset)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def join(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first: dict[str, int] = {}
    for i, case in enumerate(dataset):  # existing patients
        pid = str(case.patient_id)
        join(first.setdefault(pid, i), i)
    ok = [s for s in scans if s.ok]
    by_digest: dict[str, int] = {}
    for s in ok:  # exact duplicates
        join(by_digest.setdefault(s.digest, s.index), s.index)
    for i, j, _ in near_duplicate_pairs(ok, cfg):
        join(ok[i].index, ok[j].index)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(dataset)):
        members[find(i)].append(i)
    new_id = {}
    for group in members.values():
        pid = min(str(dataset[i].patient_id) for i in group)
        for i in group:
            new_id[i] = pid
    return dataset.with_cases([c.replace(patient_id=new_id[i]) for i, c in enumerate(dataset)])
