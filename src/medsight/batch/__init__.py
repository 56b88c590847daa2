"""Batch runs over archives: one task per study, idempotent, on a process pool or Ray.

:func:`~medsight.batch.tasks.discover_tasks` finds the studies of an archive,
:func:`~medsight.batch.runner.run_batch` runs an operation (:mod:`medsight.batch.ops`:
``analyze``, ``deid``, ``qc``) on each study not done yet.  ``medsight batch`` is the command.
"""

from medsight.batch.runner import BatchResult, Engine, TaskResult, run_batch
from medsight.batch.tasks import StudyTask, discover_tasks

__all__ = ["BatchResult", "Engine", "StudyTask", "TaskResult", "discover_tasks", "run_batch"]
