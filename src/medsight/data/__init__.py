"""Data sets: adapters yielding Cases, patient-level splits, fingerprint and quality checks.

``load_dataset("KIND:PATH")`` reads a data set with the adapter registered for ``KIND``
(:mod:`~medsight.data.registry`); :func:`make_splits` splits it by patient (after
:func:`medsight.data.grouping.group_duplicates` for data sets without patient ids),
:func:`medsight.data.fingerprint.compute_fingerprint` summarises it as nnU-Net does and
:func:`medsight.data.qc.run_qc` checks it.  The last three read pixels and import scipy, so
they are imported from their modules, not from here.
"""

# Importing the adapter modules registers them.
from medsight.data import detection as _detection  # noqa: F401
from medsight.data import dicom_table as _dicom_table  # noqa: F401
from medsight.data import folder as _folder  # noqa: F401
from medsight.data import manifest as _manifest  # noqa: F401
from medsight.data import medmnist as _medmnist  # noqa: F401
from medsight.data import msd as _msd  # noqa: F401
from medsight.data.dataset import Dataset, LayoutIssue, Task
from medsight.data.registry import adapter_names, load_dataset, parse_spec, register_adapter
from medsight.data.splits import Fold, SplitConfig, Splits, SplitScheme, make_splits

__all__ = [
    "Dataset",
    "Fold",
    "LayoutIssue",
    "SplitConfig",
    "SplitScheme",
    "Splits",
    "Task",
    "adapter_names",
    "load_dataset",
    "make_splits",
    "parse_spec",
    "register_adapter",
]
