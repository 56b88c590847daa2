"""`Task`: what a data set's labels mean and what a model predicts (one enum for both).

A data set may be labelled for any task, including ``DETECTION`` or ``NONE`` (no labels); a
model predicts one of the classification tasks, ``SEGMENTATION``, or an image
(``DENOISING``: a cleaner version of its input; ``SYNTHESIS``: new images of a class), boxes
(``DETECTION``), or an outcome from image + patient record (``RISK``: a binary outcome or a
time-to-event risk, from one study or a patient's sequence of studies).  The
values are the strings stored in ``model.json`` and in data specs, so they never change.

Examples
--------
>>> Task("binary") is Task.BINARY, Task.SEGMENTATION.value
(True, 'segmentation')
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Task"]


class Task(StrEnum):
    """What the labels of a data set mean, or what a model predicts."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    ORDINAL = "ordinal"
    MULTILABEL = "multilabel"
    SEGMENTATION = "segmentation"
    DETECTION = "detection"
    DENOISING = "denoising"
    SYNTHESIS = "synthesis"
    RISK = "risk"
    NONE = "none"
