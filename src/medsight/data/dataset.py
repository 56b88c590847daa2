"""`Dataset`: the Cases of one data set plus what its layout says about them.

Adapters (:mod:`medsight.data.medmnist`, :mod:`~medsight.data.msd`, ...) build a Dataset; the
splitter, the fingerprint and the quality report read it.  Besides the Cases a Dataset knows the
task, the label names, the channel names, which files each Case came from (so every quality
finding can name them), problems the adapter met while listing the layout (orphan files,
manifest rows without an image ...), which the quality report turns into findings, and its
provenance: ``source`` (citation / where it comes from) and ``license``, empty when the adapter
does not know them (never guessed).

Examples
--------
>>> import numpy as np
>>> from medsight.core import Case, Image
>>> ds = Dataset(
...     "toy",
...     [Case("a", images={"image": Image(np.zeros((2, 2)))}, label=0)],
...     task=Task.BINARY,
...     label_names={0: "normal", 1: "abnormal"},
... )
>>> len(ds), ds[0].case_id, ds.task
(1, 'a', <Task.BINARY: 'binary'>)
>>> ds.files_of("a")
{}
>>> ds.license, ds.with_provenance(license="CC0").with_cases(list(ds)).license
('', 'CC0')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType

from medsight.core import Case, InvalidInputError, Task  # Task re-exported

__all__ = ["Dataset", "LayoutIssue", "Task"]


@dataclasses.dataclass(frozen=True)
class LayoutIssue:
    """A problem an adapter met while listing a data set (not while reading pixels).

    ``kind`` is a :class:`medsight.data.qc.CheckKind` value (``"missing_file"``,
    ``"orphan_file"``, ``"missing_label"`` ...); ``files`` names the files concerned.
    """

    kind: str
    message: str
    files: tuple[str, ...] = ()


class Dataset(Sequence[Case]):
    """An ordered, immutable collection of Cases with data-set level metadata.

    Parameters
    ----------
    name : str
        Short name (``"breastmnist"``, ``"hippocampus"`` ...).
    cases : sequence of Case
        Case ids must be unique.
    task : Task or str
    label_names : mapping of int to str, optional
        Class index (or mask value) to name.
    channel_names : mapping of int to str, optional
        Channel index to name (``{0: "T1"}``) for multi-channel data sets.
    files : mapping of case id to {role: path}, optional
        The files each Case was read from (role ``"label"`` for a mask file).
    official_splits : bool
        Whether ``Case.split`` comes from the data set's own published split.
    layout_issues : sequence of LayoutIssue, optional
    root : str, optional
        The folder or file the data set was read from.
    source : str
        Where the data comes from (citation, original collection); empty when unknown.
    license : str
        The data's license as its publisher states it; empty when unknown.
    """

    def __init__(
        self,
        name: str,
        cases: Sequence[Case],
        *,
        task: Task | str = Task.NONE,
        label_names: Mapping[int, str] | None = None,
        channel_names: Mapping[int, str] | None = None,
        files: Mapping[str, Mapping[str, str]] | None = None,
        official_splits: bool = False,
        layout_issues: Sequence[LayoutIssue] = (),
        root: str | None = None,
        source: str = "",
        license: str = "",
    ) -> None:
        self._cases = tuple(cases)
        seen: set[str] = set()
        for case in self._cases:
            if case.case_id in seen:
                raise InvalidInputError(f"data set {name}", f"case id {case.case_id!r} repeats")
            seen.add(case.case_id)
        self._index = {c.case_id: i for i, c in enumerate(self._cases)}
        self._name = name
        try:
            self._task = Task(str(task))
        except ValueError:
            raise InvalidInputError(
                "task", f"{task!r} is not one of {[t.value for t in Task]}"
            ) from None
        self._label_names = MappingProxyType(dict(label_names or {}))
        self._channel_names = MappingProxyType(dict(channel_names or {}))
        self._files = {k: dict(v) for k, v in (files or {}).items()}
        self._official_splits = official_splits
        self._layout_issues = tuple(layout_issues)
        self._root = root
        self._source = source
        self._license = license

    # --- read-only properties -------------------------------------------------------------
    @property
    def name(self) -> str:
        """Short name of the data set."""
        return self._name

    @property
    def task(self) -> Task:
        """What the labels mean."""
        return self._task

    @property
    def label_names(self) -> Mapping[int, str]:
        """Class index (or mask value) to name."""
        return self._label_names

    @property
    def channel_names(self) -> Mapping[int, str]:
        """Channel index to name."""
        return self._channel_names

    @property
    def official_splits(self) -> bool:
        """Whether ``Case.split`` is the data set's own published split."""
        return self._official_splits

    @property
    def layout_issues(self) -> tuple[LayoutIssue, ...]:
        """Problems met while listing the files."""
        return self._layout_issues

    @property
    def root(self) -> str | None:
        """The folder or file the data set was read from."""
        return self._root

    @property
    def source(self) -> str:
        """Where the data comes from (citation, original collection); empty when unknown."""
        return self._source

    @property
    def license(self) -> str:
        """The data's license; empty when unknown."""
        return self._license

    def __len__(self) -> int:
        return len(self._cases)

    def __getitem__(self, index: int) -> Case:  # type: ignore[override]
        return self._cases[index]

    def __iter__(self) -> Iterator[Case]:
        return iter(self._cases)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self)} cases, task={self.task.value!r})"

    def case(self, case_id: str) -> Case:
        """The Case with id ``case_id``."""
        try:
            return self._cases[self._index[case_id]]
        except KeyError:
            raise InvalidInputError(f"data set {self.name}", f"no case {case_id!r}") from None

    def files_of(self, case_id: str) -> dict[str, str]:
        """The files of a Case by role (empty when the adapter does not know them)."""
        return dict(self._files.get(case_id, {}))

    def describe(self, case_id: str) -> str:
        """A short human reference to a Case: its main file, or its id."""
        files = self._files.get(case_id, {})
        if files:
            return next(iter(files.values()))
        return case_id

    def with_cases(self, cases: Sequence[Case]) -> Dataset:
        """A copy with other Cases (e.g. re-split), same metadata."""
        return Dataset(
            self.name,
            cases,
            task=self.task,
            label_names=self.label_names,
            channel_names=self.channel_names,
            files={c.case_id: self._files[c.case_id] for c in cases if c.case_id in self._files},
            official_splits=self.official_splits,
            layout_issues=self.layout_issues,
            root=self.root,
            source=self.source,
            license=self.license,
        )

    def with_provenance(self, *, source: str | None = None, license: str | None = None) -> Dataset:
        """A copy with ``source`` and/or ``license`` replaced (None keeps the current one)."""
        copy = self.with_cases(self._cases)
        if source is not None:
            copy._source = source
        if license is not None:
            copy._license = license
        return copy
