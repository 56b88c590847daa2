"""De-identification of imaging data before it leaves the hospital boundary.

The package follows one file from input to output:

* :mod:`~medsight.privacy.ps315_table` - DICOM PS3.15 Table E.1-1, generated from the standard.
* :mod:`~medsight.privacy.profile` - options (:class:`Option`), the typed :class:`DeidConfig`
  and the action each attribute gets under a set of options.
* :mod:`~medsight.privacy.keys` - the secret key: keyed-hash UIDs, pseudonymous patient ids and
  per-patient date shifts.
* :mod:`~medsight.privacy.dicom_deid` - applies the profile to one DICOM dataset.
* :mod:`~medsight.privacy.pixels` - burned-in text: flagging, scrubbing and verifying, built on
  :mod:`~medsight.privacy.ocr` (tesseract on several renderings),
  :mod:`~medsight.privacy.text_regions` (text lines found without reading) and
  :mod:`~medsight.privacy.identifiers` (the header's values, dates, masking);
  :mod:`~medsight.privacy.drawn` draws test images with burned-in identifiers.
* :mod:`~medsight.privacy.other_formats` - NIfTI headers and PNG/JPEG metadata.
* :mod:`~medsight.privacy.batch` - whole folders, in parallel, atomically, with a
  re-identification table.
* :mod:`~medsight.privacy.leaks` - the leak checker (:func:`verify`).
* :mod:`~medsight.privacy.audit` - the append-only, hash-chained audit log.

Examples
--------
>>> import tempfile, pathlib, shutil
>>> from pydicom.data import get_testdata_file
>>> src = pathlib.Path(tempfile.mkdtemp()) / "in"
>>> src.mkdir()
>>> _ = shutil.copy(get_testdata_file("MR_small.dcm", download=False), src)
>>> key = PseudonymKey(bytes(32))
>>> config = DeidConfig(options=["retain-patient-characteristics"])
>>> report = deidentify_folder(src, src.parent / "out", key, config, workers=1)
>>> verify(src, src.parent / "out", config).ok
True
"""

from __future__ import annotations

from medsight.privacy.audit import append_entry, verify_log
from medsight.privacy.batch import DeidReport, deidentify_folder
from medsight.privacy.dicom_deid import deidentify_dataset
from medsight.privacy.keys import PseudonymKey
from medsight.privacy.leaks import LeakReport, verify
from medsight.privacy.profile import DeidConfig, Layout, Option, PixelScrub

__all__ = [
    "DeidConfig",
    "DeidReport",
    "Layout",
    "LeakReport",
    "Option",
    "PixelScrub",
    "PseudonymKey",
    "append_entry",
    "deidentify_dataset",
    "deidentify_folder",
    "verify",
    "verify_log",
]
