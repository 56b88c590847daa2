"""De-identification of imaging data before it leaves the hospital boundary.

The package follows one file from input to output:

* :mod:`~medsight.privacy.ps315_table` - DICOM PS3.15 Table E.1-1, generated from the standard.
* :mod:`~medsight.privacy.profile` - options (:class:`Option`), the typed :class:`DeidConfig`
  and the action each attribute gets under a set of options.
* :mod:`~medsight.privacy.keys` - the secret key: keyed-hash UIDs, pseudonymous patient ids and
  per-patient date shifts.
* :mod:`~medsight.privacy.dicom_deid` - applies the profile to one DICOM dataset.
* :mod:`~medsight.privacy.pixels` - burned-in text: flagging and OCR scrubbing.
* :mod:`~medsight.privacy.other_formats` - NIfTI headers and PNG/JPEG metadata.
* :mod:`~medsight.privacy.batch` - whole folders, in parallel, atomically, with a
  re-identification table.
* :mod:`~medsight.privacy.leaks` - the leak checker (:func:`verify`).
* :mod:`~medsight.privacy.audit` - the append-only, hash-chained audit log.
"""

from __future__ import annotations

from medsight.privacy.profile import DeidConfig, Option

__all__ = ["DeidConfig", "Option"]
