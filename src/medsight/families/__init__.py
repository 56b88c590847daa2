"""Task families: one registration per kind of model, the table every entry point reads.

A task family (classification, segmentation, and the coming detection, denoising / synthesis
and risk families) registers the same parts: its typed run configuration, its runner (data ->
plan -> preprocess -> train -> package, each stage a file), its predictor, its evaluator, its
findings builder (package + Image -> findings, masks, heat maps) and its architectures.  The
CLI (``medsight train <family>``, ``medsight evaluate``), :func:`medsight.analysis.run_package`
and the service (which runs ``analyze``) look a package's family up here by its
:class:`~medsight.core.task.Task` instead of ``if task == ...`` chains.

Parts are named ``"module:attribute"`` and imported only when used, so this table sits low in
the layering (it imports only :mod:`medsight.core`) and ``medsight --help`` stays fast.  A new
family is one :func:`register_family` call (built-in families are in
:mod:`medsight.families.builtin`).

Examples
--------
>>> from medsight.families import family_for
>>> family_for("ordinal").name, family_for("segmentation").name
('classification', 'segmentation')
>>> family_for("ordinal").load("evaluate").__name__
'evaluate_classifier'
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Literal

from medsight.core.errors import InvalidInputError
from medsight.core.task import Task

__all__ = ["Part", "TaskFamily", "all_families", "family_for", "family_named", "register_family"]

#: The parts a family names (each ``"module:attribute"``).
Part = Literal["config", "run", "predictor", "evaluate", "analyze", "command"]


@dataclasses.dataclass(frozen=True)
class TaskFamily:
    """One task family's registration.

    Parameters
    ----------
    name : str
        ``"classification"``, ``"segmentation"``; also the ``medsight train`` sub-command
        unless ``command_name`` says otherwise.
    tasks : tuple of Task
        The model tasks (``ModelSpec.task``) whose packages this family serves.
    summary : str
        One line for ``medsight info`` and the docs.
    config, run, predictor, evaluate, analyze, command : str
        ``"module:attribute"`` of: the typed run configuration (pydantic model); the
        library-level runner ``run(config, log=...) -> ModelPackage`` that the CLI and the
        benchmarks call; the predictor class (package -> predictions); the evaluator
        ``evaluate(package, dataset, out, split=, by=, n_resamples=, seed=, **options) -> dict``;
        the findings builder ``analyze(package, image, options) -> ModelOutput`` used by
        ``analyze`` and the service; the typer command function of ``medsight train``.
    architectures : tuple of str
        Network choices of the family's ``--arch``; the first is the default.
    options : frozenset of str
        Inference options the family's evaluator and findings builder accept beyond the
        common ones (segmentation: ``"tta"``); others are refused with a clear error.
    run_folders : tuple of str
        Where, inside a training run folder, the runner writes the package.
    slicewise : bool
        A 2D model of this family takes a 3D volume slice by slice (denoising); otherwise a
        volume given to a 2D model is refused.
    by_default : bool
        ``analyze`` runs this family's zoo packages without being asked (findings families);
        denoising runs only when asked for (``--denoise``), synthesis never on a patient.
    """

    name: str
    tasks: tuple[Task, ...]
    summary: str
    config: str
    run: str
    predictor: str
    evaluate: str
    analyze: str
    command: str
    architectures: tuple[str, ...] = ()
    options: frozenset[str] = frozenset()
    run_folders: tuple[str, ...] = ("package",)
    command_name: str | None = None
    slicewise: bool = False
    by_default: bool = True

    @property
    def default_architecture(self) -> str | None:
        """The family's default network (the first of :attr:`architectures`)."""
        return self.architectures[0] if self.architectures else None

    @property
    def cli_name(self) -> str:
        """The ``medsight train`` sub-command."""
        return self.command_name or self.name

    def load(self, part: Part) -> Any:
        """Import and return one part (``"run"``, ``"evaluate"`` ...).

        Raises
        ------
        InvalidInputError
            The part's module cannot be imported (a missing optional library is named).
        """
        target = getattr(self, part)
        module, _, attr = target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise InvalidInputError(
                f"task family {self.name!r}",
                f"its {part} ({target}) cannot be imported: {exc}",
                hint="install the optional dependencies it needs (pip install medsight[all])",
            ) from None

    def check_options(self, options: dict[str, Any], what: str) -> None:
        """Refuse options this family does not take (``--tta`` for a classifier ...)."""
        extra = sorted(set(options) - self.options)
        if extra:
            flags = ", ".join(f"--{o}" for o in extra)
            raise InvalidInputError(what, f"{flags} does not apply to {self.name} models")


_FAMILIES: dict[str, TaskFamily] = {}


def register_family(family: TaskFamily, *, replace: bool = False) -> TaskFamily:
    """Add ``family`` to the registry (``replace=True`` to override a registered one).

    Raises
    ------
    ValueError
        The name, or one of its tasks, is already registered (and ``replace`` is false).
    """
    if not replace:
        if family.name in _FAMILIES:
            raise ValueError(f"task family {family.name!r} is already registered")
        taken = {t for f in _FAMILIES.values() for t in f.tasks} & set(family.tasks)
        if taken:
            raise ValueError(f"tasks {sorted(taken)} already belong to another family")
    _FAMILIES[family.name] = family
    return family


def _builtin() -> None:
    if not _FAMILIES:
        from medsight.families import builtin

        for family in builtin.FAMILIES:
            register_family(family)


def all_families() -> list[TaskFamily]:
    """Every registered family, built-in ones first."""
    _builtin()
    return list(_FAMILIES.values())


def family_named(name: str) -> TaskFamily:
    """The family called ``name``.

    Raises
    ------
    InvalidInputError
        No family has that name (the registered ones are listed).
    """
    _builtin()
    if name not in _FAMILIES:
        raise InvalidInputError(
            f"task family {name!r}", f"is not registered; known: {', '.join(_FAMILIES)}"
        )
    return _FAMILIES[name]


def family_for(task: Task | str) -> TaskFamily:
    """The family that serves models of ``task`` (a :class:`Task` or its value).

    Raises
    ------
    InvalidInputError
        No registered family predicts that task.
    """
    _builtin()
    try:
        task = Task(task)
    except ValueError:
        raise InvalidInputError(f"task {task!r}", "is not a medsight task") from None
    for family in _FAMILIES.values():
        if task in family.tasks:
            return family
    raise InvalidInputError(
        f"task {task.value!r}", "has no task family (no trainer, evaluator or predictor) yet"
    )
